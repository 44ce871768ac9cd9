#!/usr/bin/env bash
# Create the virtual environment and install noisecraft with its test tools.
# On a machine without an NVIDIA GPU, torch is pinned to the CPU build first, so that the
# unpinned `torch` dependency is already satisfied and no multi-GB CUDA build is pulled in.
set -euo pipefail
venv=${1:-.venv}
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
if ! command -v nvidia-smi >/dev/null 2>&1; then
  "$venv/bin/python" -m pip install -q "torch==2.13.0"
fi
"$venv/bin/python" -m pip install -q -e ".[dev]"
# The web studio's browser tests drive Debian's chromium through Playwright (Playwright's own browser download
# is not used). Installed where apt exists and it is missing; without it those tests skip with the reason.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
  && command -v apt-get >/dev/null 2>&1; then
  as_root=""
  if [ "$(id -u)" -ne 0 ]; then as_root="sudo -n"; fi
  if ! { $as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq \
    --no-install-recommends chromium; } >/dev/null 2>&1; then
    echo "note: could not install chromium (needs root or sudo); the studio's browser tests will be skipped"
  fi
fi
# k-diffusion for the sampler parity tests only: without its heavy dependencies (torchvision, wandb, ...);
# tests load its sampling.py alone (tests/test_samplers_kdiffusion.py).
"$venv/bin/python" -m pip install -q --no-deps "k-diffusion==0.1.1.post1"
# Fashion-MNIST (the built-in fashion-mnist and scenes datasets) comes from Debian; tests never need it
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1 \
    || echo "note: could not install dataset-fashion-mnist; the scenes and fashion-mnist datasets need it"
fi
