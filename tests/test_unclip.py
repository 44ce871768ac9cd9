"""unCLIP: the prior (a diffusion model over vectors) against a known text → embedding map, CFG's negative branch
exactly, and the whole chain train-clip → train-unclip (EDM decoder by default) → sample --prompt (prior →
decoder, every sample option honoured or refused, → upsampler) → edit variations, and resume, on tiny runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from noisecraft.cli.main import main
from noisecraft.sampling.unclip import sample_image_embeds
from noisecraft.training import unclip as U
from tiny_models import make_tiny_clip, write_fake_fashion_mnist


def test_prior_learns_a_known_text_to_image_embedding_map(tmp_path):
    """Image embedding = normalize(A·t) for a fixed A: the prior's samples must land on their own target (cosine
    near 1) and far above random pairing; CFG at w = 0 (the dropped text) does not know the target."""
    E, N = 8, 256
    g = torch.Generator().manual_seed(0)
    A = torch.linalg.qr(torch.randn(E, E, generator=g))[0]
    text = torch.nn.functional.normalize(torch.randn(N, E, generator=g), dim=-1)
    image = torch.nn.functional.normalize(text @ A.T, dim=-1)
    loop = dict(steps=300, batch=128, lr=2e-3, warmup_steps=50, log_every=100, checkpoint_every=300)
    cfg = U.UnclipConfig(embed_dim=E, prior_hidden=128, prior_depth=3, prior_loop=loop)
    prior = U.train_prior(cfg, image, [t[None] for t in text], tmp_path / "prior", False, progress=False)
    un = U.Unclip(cfg, None, prior.eval(), U.prior_schedule(), None, None, tmp_path)
    held = torch.nn.functional.normalize(torch.randn(64, E, generator=torch.Generator().manual_seed(9)), dim=-1)
    target = torch.nn.functional.normalize(held @ A.T, dim=-1)
    z = sample_image_embeds(un, held, range(64), steps=20)
    own = (z * target).sum(-1)
    other = (z * target.roll(1, 0)).sum(-1)
    assert own.mean() > 0.9 and own.mean() > other.mean() + 0.5
    z0 = sample_image_embeds(un, held, range(64), steps=20, cfg_scale=0.0)  # unconditional
    assert (z0 * target).sum(-1).mean() < 0.6


def test_a_negative_embedding_takes_the_null_branch_of_unclip_cfg():
    """ZeroCFGDenoiser: D_w = D(neg) + w·(D(c) − D(neg)) with neg the given negative embedding, zero without one
    (exact, on a denoiser that returns its conditioning)."""
    from noisecraft.sampling.unclip import ZeroCFGDenoiser

    def d(x, sigma, clip_text=None):  # D(x; σ, t) = x + t
        return x + (0 if clip_text is None else clip_text)

    x, sigma = torch.randn(3, 4), torch.ones(3)
    c, neg = torch.randn(3, 4), torch.randn(1, 4)
    guided = ZeroCFGDenoiser(d, 2.5, ("clip_text",), negative={"clip_text": neg})(x, sigma, clip_text=c)
    assert torch.allclose(guided, (x + neg) + 2.5 * (c - neg), atol=1e-6)
    plain = ZeroCFGDenoiser(d, 2.5, ("clip_text",))(x, sigma, clip_text=c)
    assert torch.allclose(plain, x + 2.5 * c, atol=1e-6)


# The tiny runs are 16×16 (a CLIP at 16 px, the decoder on 16×16 pixels): the decoder's full-resolution
# self-attention made 32×32 cost about 4× as much, for the same checks.
CLIP_ARGS = ["--data", "scenes", "--resolution", "16", "--size", "160", "--steps", "80", "--batch-size", "32"]
UNCLIP_ARGS = ["--data", "scenes", "--size", "160", "--prior-steps", "150", "--decoder-steps", "30", "--batch-size"]
UNCLIP_ARGS += ["8", "--widths", "32,32", "--no-progress"]


@pytest.fixture(scope="module")
def unclip_run(tmp_path_factory):
    """A tiny CLIP and an unCLIP run on it with train-unclip's defaults, shared by the tests below."""
    root = tmp_path_factory.mktemp("unclip")
    mp = pytest.MonkeyPatch()
    write_fake_fashion_mnist(root / "fm", test_per_class=12)
    mp.setenv("NOISECRAFT_FASHION_MNIST", str(root / "fm"))
    text = make_tiny_clip(root / "text", max_positions=64)
    clip = root / "clip"
    argv = ["train-clip", *CLIP_ARGS, "--holdout", "0", "--text", f"clip:{text}", "--no-progress", "--out", str(clip)]
    assert main(argv) == 0
    run = root / "unclip"
    assert main(["train-unclip", "--clip", str(clip), *UNCLIP_ARGS, "--out", str(run)]) == 0
    yield clip, run, root
    mp.undo()


