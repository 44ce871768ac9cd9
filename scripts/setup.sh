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
