# mobius-cache — every entry point. `make run` and `make test` do all set-up on a fresh Debian/Ubuntu machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HELM_CACHE_HOME := $(CURDIR)/.tools/helm/cache
export HELM_CONFIG_HOME := $(CURDIR)/.tools/helm/config
export HELM_DATA_HOME := $(CURDIR)/.tools/helm/data
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: help venv system-deps tools test test-fast lint fmt run bench bench-quick dashboards e2e clean

help:
	@echo "make run         start a local Redis and the sidecar on http://127.0.0.1:8787"
	@echo "make test        install everything missing, then run the whole test suite"
	@echo "make lint        ruff, mypy --strict, import-linter"
	@echo "make bench       benchmarks; writes docs/benchmarks.md (make bench-quick: < 2 minutes)"
	@echo "make dashboards  regenerate dashboards/*.json from dashboards/build.py"
	@echo "make e2e         kind cluster end to end (skipped without Docker and kind)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null
	$(BIN)/pip install -q -e '.[dev,bench]'
	@touch $(STAMP)

venv: $(STAMP)

system-deps:
	@scripts/ensure-system-deps.sh

tools: system-deps
	@scripts/ensure-helm.sh >/dev/null

# Two passes: everything in parallel on both cores, then the tests that measure time, alone.
test: venv system-deps tools
	$(BIN)/python -m pytest -n 2 -m "not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/python -m pytest -x -q $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check sidecar operator tests dashboards scripts charts/mobius-cache/files
	$(BIN)/ruff format --check sidecar operator tests dashboards scripts charts/mobius-cache/files
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: venv
	$(BIN)/ruff format sidecar operator tests dashboards scripts charts/mobius-cache/files
	$(BIN)/ruff check --fix sidecar operator tests dashboards scripts charts/mobius-cache/files

run: venv
	@scripts/ensure-system-deps.sh --redis-only
	@scripts/run-local.sh

bench: venv system-deps
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

bench-quick: venv system-deps
	$(BIN)/python -m benchmarks --quick $(BENCH_ARGS)

dashboards: venv
	$(BIN)/python dashboards/build.py

e2e: venv tools
	@scripts/e2e-kind.sh

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
