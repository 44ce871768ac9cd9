"""Crash safety, deterministically: a kill before the first heavy import, a kill in the middle of pruning, and
a truncated newest checkpoint. (benchmarks/crash_resume.py kills real runs at random moments.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from noisecraft.cli.main import main
from noisecraft.training import checkpoint as ckpt
from noisecraft.training import run_folder

QUIET = ["--no-progress", "--set", "trackers=[]", "--set", "sample_every=0"]
TOY = ["--data", "toy:moons", "--steps", "12", "--batch-size", "16", "--seed", "3", "--lr", "0.01"]
EVERY = ["--set", "checkpoint_every=4", "--set", "keep_last=3"]


def _same_weights(a: Path, b: Path) -> bool:
    for name in ("model", "ema", "optimizer"):
        x, y = load_file(a / f"{name}.safetensors"), load_file(b / f"{name}.safetensors")
        if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
            return False
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run that every interrupted one must end at, bit for bit."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(["train", *TOY, "--out", str(out), *QUIET, *EVERY]) == 0
    return out


KILL_AT_FIRST_HEAVY_IMPORT = textwrap.dedent(
    """
    import importlib.abc, os, signal, sys
    from pathlib import Path

    run = Path(sys.argv[1])

    class KillAtHeavyImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in ("torch", "numpy"):  # the first slow import: the run dies here, like a kill in its first seconds
                print(sorted(p.name for p in run.iterdir()) if run.is_dir() else "no folder", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            return None

    sys.meta_path.insert(0, KillAtHeavyImport())
    from noisecraft.cli.main import main

    main([sys.argv[2], *sys.argv[3:], "--out", str(run)])
    """
)


@pytest.mark.parametrize("via", ["flags", "config-file"])
def test_a_run_killed_before_its_first_heavy_import_resumes_as_itself(via, reference, tmp_path, capsys):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    argv = [*TOY, *QUIET, *EVERY]
    if via == "config-file":  # the same run given as a --config file, which is then edited before the resume
        assert main(["train", *argv, "--dry-run"]) == 0
        cfg = tmp_path / "cfg.json"
        cfg.write_text(capsys.readouterr().out)
        argv = ["--config", str(cfg), "--no-progress"]
    r = subprocess.run(
        [sys.executable, "-c", KILL_AT_FIRST_HEAVY_IMPORT, str(run), "train", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == -9, r.stderr[-2000:]  # it really was killed, before anything heavy was imported
    assert r.stdout.strip() == "['launch.json']"  # the command line was recorded before torch was imported
    if via == "config-file":
        (tmp_path / "cfg.json").write_text('{"steps": 3}')  # the resume must not read the edited file
    # the resume names only the folder: the run's own config, not the defaults, must be trained
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert (run / "config.json").is_file() and not (run / "launch.json").exists()
    final = "checkpoints/step-00000012"
    assert _same_weights(reference / final, run / final)


def test_a_config_that_cannot_start_leaves_no_config_behind(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "toy:moons", "--arch", "unet", "--out", str(run), *QUIET]) == 2
    assert "does not match" in capsys.readouterr().err
    assert not (run / "config.json").exists() and not (run / "launch.json").exists()
    assert main(["train", "--out", str(run), "--resume"]) == 2  # so nothing is "resumed" either


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs."""


def test_a_kill_in_the_middle_of_pruning_keeps_the_last_k_and_the_next_start_cleans_up(
    reference, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    for p in ckpt.list_checkpoints(run):
        shutil.rmtree(p) if p.name != "step-00000004" else None
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())

    def write(step: int) -> Path:
        tmp = ckpt.prepare_checkpoint(run, step)
        ckpt.write_rank_state(tmp, 0, None)
        ckpt.write_main_state(tmp, model=model, ema_model=model, optimizer=opt, state={"step": step}, config={})
        return tmp

    ckpt.commit_checkpoint(write(8), keep_last=2)
    real_rmtree = shutil.rmtree

    def killed_half_way(path, *a, **k):  # deletes the weights, then the process dies before state.json goes
        for f in Path(path).iterdir():
            if f.name != "state.json":
                f.unlink()
        raise Killed

    monkeypatch.setattr(shutil, "rmtree", killed_half_way)
    with pytest.raises(Killed):
        ckpt.commit_checkpoint(write(12), keep_last=2)  # prunes step 4
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    names = [p.name for p in ckpt.list_checkpoints(run)]
    assert names == ["step-00000008", "step-00000012"], names  # never a half-deleted step-* folder
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".trash-")] == [".trash-step-00000004"]
    # the next start removes the leftovers (the resume itself is refused here: this run's weights are a stand-in)
    run_folder.remove_leftovers(run)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == names


