# The two set-up commands of the README are `make train` and `make test`; both install first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
FORCE ?=

.PHONY: install train test lint bench clean

install:
	$(PYTHON) scripts/install.py $(if $(FORCE),--force)

train: install
	$(BIN)/alphatriangle doctor

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

clean:
	rm -rf build
