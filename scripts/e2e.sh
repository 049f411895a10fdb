#!/usr/bin/env bash
# `make e2e` (and the last pass of `make test`): the chart end to end on a one-node Kubernetes built here.
# Builds the images (scripts/images.py), runs tests/e2e (its fixture starts the node cluster in .run/e2e-cluster
# through scripts/cluster/cluster.py up --node) and takes the node cluster down again if this run started it.
# Needs root: the node makes network namespaces, mounts, iptables rules and cgroups.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export MOBIUS_CLUSTER_DIR="$PWD/.run/e2e-cluster"

if [ "$(id -u)" -ne 0 ]; then
  echo "e2e needs root (a Kubernetes node: network namespaces, mounts, iptables, cgroups); run it as root" >&2
  exit 1
fi
started=0
engine_started=0
$PY scripts/cluster/cluster.py status >/dev/null 2>&1 || started=1
cleanup() {
  if [ "$started" = 1 ]; then $PY scripts/cluster/cluster.py down || true; fi
  if [ "$engine_started" = 1 ]; then $PY scripts/images.py engine-down || true; fi
}
trap cleanup EXIT

engine=$($PY scripts/images.py engine) || { echo "images.py engine failed" >&2; exit 1; }
echo "$engine" | grep -q '"started": true' && engine_started=1
$PY scripts/images.py build || { echo "images.py build failed" >&2; exit 1; }
began=$(date +%s)
$PY -m pytest -m e2e -p no:xdist -o timeout=900 -v ${PYTEST_ARGS:-} tests/e2e
rc=$?
echo "e2e: $(( $(date +%s) - began )) s (exit $rc)"
exit $rc
