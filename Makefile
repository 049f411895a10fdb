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

.PHONY: help venv system-deps tools test test-fast lint fmt run bench bench-quick dashboards e2e clean \
	cluster cluster-down cluster-status images images-down

help:
	@echo "make run         start a local Redis and the sidecar on http://127.0.0.1:8787"
	@echo "make test        install everything missing, then run the whole test suite"
	@echo "make lint        ruff, mypy --strict, import-linter"
	@echo "make bench       benchmarks; writes docs/benchmarks.md (make bench-quick: < 2 minutes)"
	@echo "make dashboards  regenerate dashboards/*.json from dashboards/build.py"
	@echo "make cluster     a real Kubernetes control plane on 127.0.0.1 (built from source once); make cluster-down"
	@echo "make images      both images, built by a local Docker Engine (started when none answers)"
	@echo "make e2e         the chart end to end on a one-node cluster built here"

$(STAMP): pyproject.toml operator/pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null
	$(BIN)/pip install -q -e '.[dev,bench]' -e ./operator
	@touch $(STAMP)

venv: $(STAMP)

system-deps:
	@scripts/ensure-system-deps.sh

tools: system-deps
	@scripts/ensure-helm.sh >/dev/null

# Starts the real Kubernetes and the Docker Engine (building them the first time), runs the tests in two passes
# (in parallel on both cores, then the ones that measure time, alone) and stops what it started.
test: venv system-deps tools
	@PYTEST_ARGS="$(PYTEST_ARGS)" scripts/run-tests.sh

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

e2e: venv system-deps tools
	@PYTEST_ARGS="$(PYTEST_ARGS)" scripts/e2e.sh

# The real Kubernetes of the tests: scripts/cluster/cluster.py builds (once) and starts it; its state is .run/cluster.
# `make cluster NODE=1` (root) adds one node: containerd, kubelet, kube-scheduler, kube-proxy and CoreDNS.
cluster: venv system-deps tools
	@$(BIN)/python scripts/cluster/cluster.py up $(if $(NODE),--node) >/dev/null
	@echo "export KUBECONFIG=$(CURDIR)/.run/cluster/kubeconfig"

cluster-down:
	@$(PY) scripts/cluster/cluster.py down

cluster-status:
	@$(PY) scripts/cluster/cluster.py status

images: venv system-deps
	@$(BIN)/python scripts/images.py build

images-down:
	@$(PY) scripts/images.py engine-down

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
