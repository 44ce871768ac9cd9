"""The training loop's parts: LR schedule, deterministic disjoint data shards, label dropout, the NaN guard."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from noisecraft.errors import NoisecraftError
from noisecraft.training import checkpoint as ckpt
from noisecraft.training.config import OptimConfig, TrainConfig
from noisecraft.training.loop import train
from noisecraft.training.setup import BatchSource, batch_indices, drop_labels, lr_at


def toy_cfg(tmp_path, **top) -> TrainConfig:
    d = {
        "data": {"source": "toy:moons"},
        "model": {"arch": "mlp", "channels": 2, "resolution": 1},
        "trackers": [],
        "sample_every": 0,
        "out_dir": str(tmp_path / "run"),
        **top,
    }
    return TrainConfig.from_dict(d)


def image_cfg(tmp_path, source: str, resolution: int, batch_size: int = 4, **data) -> dict:
    """A 2-step MLP run on one-channel images of `source` (no trackers, no previews), as a config dict."""
    return {
        "data": {"source": source, "resolution": resolution, "channels": 1, **data},
        "model": {"arch": "mlp", "channels": 1, "resolution": resolution},
        "steps": 2,
        "batch_size": batch_size,
        "trackers": [],
        "sample_every": 0,
        "out_dir": str(tmp_path / "run"),
    }


def gray_pngs(folder, values) -> str:
    """A folder of 8x8 grey PNGs named 0.png, 1.png, ... with the given pixel values."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    for i, v in enumerate(values):
        Image.fromarray(np.full((8, 8), v, dtype=np.uint8)).save(folder / f"{i}.png")
    return str(folder)


def test_lr_warmup_then_cosine_to_floor():
    o = OptimConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [lr_at(s, o, 100) for s in range(100)]
    assert lrs[:10] == pytest.approx([1e-3 * (s + 1) / 10 for s in range(10)])
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[10] == pytest.approx(1e-3) and lr_at(100, o, 100) == pytest.approx(1e-4)


def test_toy_and_classifier_loops_follow_the_one_lr_schedule(monkeypatch):
    """The 2-D toy loop and the noisy-classifier loop step AdamW at the rates of core.lr_schedule.warmup_cosine,
    the function behind lr_at (the main loop)."""
    from noisecraft.core.lr_schedule import warmup_cosine
    from noisecraft.models.classifier import ClassifierConfig, ClassifierTraining, train_classifier
    from noisecraft.training.toy import ToyConfig, train_toy

    seen: list[float] = []
    step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    o = OptimConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert [lr_at(s, o, 100) for s in range(101)] == [warmup_cosine(s, 1e-3, 100, 10, 0.1) for s in range(101)]
    train_toy(ToyConfig(dataset="gmm", iterations=40, batch=8, num_points=64, hidden=8, depth=1), progress=False)
    assert seen == [warmup_cosine(i, 2e-3, 40, 2) for i in range(40)]  # warm-up: at most 5 % of the run
    seen.clear()
    cfg = ClassifierConfig(resolution=4, channels=1, num_classes=2, width=4, mult=(1,))
    x, y = torch.randn(16, 1, 4, 4), torch.arange(16) % 2
    train_classifier(x, y, cfg, ClassifierTraining(steps=12, batch=4, lr=1e-3, warmup_steps=3), progress=False)
    assert seen == [warmup_cosine(i, 1e-3, 12, 3) for i in range(12)]
    assert seen[0] < seen[1] < seen[2] == pytest.approx(1e-3) and seen[-1] < seen[4] < seen[2]


def test_each_epoch_visits_every_item_once_and_order_depends_only_on_seed():
    n = 37
    idx = batch_indices(n, seed=3, start=0, size=3 * n)
    for e in range(3):
        assert sorted(idx[e * n : (e + 1) * n].tolist()) == list(range(n))
    assert not torch.equal(idx[:n], idx[n : 2 * n])  # reshuffled each epoch
    assert torch.equal(batch_indices(n, 3, 50, 20), idx[50:70])  # random access = streaming
    assert not torch.equal(batch_indices(n, 4, 0, n), idx[:n])


