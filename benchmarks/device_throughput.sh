#!/usr/bin/env bash
# Issue 4's training-throughput target on a lent GPU: one short, prepared device check.
#
# The GPU machine's python3 has torch, accelerate, transformers, tensorboard, ... but not diffusers or datasets,
# and it cannot download. So, here first (pure-Python wheels, about 7 MB, into the git-ignored .whl/):
#     bash benchmarks/device_throughput.sh --fetch
# then with the device tool:  run(command="bash benchmarks/device_throughput.sh", carry=[".whl"], timeout_s=540)
# It trains the demo config briefly on the GPU (a smoke test of the trainer there), then smoke-tests sampling,
# evaluation and editing on the GPU (every sampler on CUDA against the same seeds on the CPU; `sample`, `eval`
# and `edit` with --device cuda), then prints the throughput tables (ours, the guide's reference loop, the
# bare-step floor) for two model sizes; all output is also written under $OUT. `--smoke` stops after the smoke
# tests. (Written without a GPU at hand: the CPU suite covers placement with meta tensors,
# tests/test_device_placement.py; this script is what a session with a GPU runs.)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fetch" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
        diffusers==0.42.1 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 importlib_metadata==10.2.0
    ls -la .whl
    exit 0
fi

OUT="${OUT:-/tmp/noisecraft-device}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" | tee "$OUT/device.txt"

# the trainer on the GPU: a short demo run and its sample grid (resume exactness is tested on CPU)
rm -rf /tmp/nc-demo
python3 -m noisecraft.cli.main train --config configs/demo-digits.json --steps 300 --out /tmp/nc-demo \
    --no-progress --set sample_every=300 2>&1 | tail -3 | tee "$OUT/demo.txt"
cp /tmp/nc-demo/samples/step-00000300.png "$OUT/demo-grid.png"

# sampling, evaluation and editing on the GPU
nc() { python3 -m noisecraft.cli.main "$@"; }
{
    python3 - <<'PY'
import torch
from noisecraft.sampling.generate import generate
from noisecraft.sampling.samplers import SAMPLERS
from noisecraft.training.checkpoint import load_run

gpu, sched, cfg = load_run("/tmp/nc-demo", device="cuda")
cpu, _, _ = load_run("/tmp/nc-demo", device="cpu")
shape = (cfg.data.channels, cfg.data.resolution, cfg.data.resolution)
bad = []
for name in sorted(SAMPLERS):
    a = generate(gpu, sched, shape, range(8), sampler=name, steps=10)
    b = generate(cpu, sched, shape, range(8), sampler=name, steps=10)
    d = float((a - b).abs().max())
    print(f"{name:>16}: cuda vs cpu, same seeds: max |diff| {d:.2e}")
    bad += [name] if not d < 5e-2 else []
print("samplers on cuda: " + ("all agree with the cpu" if not bad else "DIFFER: " + ", ".join(bad)))
PY
    nc sample /tmp/nc-demo --num 64 --sampler unipc --steps 10 --device cuda --out /tmp/nc-demo/gen
    nc eval /tmp/nc-demo --num 500 --sampler unipc --steps 10 --device cuda --nll 50
    nc eval /tmp/nc-demo --num 200 --sampler euler --steps 10 --device cuda --ref /tmp/nc-demo/gen
    nc edit img2img /tmp/nc-demo /tmp/nc-demo/gen/seed000000.png --strength 0.5 --device cuda
    nc edit inpaint /tmp/nc-demo /tmp/nc-demo/gen/seed000001.png --rect 0,0,8,16 --device cuda
    nc edit invert /tmp/nc-demo /tmp/nc-demo/gen/seed000002.png --device cuda
    nc edit interpolate /tmp/nc-demo /tmp/nc-demo/gen/seed000003.png /tmp/nc-demo/gen/seed000004.png --device cuda
    python3 - <<'PY'
import json, torch
from noisecraft.evaluation.evaluate import periodic_eval
from noisecraft.training.checkpoint import load_run

den, sched, cfg = load_run("/tmp/nc-demo", device="cuda")
r = periodic_eval(den, sched, "digits", (1, 16, 16), num=64, steps=5)
print("periodic_eval on cuda:", json.dumps(r.scores.to_dict()))
PY
} 2>&1 | tee "$OUT/smoke.txt"
cp /tmp/nc-demo/gen/grid.png "$OUT/gpu-grid.png"
[ "${1:-}" = "--smoke" ] && exit 0

{
    python3 benchmarks/train_throughput.py --steps 100 --repeats 3
    python3 benchmarks/train_throughput.py --preset small --resolution 32 --batch 128 --steps 60 --repeats 3
} 2>&1 | tee "$OUT/throughput.txt"
