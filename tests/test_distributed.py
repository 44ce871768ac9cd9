"""The same training in two processes (torchrun or accelerate launch, CPU/gloo): ranks see disjoint data and
end with equal weights. Each process runs the `noisecraft train` command line through tests/dist_probe.py,
which records what the process saw through train()'s callback (the library writes no test files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from noisecraft.training.setup import batch_indices

PROBE = str(Path(__file__).with_name("dist_probe.py"))  # runs `noisecraft ARGS` and records each process
LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    # --multi_gpu starts two gloo processes on a CPU machine (--cpu --num_processes 2 would start only one)
    "accelerate": [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        "0",
    ],
}


def _train_cmd(out, steps: int, *extra: str, launcher: str = "torchrun") -> list[str]:
    """A two-process training command on the swiss roll (checkpoint every 20 steps unless `extra` says else)."""
    return [
        sys.executable,
        *LAUNCHERS[launcher],
        PROBE,
        "train",
        "--data",
        "toy:swissroll",
        "--steps",
        str(steps),
        "--batch-size",
        "32",
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "trackers=[]",
        "--set",
        "sample_every=0",
        "--set",
        "checkpoint_every=20",
        *extra,
    ]


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_two_process_run_shards_data_and_agrees_on_weights(tmp_path, launcher):
    out = tmp_path / "run"
    cmd = _train_cmd(out, 12, "--set", "checkpoint_every=6", launcher=launcher)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "NC_PROBE_DIR": str(tmp_path / "probe")}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (out / "ranks").exists()  # the library writes no per-process evidence files
    ranks = [json.loads((tmp_path / "probe" / f"rank{i}.json").read_text()) for i in range(2)]
    assert [d["world_size"] for d in ranks] == [2, 2]
    a, b = ranks[0]["first_indices"], ranks[1]["first_indices"]
    assert len(a) == len(b) == 16 and not set(a) & set(b)  # different data ...
    expect = batch_indices(10_000, 0, 0, 32).tolist()  # ... namely the two halves of global batch 0
    assert a == expect[:16] and b == expect[16:]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]  # ... identical weights
    last = out / "checkpoints" / "step-00000012"
    assert (last / "rng-rank0.safetensors").is_file() and (last / "rng-rank1.safetensors").is_file()
    assert r.stdout.count("done:") == 1
    # the run never unpickles: checkpoints are safetensors + JSON only
    assert not list(last.glob("*.pt")) and not list(last.glob("*.bin"))


def test_sigterm_to_one_rank_stops_both_at_one_step_and_resume_is_exact(tmp_path):
    """Pre-emption hits one process: the ranks agree (one all-reduced flag per step), both write their part
    of one checkpoint at the same step and stop; resuming in two processes ends at the uninterrupted weights."""
    import signal
    import time

    import psutil
    import torch
    from safetensors.torch import load_file

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    steps = 400
    ref, out = tmp_path / "ref", tmp_path / "run"
    launcher = subprocess.Popen(_train_cmd(out, steps), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while launcher.poll() is None and time.time() < deadline and not any((out / "checkpoints").glob("step-*")):
        time.sleep(0.01)
    workers = [p for p in psutil.Process(launcher.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
    assert len(workers) == 1, "rank 1 not found (the run ended too early?)"
    workers[0].send_signal(signal.SIGTERM)
    stderr = launcher.communicate(timeout=120)[1].decode()
    assert launcher.returncode != 0  # torchrun reports that a worker exited with 143
    assert "SIGTERM received: stopped after step" in stderr, stderr[-3000:]
    stopped = int(stderr.split("stopped after step ")[1].split(",")[0])
    assert 20 <= stopped < steps
    ck = out / "checkpoints" / f"step-{stopped:08d}"
    assert (ck / "rng-rank0.safetensors").is_file() and (ck / "rng-rank1.safetensors").is_file()
    assert (ck / "model.safetensors").is_file()

    r = subprocess.run(_train_cmd(out, steps, "--resume"), capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(_train_cmd(ref, steps), capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    final = f"checkpoints/step-{steps:08d}/model.safetensors"
    a, b = load_file(ref / final), load_file(out / final)
    assert all(torch.equal(a[k], b[k]) for k in a), "weights differ after the interrupted two-process run resumed"


def test_two_node_launch_with_c10d_rendezvous(tmp_path):
    """The README's multi-node command, with two "machines" on this one: two torchrun launchers (node_rank 0
    and 1) meet at a c10d rendezvous; the run has world size 2 and both ranks end with the same weights."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "NC_PROBE_DIR": str(tmp_path / "probe")}
    nodes = []
    for node_rank in (0, 1):
        launch = ["-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1", "--node_rank"]
        launch += [str(node_rank), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"localhost:{port}"]
        train_args = _train_cmd(out, 12)[1 + len(LAUNCHERS["torchrun"]) :]  # PROBE, "train", ...
        cmd = [sys.executable, *launch, *train_args]
        nodes.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in nodes:
        err = p.communicate(timeout=240)[1]
        assert p.returncode == 0, err[-3000:]
    ranks = [json.loads((tmp_path / "probe" / f"rank{i}.json").read_text()) for i in range(2)]
    assert [d["world_size"] for d in ranks] == [2, 2]
    assert not set(ranks[0]["first_indices"]) & set(ranks[1]["first_indices"])
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
