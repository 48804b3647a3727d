# The runnable docs. `make run` and `make test` bootstrap .venv on first use.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= config/tagrelay.example.toml

.PHONY: run once test lint typecheck unit bench clean help

help:
	@echo "make run    - start tagrelay on the offline sample archive (Ctrl-C stops it)"
	@echo "make test   - ruff, mypy and the test suite"
	@echo "make bench  - benchmarks, side by side with feed2toot and feediverse"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/tagrelay --config $(CONFIG) run

once: $(STAMP)
	$(BIN)/tagrelay --config $(CONFIG) run --once

lint: $(STAMP)
	$(BIN)/ruff check bot tests migrations $(wildcard bench)

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data/ .pytest_cache .mypy_cache .ruff_cache dist build
