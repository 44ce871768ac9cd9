"""The same training in two processes (torchrun or accelerate launch, CPU/gloo): ranks see disjoint data and
end with equal weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from noisecraft.training.setup import batch_indices

LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"],
    # --multi_gpu starts two gloo processes on a CPU machine (--cpu --num_processes 2 would start only one)
    "accelerate": [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        "0",
        "-m",
    ],
}


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_two_process_run_shards_data_and_agrees_on_weights(tmp_path, launcher):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        *LAUNCHERS[launcher],
        "noisecraft.cli.main",
        "train",
        "--data",
        "toy:swissroll",
        "--steps",
        "12",
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
        "checkpoint_every=6",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((out / "ranks" / f"rank{i}.json").read_text()) for i in range(2)]
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