def test_unclip_run_layout_and_defaults(unclip_run, capsys):
    """The run carries its CLIP; both parts learn; the decoder defaults to `noisecraft train`'s EDM
    preconditioning and noise levels (training.config.TRAIN_MODEL_DEFAULTS), recorded and sampled with."""
    from noisecraft.core.schedules import EDM
    from noisecraft.training.config import TRAIN_MODEL_DEFAULTS

    clip, run, _ = unclip_run
    cfg = U.read_config(run)
    assert cfg.embed_dim == 64 and cfg.decoder["text_dim"] == 64 and cfg.decoder["arch"] == "cond-unet"
    assert (run / "clip" / "clip.safetensors").is_file()  # the run carries its CLIP
    for part in ("prior", "decoder"):
        log = [json.loads(ln) for ln in (run / part / "log.jsonl").read_text().splitlines()]
        assert log[-1]["loss"] < log[0]["loss"]  # both learn
    for key in ("schedule", "parameterisation"):
        assert cfg.decoder[key] == TRAIN_MODEL_DEFAULTS[key] == "edm"
        assert json.loads((run / "config.json").read_text())["args"][key] == "edm"  # the record names it
    un = U.load_unclip(run)
    assert isinstance(un.decoder_schedule, EDM) and un.decoder.precond.kind == "edm"
    capsys.readouterr()
    assert main(["train-unclip", "--clip", str(clip), *UNCLIP_ARGS, "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err  # never overwrites a run


def test_prior_embeddings_match_their_text_better_than_random_pairing(unclip_run):
    """The issue's check on the tiny run: CLIP similarity of sampled image embeddings to their own caption beats
    the similarity to another item's caption (held-out scenes' captions)."""
    from noisecraft.data.config import DataConfig
    from noisecraft.training.clip_train import load_captioned

    _, run, _ = unclip_run
    un = U.load_unclip(run)
    _, caps = load_captioned(DataConfig(source="scenes", channels=3, split="test", scenes_size=64, captions=True))
    prompts = [c[0] for c in caps]
    t = un.clip.text_embeds(prompts)
    z = sample_image_embeds(un, t, range(64), steps=20, cfg_scale=2.0)
    own, other = (z * t).sum(-1).mean(), (z * t.roll(1, 0)).sum(-1).mean()
    assert own > other, (own, other)
    assert z.norm(dim=-1) == pytest.approx(1.0, abs=1e-5)


def test_sample_runs_prior_then_decoder_and_variations(unclip_run, tmp_path):
    _, run, _ = unclip_run
    out = tmp_path / "gen"
    argv = ["sample", str(run), "--prompt", "a red bag on the left", "--num", "3", "--steps", "4", "--cfg", "2"]
    assert main([*argv, "--prior-cfg", "2", "--out", str(out)]) == 0
    pngs = sorted(out.glob("seed*.png"))
    assert len(pngs) == 3 and Image.open(pngs[0]).size == (16, 16)
    assert "a red bag on the left" in (out / "prompts.txt").read_text()
    # same seed and prompt → same image, whatever the batch (prior and decoder draw per-sample noise)
    out1 = tmp_path / "one"
    argv = ["sample", str(run), "--prompt", "a red bag on the left", "--num", "1", "--steps", "4", "--cfg", "2"]
    assert main([*argv, "--prior-cfg", "2", "--out", str(out1)]) == 0
    assert Image.open(out1 / "seed000000.png").tobytes() == Image.open(pngs[0]).tobytes()
    var = tmp_path / "var"
    assert main(["edit", "variations", str(run), str(pngs[0]), "--num", "2", "--steps", "4", "--out", str(var)]) == 0
    assert len(list(var.glob("seed*.png"))) == 2 and Image.open(var / "comparison.png").size[0] > 3 * 16


def test_clip_guidance_on_an_unclip_run(unclip_run, tmp_path):
    clip, run, _ = unclip_run
    outs = {}
    for s in ("0", "3"):
        out = tmp_path / s
        argv = ["sample", str(run), "--prompt", "a red bag on the left", "--num", "2", "--steps", "4"]
        assert main([*argv, "--clip-guide", str(clip), "--clip-scale", s, "--out", str(out)]) == 0
        outs[s] = Image.open(out / "seed000000.png").tobytes()
    assert outs["0"] != outs["3"]
    assert math.isfinite(len(outs["3"]))


def _sample(run, out, *flags) -> int:
    argv = ["sample", str(run), "--prompt", "a red bag on the left", "--num", "2", "--steps", "4", "--cfg", "2"]
    return main([*argv, "--prior-cfg", "2", *flags, "--out", str(out)])


def _pixels(out) -> list[bytes]:
    return [Image.open(out / f"seed{s:06d}.png").tobytes() for s in range(2)]


def test_sample_on_an_unclip_run_honours_its_options(unclip_run, tmp_path):
    """--schedule, --negative-prompt, --cfg-interval, --cfg-rescale and --clip-x0 change the images (each one
    acts); --batch-size does not (per-seed noise), as on any run."""
    _, run, _ = unclip_run
    assert _sample(run, tmp_path / "base") == 0
    base = _pixels(tmp_path / "base")
    changed = {
        "schedule": ["--schedule", "logsnr"],
        "negative": ["--negative-prompt", "a white coat on the right"],
        "interval": ["--cfg-interval", "0,1"],
        "rescale": ["--cfg-rescale", "0.7"],
        "clip-x0": ["--clip-x0", "0.2"],
    }
    for name, flags in changed.items():
        assert _sample(run, tmp_path / name, *flags) == 0
        assert _pixels(tmp_path / name) != base, name
    assert _sample(run, tmp_path / "batch", "--batch-size", "1") == 0
    assert _pixels(tmp_path / "batch") == base


def test_sample_on_an_unclip_run_refuses_what_it_cannot_use(unclip_run, tmp_path, capsys):
    """Options an unCLIP run has no use for are refused in one line naming them, never ignored; so are the
    unCLIP options on another run."""
    _, run, _ = unclip_run
    for flags, named in (
        (["--class", "3"], "--class"),
        (["--classifier", "some/clf", "--classifier-scale", "2"], "--classifier, --classifier-scale"),
    ):
        capsys.readouterr()
        assert _sample(run, tmp_path / "x", *flags) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"does not take {named};" in err
    argv = ["sample", str(run), "--prompt", "a red bag", "--num", "1", "--negative-prompt", "a blue bag"]
    assert main([*argv, "--out", str(tmp_path / "y")]) == 2
    assert "--negative-prompt acts through guidance" in capsys.readouterr().err
    other = tmp_path / "not-unclip"
    other.mkdir()
    assert main(["sample", str(other), "--prior-cfg", "2", "--out", str(tmp_path / "z")]) == 2
    assert "are for unCLIP runs" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_sample_chains_an_unclip_run_into_an_upsampler(unclip_run, tmp_path, capsys):
    """DALL-E 2's hierarchy: prior → decoder at 16 px → a super-resolution run to 32 px (`--upscale`)."""
    _, run, _ = unclip_run
    sr = tmp_path / "sr"
    argv = ["train", "--data", "scenes", "--resolution", "32", "--upsample-from", "16", "--steps", "2"]
    argv += ["--batch-size", "4", "--set", "data.scenes_size=8", "--set", "trackers=[]", "--set", "sample_every=0"]
    assert main([*argv, "--no-progress", "--out", str(sr)]) == 0
    capsys.readouterr()
    assert _sample(run, tmp_path / "gen", "--upscale", str(sr), "--aug", "0.05") == 0
    assert "(prior → decoder → upsampler)" in capsys.readouterr().out
    assert Image.open(tmp_path / "gen" / "seed000001.png").size == (32, 32)


def test_unclip_resumes_from_its_record_and_plans_minutes(unclip_run, tmp_path, monkeypatch, capsys, one_second_steps):
    """train-unclip runs on training.core.fit: --resume reads the command line from OUT/config.json (the prior,
    finished, is kept; the decoder, its checkpoint lost, is retrained to the same weights bit for bit). The run is
    one of the ε/linear kind train-unclip made before it defaulted to EDM: resumed (even from a record without
    the setting, which its unclip.json then gives) it stays ε/linear, and samples on its own schedule. --minutes
    splits a time budget between the parts in the ratio of their steps, each planned from timed steps."""
    import shutil

    from safetensors.torch import load_file

    from noisecraft.core.schedules import DiscreteVP
    from noisecraft.training import checkpoint as ckpt

    clip, _, _ = unclip_run
    run, copy = tmp_path / "old", tmp_path / "copy"
    small = ["--data", "scenes", "--size", "24", "--prior-steps", "6", "--decoder-steps", "4", "--batch-size", "2"]
    small += ["--widths", "32,32", "--checkpoint-every", "2", "--no-progress"]
    old = ["--schedule", "linear", "--parameterisation", "eps"]
    assert main(["train-unclip", "--clip", str(clip), *small, *old, "--out", str(run)]) == 0
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "decoder" / "checkpoints")
    record = json.loads((copy / "config.json").read_text())
    del record["args"]["schedule"], record["args"]["parameterisation"]
    (copy / "config.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["train-unclip", "--out", str(copy), "--resume", "--no-progress"]) == 0
    assert "resuming from" in capsys.readouterr().out
    for part in ("prior", "decoder"):
        a, b = (load_file(ckpt.latest_checkpoint(r / part) / "ema.safetensors") for r in (run, copy))
        assert all(torch.equal(a[k], b[k]) for k in a)
    cfg = U.read_config(copy)
    assert (cfg.decoder["schedule"], cfg.decoder["parameterisation"]) == ("linear", "eps")
    un = U.load_unclip(copy)
    assert isinstance(un.decoder_schedule, DiscreteVP) and un.decoder.precond.kind == "eps"
    assert _sample(copy, tmp_path / "gen") == 0

    out = tmp_path / "timed"
    argv = ["train-unclip", "--clip", str(clip), "--data", "scenes", "--size", "24", "--prior-steps", "40"]
    argv += ["--decoder-steps", "20", "--batch-size", "2", "--widths", "32,32", "--minutes", "0.5", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    record = json.loads((out / "config.json").read_text())["args"]
    assert (record["prior_steps"], record["decoder_steps"], record["minutes"]) == (20, 10, None)  # 20 s + 10 s
    assert ckpt.latest_checkpoint(out / "prior").name == "step-00000020"
    assert ckpt.latest_checkpoint(out / "decoder").name == "step-00000010"
    assert U.read_config(out).decoder_loop["steps"] == 10
