"""Fixtures of the end-to-end tests: a one-node cluster built here (scripts/cluster/cluster.py up --node).

The node cluster has its own state directory (.run/e2e-cluster), so it never disturbs the control-plane-only
cluster of tests/kube. It needs root (network namespaces, mounts, iptables). `make e2e` brings it up and takes it
down; run alone, the fixture starts what is missing and leaves it running (`MOBIUS_CLUSTER_DIR=.run/e2e-cluster
make cluster-down` stops it).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube.cluster import BIN, ROOT, Cluster

sys.path.insert(0, str(ROOT / "scripts"))
import images

STATE_DIR = ROOT / ".run" / "e2e-cluster"
VERSION = images.version()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def node_cluster() -> Cluster:
    if os.geteuid() != 0:
        pytest.fail(
            "the end-to-end tests need root: the node makes network namespaces, mounts and iptables rules"
        )
    cluster = Cluster.up(node=True, state_dir=STATE_DIR)
    # The project's images as built now (make e2e builds them first): a reused node may hold older ones.
    refs = [f"{name}:{VERSION}" for name in images.IMAGES]
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cluster" / "cluster.py"), "load-images", *refs],
        check=True,
        capture_output=True,
        env={**os.environ, "MOBIUS_CLUSTER_DIR": str(STATE_DIR)},
        timeout=600,
    )
    return cluster


@contextlib.contextmanager
def port_forward(kube: Cluster, namespace: str, target: str, port: int) -> Iterator[int]:
    """`kubectl port-forward` to ``target`` (pod/x or svc/x) on a free loopback port; yields that port."""
    proc = subprocess.Popen(
        [str(BIN / "kubectl"), "port-forward", "-n", namespace, "--address", "127.0.0.1", target, f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kube.env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if match is None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"kubectl port-forward {target} failed: {line} {err}")
        yield int(match.group(1))
    finally:
        proc.terminate()
        proc.wait(10)
