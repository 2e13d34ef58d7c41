# The two set-up commands of the README are `make train` and `make test`; both install first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
FORCE ?=
DEMO_STEPS ?= 200


.PHONY: install train test lint bench scale gpu-check clean

install:
	$(PYTHON) scripts/install.py $(if $(FORCE),--force)

# A short demo on the defaults: a fresh run each time, a few minutes on 2 cores.
train: install
	$(BIN)/alphatriangle train --run-name demo-$$(date +%Y%m%d-%H%M%S) --max-steps $(DEMO_STEPS)

test: install
	$(BIN)/python -m pytest -q

# selfplay, trieye, persistence and pipeline benchmarks, one markdown table (~4 min on 2 cores).
bench: install
	$(BIN)/python bench/run_all.py

# The pipeline against 2 to 256 simulated workers (~9 min on 2 cores); figures in docs/scale/.
scale: install
	$(BIN)/python bench/scale.py --before 2 16 64 --out docs/scale

# GPU workers and learner against the same run on the CPU (needs an NVIDIA GPU; ~4 min).
gpu-check: install
	$(BIN)/python bench/gpu_check.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

clean:
	rm -rf build