def test_train_start_removes_leftover_temporary_and_trash_folders(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    shutil.rmtree(run / "checkpoints" / "step-00000012")
    (run / "checkpoints" / ".trash-step-00000001").mkdir()
    (run / "checkpoints" / ".trash-step-00000001" / "model.safetensors").write_bytes(b"half")
    (run / "checkpoints" / ".tmp-step-00000010").mkdir()
    (run / ".config.json.k2j3.tmp").write_text('{"half": ')  # a write_text_atomic cut short
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000004",
        "step-00000008",
        "step-00000012",
    ]
    assert not list(run.glob(".*.tmp"))


def test_resume_falls_back_from_a_truncated_newest_checkpoint_and_says_so(reference, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    shutil.rmtree(run / "checkpoints" / "step-00000012")  # as if killed between the checkpoints at 8 and 12 ...
    data = (run / "checkpoints" / "step-00000008" / "model.safetensors").read_bytes()
    (run / "checkpoints" / "step-00000008" / "model.safetensors").write_bytes(
        data[: len(data) // 2]
    )  # ... and 8 was cut
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    said = capsys.readouterr()
    assert "step-00000008 (model.safetensors is truncated" in said.out + said.err
    assert "resuming from step-00000004" in said.out + said.err
    final = "checkpoints/step-00000012"
    assert _same_weights(reference / final, run / final)
    assert run_folder.checkpoint_problem(run / "checkpoints" / "step-00000008") is None  # rewritten whole


def test_checkpoint_problem_reads_headers_only_and_names_the_file(reference, tmp_path):
    c = tmp_path / "c"
    shutil.copytree(reference / "checkpoints" / "step-00000012", c)
    assert run_folder.checkpoint_problem(c) is None
    (c / "ema.safetensors").write_bytes((c / "ema.safetensors").read_bytes()[:-1])
    assert run_folder.checkpoint_problem(c).startswith("ema.safetensors is truncated")
    (c / "ema.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    assert "not a safetensors file" in run_folder.checkpoint_problem(c)
    (c / "ema.safetensors").unlink()
    (c / "ema.pt").write_bytes(b"\x80\x04K\x01.")
    assert "ema.pt is a pickle file" in run_folder.checkpoint_problem(c)
    (c / "state.json").write_text('{"step": ')
    assert run_folder.checkpoint_problem(c).startswith("state.json is not valid JSON")


# ---------------------------------------------------------------------------------------------------------
# The classifier and autoencoder trainers run the same loop core (training.core.fit): the same guarantees.
SMALL = {
    "train-classifier": ["--data", "digits", "--resolution", "8", "--steps", "12", "--batch-size", "16",
                         "--width", "4", "--checkpoint-every", "4", "--no-progress"],
    "train-vae": ["--data", "digits", "--resolution", "8", "--channels", "1", "--steps", "12", "--batch-size", "8",
                  "--set", "checkpoint_every=4", "--no-progress"],
}  # fmt: skip
FINAL = {"train-classifier": "classifier.safetensors", "train-vae": "vae/diffusion_pytorch_model.safetensors"}

KILL_AT_UPDATE = textwrap.dedent(
    """
    import os, signal, sys
    from noisecraft.training import core

    real, calls = core.apply_update, [0]

    def update(*a, **k):  # the process dies in the middle of optimiser step N (after its backward)
        calls[0] += 1
        if calls[0] == int(sys.argv[1]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)

    core.apply_update = update
    from noisecraft.cli.main import main

    main(sys.argv[2:])
    """
)


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("small")
    for verb, argv in SMALL.items():
        assert main([verb, *argv, "--out", str(root / verb)]) == 0
    return {verb: root / verb for verb in SMALL}


def _same_file_tensors(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _ends_like(run: Path, ref: Path, verb: str) -> None:
    final = "checkpoints/step-00000012"
    assert _same_weights(ref / final, run / final)  # weights, EMA and optimiser state
    assert _same_file_tensors(ref / FINAL[verb], run / FINAL[verb])


@pytest.mark.parametrize("verb", list(SMALL))
def test_a_killed_classifier_or_autoencoder_run_resumes_bit_identically(verb, small_reference, tmp_path, capsys):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-c", KILL_AT_UPDATE, "7", verb, *SMALL[verb], "--out", str(run)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == -9, r.stderr[-2000:]
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000004"]  # killed between checkpoints
    assert main([verb, "--out", str(run), "--resume", "--no-progress"]) == 0  # the folder alone says what to run
    assert "resuming from" in capsys.readouterr().out
    _ends_like(run, small_reference[verb], verb)


@pytest.mark.parametrize("verb", list(SMALL))
def test_a_classifier_or_autoencoder_run_killed_at_launch_resumes_as_itself(verb, small_reference, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-c", KILL_AT_FIRST_HEAVY_IMPORT, str(run), verb, *SMALL[verb]],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == -9, r.stderr[-2000:]
    assert r.stdout.strip() == "['config.json']"  # the command line was recorded before torch was imported
    assert main([verb, "--out", str(run), "--resume", "--no-progress"]) == 0
    _ends_like(run, small_reference[verb], verb)
    assert main([verb, "--out", str(tmp_path / "nothing"), "--resume"]) == 2  # no record: refused, one line


@pytest.mark.parametrize("verb", list(SMALL))
def test_sigterm_ends_the_step_saves_and_the_resume_is_bit_identical(verb, small_reference, tmp_path, monkeypatch):
    import signal

    from noisecraft.training import core

    real, calls = core.apply_update, [0]

    def update(*a, **k):
        calls[0] += 1
        if calls[0] == 6:
            os.kill(os.getpid(), signal.SIGTERM)  # handled: step 6 ends, is saved, and the run stops
        return real(*a, **k)

    monkeypatch.setattr(core, "apply_update", update)
    run = tmp_path / "run"
    assert main([verb, *SMALL[verb], "--out", str(run)]) == 128 + signal.SIGTERM
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000004", "step-00000006"]
    monkeypatch.setattr(core, "apply_update", real)
    assert main([verb, "--out", str(run), "--resume", "--no-progress"]) == 0
    _ends_like(run, small_reference[verb], verb)


def test_minutes_plans_the_classifier_run_and_the_plan_is_kept(tmp_path, one_second_steps):
    run = tmp_path / "run"
    argv = [a for a in SMALL["train-classifier"]]
    argv[argv.index("--steps") : argv.index("--steps") + 2] = ["--minutes", "0.5"]
    assert main(["train-classifier", *argv, "--out", str(run)]) == 0
    record = json.loads((run / "config.json").read_text())["args"]
    steps = record["steps"]
    assert record["minutes"] is None and steps == 30  # 30 s at 1 s a step (10 timed, 20 planned after them)
    assert ckpt.latest_checkpoint(run).name == f"step-{steps:08d}"
    assert json.loads((ckpt.latest_checkpoint(run) / "config.json").read_text())["args"]["steps"] == steps


# The CLIP trainer runs the same loop core: a SIGKILL between checkpoints, and the resume from its record alone
# ends at the uninterrupted run's weights, bit for bit.
@pytest.fixture(scope="module")
def clip_reference(tmp_path_factory):
    from tiny_models import make_tiny_clip, write_fake_fashion_mnist

    root = tmp_path_factory.mktemp("clip-crash")
    write_fake_fashion_mnist(root / "fm")
    text = make_tiny_clip(root / "text", max_positions=64)
    argv = ["train-clip", "--data", "scenes", "--size", "40", "--steps", "12", "--batch-size", "8", "--holdout", "0",
            "--embed-dim", "8", "--width", "8", "--text", f"clip:{text}", "--checkpoint-every", "4"]  # fmt: skip
    argv += ["--no-progress"]
    mp = pytest.MonkeyPatch()
    mp.setenv("NOISECRAFT_FASHION_MNIST", str(root / "fm"))
    assert main([*argv, "--out", str(root / "ref")]) == 0
    yield root / "ref", argv, str(root / "fm")
    mp.undo()


def test_a_killed_clip_run_resumes_bit_identically(clip_reference, tmp_path, capsys):
    ref, argv, fashion = clip_reference
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "NOISECRAFT_FASHION_MNIST": fashion}
    r = subprocess.run(
        [sys.executable, "-c", KILL_AT_UPDATE, "7", *argv, "--out", str(run)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == -9, r.stderr[-2000:]
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000004"]  # killed between checkpoints
    assert not (run / "clip.safetensors").exists()
    assert main(["train-clip", "--out", str(run), "--resume", "--no-progress"]) == 0  # the folder says what to run
    assert "resuming from" in capsys.readouterr().out
    assert _same_weights(ref / "checkpoints/step-00000012", run / "checkpoints/step-00000012")
    assert _same_file_tensors(ref / "clip.safetensors", run / "clip.safetensors")