def test_shards_of_processes_and_accumulation_steps_are_disjoint_and_cover_the_step():
    cfg = TrainConfig.from_dict(
        {
            "data": {"source": "toy:moons"},
            "model": {"arch": "mlp", "channels": 2, "resolution": 1},
            "batch_size": 24,
            "optim": {"grad_accum": 3},
        }
    )
    data = list(range(1000))
    sources = [BatchSource(data, cfg, rank, 2, cache=False, flip=False) for rank in range(2)]
    for step in (0, 5):
        shards = [s.indices(step, m) for s in sources for m in range(3)]
        assert all(len(sh) == 4 for sh in shards)
        got = torch.cat(shards)
        assert len(set(got.tolist())) == 24
        assert sorted(got.tolist()) == sorted(batch_indices(1000, cfg.seed, step * 24, 24).tolist())
    with pytest.raises(NoisecraftError, match="divide"):
        BatchSource(data, cfg, 0, 5, cache=False, flip=False)


def test_label_dropout_rate_and_null_label():
    labels = torch.randint(0, 10, (20000,), generator=torch.Generator().manual_seed(0))
    out = drop_labels(labels, 0.2, 10, torch.Generator().manual_seed(1))
    dropped = out == 10
    assert abs(dropped.float().mean().item() - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 20000)
    assert torch.equal(out[~dropped], labels[~dropped])
    assert torch.equal(drop_labels(labels, 0.0, 10, torch.Generator()), labels)


class PoisonAfter(torch.utils.data.Dataset):
    """Finite 2-D points, except items fetched in the window [start, stop) of fetch counts are NaN."""

    def __init__(self, start: int, stop: int):
        self.x = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
        self.fetches, self.start, self.stop = 0, start, stop

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.fetches += 1
        bad = self.start <= self.fetches - 1 < self.stop
        return {"x": torch.full((2,), float("nan")) if bad else self.x[i]}


