"""Fixtures of the chart tests: the helm binary (installed by scripts/ensure-helm.sh when missing)."""

from __future__ import annotations

import functools
import subprocess

import pytest

from tests.chart import helm


@functools.cache
def _ensure_helm() -> str:
    """Return "" when helm is usable, else why not (scripts/ensure-helm.sh is tried once)."""
    if not helm.HELM.exists():
        proc = subprocess.run(
            [str(helm.ROOT / "scripts" / "ensure-helm.sh")], capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0 or not helm.HELM.exists():
            return f"helm is absent and scripts/ensure-helm.sh failed: {proc.stderr.strip()[-300:]}"
    return ""


@pytest.fixture(autouse=True)
def _need_helm() -> None:
    reason = _ensure_helm()
    if reason:
        pytest.skip(reason)
