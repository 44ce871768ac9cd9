#!/usr/bin/env bash
# Issue 4's training-throughput target on a lent GPU: one short, prepared device check.
#
# The GPU machine's python3 has torch, accelerate, transformers, tensorboard, ... but not diffusers or datasets,
# and it cannot download. So, here first (pure-Python wheels, about 7 MB, into the git-ignored .whl/):
#     bash benchmarks/device_throughput.sh --fetch
# then with the device tool:  run(command="bash benchmarks/device_throughput.sh", carry=[".whl"], timeout_s=540)
# It trains the demo config briefly on the GPU (a smoke test of the trainer there), then prints the
# throughput tables (ours, the guide's reference loop, the bare-step floor) for two model sizes; all output
# is also written under $OUT.
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

{
    python3 benchmarks/train_throughput.py --steps 100 --repeats 3
    python3 benchmarks/train_throughput.py --preset small --resolution 32 --batch 128 --steps 60 --repeats 3
} 2>&1 | tee "$OUT/throughput.txt"