def test_nan_guard_aborts_after_k_bad_steps_keeping_the_last_good_checkpoint(tmp_path):
    cfg = toy_cfg(tmp_path, steps=40, batch_size=8, checkpoint_every=5, max_bad_steps=3)
    with pytest.raises(NoisecraftError, match="3 steps in a row") as e:
        train(cfg, dataset=PoisonAfter(8 * 12, 10**9), progress=False)  # steps 13, 14, 15 are NaN
    last = ckpt.latest_checkpoint(cfg.out_dir)
    assert last.name == "step-00000010" and str(last) in str(e.value)
    weights = ckpt.load_tensors(last / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_nan_guard_skips_isolated_bad_steps(tmp_path):
    cfg = toy_cfg(tmp_path, steps=20, batch_size=8, checkpoint_every=20, max_bad_steps=2, log_every=1)
    train(cfg, dataset=PoisonAfter(8 * 6, 8 * 7), progress=False)  # step 7 only
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["bad_steps"] for r in log][5:8] == [0, 1, 1] and log[-1]["step"] == 20
    weights = ckpt.load_tensors(ckpt.latest_checkpoint(cfg.out_dir) / "ema.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_cached_and_streamed_data_give_identical_runs(tmp_path):
    """The in-memory cache is only a speed-up: a DataLoader over the same stream positions trains identically."""
    digests = []
    for cache, workers in ((True, 0), (False, 0), (False, 2)):
        cfg = toy_cfg(tmp_path / f"{cache}{workers}", steps=6, batch_size=16, cache_data=cache, num_workers=workers)
        last = train(cfg, progress=False)
        digests.append(ckpt.load_tensors(last / "model.safetensors"))
    for other in digests[1:]:
        assert all(torch.equal(digests[0][k], other[k]) for k in digests[0])


def test_mixed_precision_trains_and_a_second_run_in_one_process_takes_its_own_setting(tmp_path):
    """bf16 and fp16 autocast train (finite losses, a checkpoint); Accelerate's process-wide state does not leak the
    first run's precision into the next train() call of the same Python session."""
    for mp in ("bf16", "fp16", "no"):
        cfg = toy_cfg(tmp_path / mp, steps=3, batch_size=16, log_every=1, checkpoint_every=3, mixed_precision=mp)
        last = train(cfg, progress=False)
        log = [json.loads(line) for line in (tmp_path / mp / "run" / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in log)
        assert ckpt.read_state(last)["step"] == 3


def test_cached_data_leaves_out_unreadable_files_and_says_which(tmp_path, capsys):
    """A bad file is not replaced by a second copy of its neighbour in the cache, and the run names it."""
    folder = gray_pngs(tmp_path / "imgs", [40 * i for i in range(5)])
    (tmp_path / "imgs" / "2b.png").write_bytes(b"\x89PNG broken")  # sorts between 2.png and 3.png
    cfg = TrainConfig.from_dict(image_cfg(tmp_path, folder, 8, max_bad_fraction=0.5))
    from noisecraft.training.setup import make_dataset

    source = BatchSource(make_dataset(cfg, cache=True), cfg, 0, 1, cache=True, flip=False)
    assert source.n == 5 and len(source.skipped) == 1 and "2b.png" in source.skipped[0]
    assert source.cache["x"].dtype == torch.uint8  # images are cached as their pixels
    means = sorted(round(float(v), 3) for v in source.cache["x"].float().flatten(1).mean(1))
    assert len(set(means)) == 5  # five distinct images, none twice
    train(cfg, progress=False)
    captured = capsys.readouterr()
    assert "left out 1 unreadable item(s) of 6; first:" in captured.out
    assert "data: 5 items of shape (1, 8, 8)" in captured.out and "held in memory" in captured.out
    assert "warning: skipping unreadable" in captured.err and "2b.png" in captured.err


def test_uint8_cache_serves_exactly_the_decoded_items_and_a_too_large_set_streams(tmp_path, capsys):
    """The uint8 cache gives bit-identical batches to the float items; past the memory budget the run decodes
    per step instead, says so, and trains."""
    from noisecraft.training.setup import make_dataset

    cfg = TrainConfig.from_dict(image_cfg(tmp_path, "digits", 12, batch_size=8, limit=40))
    data = make_dataset(cfg, cache=True)
    source = BatchSource(data, cfg, 0, 1, cache=True, flip=False)
    idx, batch = next(source.batches(0))
    want = torch.stack([data[int(i)]["x"] for i in idx])
    assert batch["x"].dtype == torch.float32 and torch.equal(batch["x"], want)

    small = TrainConfig.from_dict({**cfg.to_dict(), "cache_max_gb": 1e-6})
    train(small, progress=False)
    out = capsys.readouterr().out
    assert "decoding per step instead" in out
    assert "data: 40 items of shape (1, 12, 12) from digits (read per step)" in out
    assert ckpt.read_state(ckpt.latest_checkpoint(tmp_path / "run"))["step"] == 2


def test_resume_warns_when_the_data_changed_since_the_checkpoint(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    folder = gray_pngs(tmp_path / "imgs", [0, 50, 100, 150])
    d = image_cfg(tmp_path, folder, 8)
    train(TrainConfig.from_dict(d), progress=False)
    assert ckpt.read_state(ckpt.latest_checkpoint(tmp_path / "run"))["data_items"] == 4
    train(TrainConfig.from_dict({**d, "steps": 3}), resume=True, progress=False)
    assert "data has changed" not in capsys.readouterr().out  # same data: silent
    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(tmp_path / "imgs" / "new.png")
    train(TrainConfig.from_dict({**d, "steps": 4}), resume=True, progress=False)
    assert "the data has changed since that checkpoint (4 items then, 5 now)" in capsys.readouterr().out
