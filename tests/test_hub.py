"""Hub and pretrained-model paths without a network.

The machine cannot reach the Hub, so the transport is the only part replaced: a fake ``upload_folder``
stores what would be uploaded in the Hugging Face cache layout (models--user--name/refs + snapshots), and the
real ``snapshot_download`` then reads it back in offline mode, exactly as after a real download. Everything
on noisecraft's side (export, push argument checks, download, load, sample) runs for real.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.errors import NoisecraftError
from noisecraft.interop.diffusers import export_diffusers
from noisecraft.interop.pretrained import load_pretrained
from noisecraft.models.factory import ModelConfig, build_denoiser

SMALL_UNET = {"block_out_channels": [16, 16, 32], "norm_num_groups": 8}


def exported_model(folder: Path):
    """A randomised 8x8 one-channel U-Net denoiser (DDPM linear, ε), exported as a diffusers pipeline."""
    torch.manual_seed(0)
    denoiser, schedule = build_denoiser(ModelConfig(arch="unet", resolution=8, channels=1, net_kwargs=SMALL_UNET))
    with torch.no_grad():
        for p in denoiser.parameters():
            p.add_(0.05 * torch.randn_like(p))  # diffusers zero-initialises output layers
    export_diffusers(denoiser.eval(), schedule, folder)
    return denoiser, schedule


class FakeHub:
    """Stands in for the network: uploads land in a Hugging Face cache folder that snapshot_download reads."""

    def __init__(self, cache: Path):
        self.cache = cache
        self.calls: list[tuple] = []

    def create_repo(self, repo_id, private=False, exist_ok=False, repo_type=None, **kw):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, commit_message=None, **kw):
        import shutil

        self.calls.append(("upload_folder", repo_id, commit_message))
        sha = "0123456789abcdef0123456789abcdef01234567"
        repo = self.cache / f"models--{repo_id.replace('/', '--')}"
        shutil.copytree(folder_path, repo / "snapshots" / sha)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(sha)


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch) -> FakeHub:
    import huggingface_hub
    import huggingface_hub.constants

    hub = FakeHub(tmp_path / "hf-cache")
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: hub.create_repo(*a, **k))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, *a, **k: hub.upload_folder(*a, **k))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub.cache))
    return hub


def set_offline(monkeypatch, offline: bool) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)


def test_push_then_load_from_hub_round_trip(tmp_path: Path, fake_hub: FakeHub, monkeypatch) -> None:
    from noisecraft.interop.hub import load_from_hub, push_to_hub

    original, original_schedule = exported_model(tmp_path / "export")
    set_offline(monkeypatch, False)
    url = push_to_hub(tmp_path / "export", "someone/tiny-digits", private=True, commit_message="first")
    assert url == "https://huggingface.co/someone/tiny-digits"
    assert fake_hub.calls == [
        ("create_repo", "someone/tiny-digits", True, True),
        ("upload_folder", "someone/tiny-digits", "first"),
    ]
    set_offline(monkeypatch, True)  # the pull below reads the cache exactly as after a real download
    loaded, schedule = load_from_hub("someone/tiny-digits")
    torch.testing.assert_close(schedule.sigmas, original_schedule.sigmas, rtol=1e-6, atol=0)
    want, got = original.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    x, sigma = torch.randn(3, 1, 8, 8), torch.tensor([0.1, 1.0, 10.0])
    torch.testing.assert_close(loaded(x, sigma), original(x, sigma), rtol=0, atol=0)


def test_sample_cli_reads_diffusers_folders_and_hub_models(tmp_path: Path, fake_hub: FakeHub, monkeypatch) -> None:
    """`noisecraft sample` on the exported folder and on hub:ID of the same upload writes the same pixels."""
    from noisecraft.cli.main import main
    from noisecraft.interop.hub import push_to_hub

    exported_model(tmp_path / "export")
    set_offline(monkeypatch, False)
    push_to_hub(tmp_path / "export", "someone/tiny-digits")
    set_offline(monkeypatch, True)
    common = ["--num", "3", "--steps", "4", "--sampler", "ddim", "--seed", "5"]
    assert main(["sample", str(tmp_path / "export"), *common]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "hub:someone/tiny-digits", *common]) == 0
    from_folder = sorted((tmp_path / "export" / "generated").glob("seed*.png"))
    from_hub = sorted((tmp_path / "generated" / "tiny-digits").glob("seed*.png"))
    assert [p.name for p in from_folder] == [p.name for p in from_hub] == [f"seed{i:06d}.png" for i in (5, 6, 7)]
    for a, b in zip(from_folder, from_hub):
        pixels = np.asarray(Image.open(a))
        assert pixels.shape == (8, 8) and pixels.std() > 0
        assert np.array_equal(pixels, np.asarray(Image.open(b)))


def test_pretrained_specs_and_errors(tmp_path: Path, monkeypatch, capsys) -> None:
    from noisecraft.cli.main import main

    exported_model(tmp_path / "export")
    model = load_pretrained(str(tmp_path / "export"))
    assert model.kind == "diffusers" and model.shape == (1, 8, 8) and model.num_classes == 0
    set_offline(monkeypatch, True)
    for spec, match in [
        ("hub:no-slash", "hub:user/name"),
        ("hub:a/b/c", "hub:user/name"),
        (str(tmp_path / "missing"), "does not exist"),
        ("hub:someone/not-in-any-cache-xyz", "offline"),
    ]:
        with pytest.raises(NoisecraftError, match=match) as e:
            load_pretrained(spec)
        assert "\n" not in str(e.value)
    assert main(["sample", "hub:someone/not-in-any-cache-xyz"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("noisecraft sample: error: cannot download") and "\n" not in err


def butterflies_like(n: int = 4):
    """A datasets table shaped like huggan/smithsonian_butterflies_subset: JPEG images among metadata columns."""
    import io

    import datasets

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (30 + i, 45, 3), dtype=np.uint8)).save(buf, "JPEG")
        rows.append({"image": {"bytes": buf.getvalue(), "path": None}, "name": f"b{i}", "sci_name": "Papilio"})
    features = datasets.Features(
        {"image": datasets.Image(), "name": datasets.Value("string"), "sci_name": datasets.Value("string")}
    )
    return datasets.Dataset.from_list(rows, features=features)


@pytest.fixture
def fake_dataset_hub(monkeypatch) -> list:
    """datasets.load_dataset answers every hub name with butterflies_like(); returns the calls made."""
    import datasets

    calls: list = []
    table = butterflies_like()

    def fake_load_dataset(name, split=None, **kw):
        calls.append((name, split))
        return table

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def test_hub_dataset_name_goes_to_load_dataset(fake_dataset_hub: list) -> None:
    """hf:<hub name> (the guide's butterflies) asks datasets.load_dataset for that name and split, and a table
    shaped like that dataset becomes [-1, 1] RGB tensors."""
    from noisecraft.data.config import DataConfig
    from noisecraft.data.datasets import make_dataset

    ds = make_dataset(DataConfig(source="hf:huggan/smithsonian_butterflies_subset", resolution=16, channels=3))
    assert fake_dataset_hub == [("huggan/smithsonian_butterflies_subset", "train")]
    assert len(ds) == 4
    x = ds[2]["x"]
    assert x.shape == (3, 16, 16) and x.min() >= -1 and x.max() <= 1 and x.std() > 0.1


GUIDE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "guide-butterflies.json"


def test_guide_config_is_the_guides_pipeline_and_trains_end_to_end(tmp_path: Path, fake_dataset_hub: list) -> None:
    """configs/guide-butterflies.json holds the guide's choices; the same file, shrunk by --set, trains from the
    (fake) hub dataset and samples."""
    from noisecraft.cli.main import main
    from noisecraft.training.config import TrainConfig

    cfg = TrainConfig.from_json_file(str(GUIDE_CONFIG))
    assert (cfg.data.source, cfg.data.resolution, cfg.data.channels, cfg.data.flip) == (
        "hf:huggan/smithsonian_butterflies_subset",
        128,
        3,
        True,
    )
    assert (cfg.model.preset, cfg.model.schedule, cfg.model.parameterisation, cfg.batch_size) == (
        "guide-128",
        "linear",
        "eps",
        16,
    )
    out = tmp_path / "run"
    shrink = ["data.resolution=16", "model.resolution=16", "model.preset=tiny", "batch_size=4", "steps=2"]
    shrink += ["trackers=[]", "sample_every=0", f"out_dir={out}"]
    assert (
        main(["train", "--config", str(GUIDE_CONFIG), "--no-progress", *[a for s in shrink for a in ("--set", s)]]) == 0
    )
    assert fake_dataset_hub[0] == ("huggan/smithsonian_butterflies_subset", "train")
    assert main(["sample", str(out), "--num", "2", "--steps", "3"]) == 0
    img = np.asarray(Image.open(out / "generated" / "seed000000.png"))
    assert img.shape == (16, 16, 3)


@pytest.mark.slow
def test_guide_config_full_size_model_trains_a_step_and_exports(tmp_path: Path, fake_dataset_hub: list) -> None:
    """The guide's 128-pixel six-block U-Net itself (114M parameters): one optimiser step from the (fake) hub
    dataset, then export; diffusers reads back the guide's architecture."""
    import json

    from noisecraft.cli.main import main

    out = tmp_path / "run"
    sets = [
        a for s in ("batch_size=2", "steps=1", "trackers=[]", "sample_every=0", f"out_dir={out}") for a in ("--set", s)
    ]
    assert main(["train", "--config", str(GUIDE_CONFIG), "--no-progress", *sets]) == 0
    assert main(["export", str(out), str(tmp_path / "pipe")]) == 0
    unet = json.loads((tmp_path / "pipe" / "unet" / "config.json").read_text())
    assert unet["sample_size"] == 128 and unet["in_channels"] == 3
    assert unet["block_out_channels"] == [128, 128, 256, 256, 512, 512]
    assert unet["down_block_types"][4] == "AttnDownBlock2D" and unet["up_block_types"][1] == "AttnUpBlock2D"


def test_hf_source_without_the_datasets_package_says_how_to_install_it(monkeypatch) -> None:
    import sys

    from noisecraft.data.config import DataConfig
    from noisecraft.data.datasets import make_dataset

    monkeypatch.setitem(sys.modules, "datasets", None)  # as if `pip install noisecraft` without the [hub] extra
    with pytest.raises(NoisecraftError, match=r"noisecraft\[hub\]") as e:
        make_dataset(DataConfig(source="hf:huggan/smithsonian_butterflies_subset", resolution=16, channels=3))
    assert "\n" not in str(e.value)
