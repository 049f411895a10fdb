#!/usr/bin/env bash
# `make test`: start what the tests need, run them, stop what this run started.
#  1. the real Kubernetes control plane (scripts/cluster/cluster.py; built from source the first time),
#  2. the Docker Engine and both images (scripts/images.py; a local base image the first time),
#  3. pytest: everything in parallel on both cores, then the tests that measure time, alone,
#  4. the end-to-end tests on a one-node cluster (scripts/e2e.sh; root only, as `make e2e`).
# A cluster or engine that was already running is reused and left running; one this run started is stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

cluster_started=0
engine_started=0
cleanup() {
  if [ "$cluster_started" = 1 ]; then $PY scripts/cluster/cluster.py down || true; fi
  if [ "$engine_started" = 1 ]; then $PY scripts/images.py engine-down || true; fi
}
trap cleanup EXIT

echo "== the Kubernetes control plane (scripts/cluster/cluster.py up)"
up=$($PY scripts/cluster/cluster.py up) || { echo "cluster.py up failed" >&2; exit 1; }
echo "$up" | grep -q '"reused": false' && cluster_started=1

echo "== the Docker Engine and the images (scripts/images.py)"
engine=$($PY scripts/images.py engine) || { echo "images.py engine failed" >&2; exit 1; }
echo "$engine" | grep -q '"started": true' && engine_started=1
$PY scripts/images.py build || { echo "images.py build failed" >&2; exit 1; }

echo "== tests"
$PY -m pytest -n 2 -m "not serial and not e2e" ${PYTEST_ARGS:-}
rc=$?
$PY -m pytest -m "serial and not e2e" ${PYTEST_ARGS:-}
rc2=$?

echo "== end to end on a one-node cluster (scripts/e2e.sh)"
if [ "$(id -u)" -eq 0 ]; then
  scripts/e2e.sh
  rc3=$?
else
  echo "e2e NOT RUN: it needs root (run make e2e as root)"
  rc3=0
fi
[ $rc -ne 0 ] && exit $rc
[ $rc2 -ne 0 ] && exit $rc2
exit $rc3
