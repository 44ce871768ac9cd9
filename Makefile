# Two commands do all set-up on a fresh machine:  `make demo` (the main job) and `make test` (the suite).
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1

.PHONY: setup demo demo-2d test lint

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

setup: $(VENV)/.installed

# Trains a small U-Net on the built-in digits (16x16) in a few CPU minutes, then samples it. Re-running
# reuses the finished run (--resume); `rm -rf runs/demo-digits` to start over. The 2-D demo: `make demo-2d`.
DEMO_RUN ?= runs/demo-digits
demo: $(VENV)/.installed
	$(VENV)/bin/noisecraft train --config configs/demo-digits.json --out $(DEMO_RUN) \
		$$(test -e $(DEMO_RUN)/config.json -o -e $(DEMO_RUN)/launch.json && echo --resume)
	$(VENV)/bin/noisecraft sample $(DEMO_RUN) --sampler heun --steps 20 --num 64 --out $(DEMO_RUN)/final
	@echo "digits drawn by the model: $(DEMO_RUN)/final/grid.png (one PNG per seed beside it)"

demo-2d: $(VENV)/.installed
	$(VENV)/bin/noisecraft demo --out runs/demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks docs && $(VENV)/bin/ruff format --check src tests benchmarks docs
