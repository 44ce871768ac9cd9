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
# tests (and fits step schedules there: `samplers --fit` runs on the model's device); `--tables` runs only the
# throughput tables.
#
# The same script end to end without a GPU, at a tiny size, with this checkout's .venv (no .whl needed):
#     DEVICE=cpu bash benchmarks/device_throughput.sh --smoke        # about 2-4 CPU minutes
# (tests/test_device_script.py runs it so, marked slow; the CPU suite covers placement with meta tensors,
# tests/test_device_placement.py.)
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

DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-/tmp/noisecraft-device-$DEVICE}"
RUN="${RUN_DIR:-/tmp/nc-demo-$DEVICE}"
mkdir -p "$OUT"
if [ "$DEVICE" = "cpu" ]; then  # this checkout's environment, tiny sizes: the script's path, not its numbers
    PY="${PYTHON:-$PWD/.venv/bin/python}"
    STEPS=20 NUM=16 EVAL_NUM=32 NLL=4
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
else
    PY="${PYTHON:-python3}"
    STEPS=300 NUM=64 EVAL_NUM=500 NLL=50
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DEVICE
"$PY" -c "import os, torch; d = os.environ['DEVICE']
print(torch.__version__, torch.cuda.get_device_name() if d.startswith('cuda') else d)" | tee "$OUT/device.txt"

if [ "${1:-}" != "--tables" ]; then  # --tables: only the throughput tables
# the trainer on the device: a short demo run and its sample grid (resume exactness is tested on CPU)
rm -rf "$RUN"
"$PY" -m noisecraft.cli.main train --config configs/demo-digits.json --steps "$STEPS" --out "$RUN" \
    --no-progress --set sample_every="$STEPS" --set trackers=[] 2>&1 | tail -3 | tee "$OUT/demo.txt"
cp "$RUN/samples/step-$(printf %08d "$STEPS").png" "$OUT/demo-grid.png"

# sampling, evaluation and editing on the device
nc() { "$PY" -m noisecraft.cli.main "$@"; }
{
    RUN="$RUN" "$PY" - <<'PY'
import os
from noisecraft.sampling.generate import generate
from noisecraft.sampling.samplers import SAMPLERS
from noisecraft.training.checkpoint import load_run

dev, run = os.environ["DEVICE"], os.environ["RUN"]
on_dev, sched, cfg = load_run(run, device=dev)
cpu, _, _ = load_run(run, device="cpu")
shape = (cfg.data.channels, cfg.data.resolution, cfg.data.resolution)
bad = []
for name in sorted(SAMPLERS):
    a = generate(on_dev, sched, shape, range(8), sampler=name, steps=10)
    b = generate(cpu, sched, shape, range(8), sampler=name, steps=10)
    d = float((a - b).abs().max())
    print(f"{name:>16}: {dev} vs cpu, same seeds: max |diff| {d:.2e}")
    bad += [name] if not d < 5e-2 else []
print(f"samplers on {dev}: " + ("all agree with the cpu" if not bad else "DIFFER: " + ", ".join(bad)))
PY
    nc sample "$RUN" --num "$NUM" --sampler unipc --steps 10 --device "$DEVICE" --out "$RUN/gen"
    nc sample "$RUN" --num 8 --sampler heun --steps 5 --clip-x0 --device "$DEVICE" --out "$RUN/gen-clip"
    nc eval "$RUN" --num "$EVAL_NUM" --sampler unipc --steps 10 --device "$DEVICE" --nll "$NLL"
    nc eval "$RUN" --num "$EVAL_NUM" --sampler adaptive --steps 10 --clip-x0 --device "$DEVICE" --no-floor
    nc eval "$RUN" --num 16 --sampler euler --steps 10 --device "$DEVICE" --ref "$RUN/gen"
    nc edit img2img "$RUN" "$RUN/gen/seed000000.png" --strength 0.5 --device "$DEVICE"
    nc edit inpaint "$RUN" "$RUN/gen/seed000001.png" --rect 0,0,8,16 --device "$DEVICE"
    nc edit invert "$RUN" "$RUN/gen/seed000002.png" --device "$DEVICE"
    nc edit interpolate "$RUN" "$RUN/gen/seed000003.png" "$RUN/gen/seed000004.png" --device "$DEVICE"
    # step schedules fitted on the device (the model's device: load_run puts it on CUDA), then used there
    nc samplers --fit "$RUN" --steps 5 --calibration 16
    nc sample "$RUN" --num 8 --sampler unipc --steps 5 --schedule "optimised:$RUN" --device "$DEVICE" --out "$RUN/gen-opt"
    nc sample "$RUN" --num 8 --sampler gauss_pc --steps 5 --device "$DEVICE" --out "$RUN/gen-gpc"
    RUN="$RUN" "$PY" - <<'PY'
import json, os
from noisecraft.evaluation.evaluate import periodic_eval
from noisecraft.training.checkpoint import load_run

den, sched, cfg = load_run(os.environ["RUN"], device=os.environ["DEVICE"])
r = periodic_eval(den, sched, "digits", (1, 16, 16), num=64, steps=5)
print(f"periodic_eval on {os.environ['DEVICE']}:", json.dumps(r.scores.to_dict()))
PY
} 2>&1 | tee "$OUT/smoke.txt"
cp "$RUN/gen/grid.png" "$OUT/device-grid.png"
echo "smoke test on $DEVICE: done (logs and grids in $OUT)"
[ "${1:-}" = "--smoke" ] && exit 0
fi

{
    "$PY" benchmarks/train_throughput.py --steps 100 --repeats 3
    "$PY" benchmarks/train_throughput.py --preset small --resolution 32 --batch 128 --steps 60 --repeats 3
} 2>&1 | tee "$OUT/throughput.txt"
