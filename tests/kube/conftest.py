"""Fixtures of the real-Kubernetes tests: the cluster (scripts/cluster/cluster.py), a namespace per test, images.

Every test here carries the ``kube`` marker. `make test` starts the cluster and builds the images before pytest
(so a first, cold build is not counted against a test's timeout) and stops what it started afterwards; run alone,
the fixtures start what is missing and leave it running (`make cluster-down`, `make images-down`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kube.cluster import ROOT, Cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.kube)


@pytest.fixture(scope="session")
def kube() -> Cluster:
    return Cluster.up()


@pytest.fixture
def namespace(kube: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting for its finalization)."""
    name = f"t-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    kube.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@dataclass(frozen=True)
class Images:
    """The project's images in a running Docker Engine, and the DOCKER_HOST that reaches it."""

    docker_host: str | None
    sidecar: str
    operator: str

    def docker(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        import os

        env = dict(os.environ)
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        proc = subprocess.run(
            ["docker", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:3])} ... failed: {proc.stderr.strip()}")
        return proc


@pytest.fixture(scope="session")
def images() -> Images:
    """Both images, built (or found up to date in the layer cache) by scripts/images.py."""
    script = ROOT / "scripts" / "images.py"
    proc = subprocess.run(
        [sys.executable, str(script), "build", "--json"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/images.py build failed:\n{proc.stderr[-3000:]}")
    built = json.loads(proc.stdout)
    return Images(built["docker_host"], built["mobius/cache-sidecar"], built["mobius/cache-operator"])
