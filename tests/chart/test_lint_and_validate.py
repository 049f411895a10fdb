"""The chart as a whole: helm lint --strict, and every value set renders objects Kubernetes 1.35 accepts."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.chart import helm

MONITORING_APIS = [
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
]

VALUE_SETS: dict[str, tuple[dict[str, object], list[str]]] = {
    "defaults": ({}, []),
    "auth-off": ({"redis.auth.enabled": False}, []),
    "persistence-on": ({"redis.persistence.enabled": True, "redis.persistence.mode": "aof"}, []),
    "exporter-off": ({"exporter.enabled": False}, []),
    "monitoring-on": (
        {"monitoring.serviceMonitor.enabled": True, "monitoring.prometheusRule.enabled": True},
        MONITORING_APIS,
    ),
    "podmonitor-and-example": (
        {"monitoring.podMonitor.enabled": True, "example.enabled": True},
        ["--api-versions", "monitoring.coreos.com/v1/PodMonitor"],
    ),
    "external-redis": (
        {"redis.enabled": False, "externalRedis.url": "rediss://cache.example.com:6380/0"},
        [],
    ),
    "example-and-namespace-scope": ({"example.enabled": True, "operator.scope": "namespace"}, []),
    "existing-secret": ({"redis.auth.existingSecret": "my-redis", "redis.networkPolicy.enabled": False}, []),
    "tls": ({"redis.tls.enabled": True, "example.enabled": True}, []),
    "tls-existing-acl-prefix": (
        {
            "redis.tls.enabled": True,
            "redis.tls.existingSecret": "corp-tls",
            "redis.acl.cacheKeyPrefixes": ["mobius:"],
        },
        [],
    ),
    "replication": ({"redis.architecture": "replication", "example.enabled": True}, []),
    "replication-tls-hard-persistent": (
        {
            "redis.architecture": "replication",
            "redis.replicas": 4,
            "redis.tls.enabled": True,
            "redis.podAntiAffinity": "hard",
            "redis.persistence.enabled": True,
        },
        [],
    ),
    "replication-auth-off-no-exporter": (
        {"redis.architecture": "replication", "redis.auth.enabled": False, "exporter.enabled": False},
        [],
    ),
    # tests/kube installs these on an API server without nodes, where no cluster can form: no check Job there
    # (test_architectures covers it).
    "cluster": (
        {"redis.architecture": "cluster", "redis.cluster.check": False, "example.enabled": True},
        MONITORING_APIS,
    ),
    "cluster-tls-big": (
        {
            "redis.architecture": "cluster",
            "redis.tls.enabled": True,
            "redis.cluster.shards": 5,
            "redis.cluster.replicasPerShard": 2,
            "redis.cluster.check": False,
            "monitoring.serviceMonitor.enabled": True,
            "monitoring.prometheusRule.enabled": True,
        },
        MONITORING_APIS,
    ),
    "cluster-auth-off": (
        {"redis.architecture": "cluster", "redis.auth.enabled": False, "redis.cluster.check": False},
        [],
    ),
    "injector-fail-opt-in": (
        {
            "injector.failurePolicy": "Fail",
            "injector.reinvocationPolicy": "Never",
            "injector.namespaceSelector": {"matchLabels": {"cache.mobius.io/injection": "enabled"}},
        },
        [],
    ),
    "injector-off-example": ({"injector.enabled": False, "example.enabled": True}, []),
}

KUBERNETES_VALIDATE = Path(sys.executable).with_name("kubernetes-validate")


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--set", "redis.architecture=replication", "--set", "redis.tls.enabled=true"],
        ["--set", "redis.architecture=cluster", "--set", "redis.tls.enabled=true"],
        ["--set", "redis.architecture=cluster", "--set", "redis.auth.enabled=false"],
    ],
)
def test_lint_strict(flags: list[str]) -> None:
    result = helm.run_helm("lint", "--strict", str(helm.CHART), *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_are_valid_kubernetes(name: str) -> None:
    values, extra = VALUE_SETS[name]
    result = helm.template(values, *extra)
    assert result.returncode == 0, result.stderr
    assert helm.objects(result.stdout), "nothing rendered"
    check = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", "1.35.0", "-"],
        input=result.stdout,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    errors = [line for line in check.stdout.splitlines() if line.startswith("ERROR")]
    assert check.returncode == 0 and not errors, check.stdout + check.stderr


def test_validation_catches_a_broken_object() -> None:
    """The validator really fails on an unknown field, so the test above can fail."""
    broken = "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n"
    check = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", "1.35.0", "-"],
        input=broken,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode != 0


def test_package_includes_the_linked_files(tmp_path: Path) -> None:
    """helm package follows the symlinks: the packaged chart carries the CRD, dashboards and rules."""
    result = helm.run_helm("package", str(helm.CHART), "-d", str(tmp_path))
    assert result.returncode == 0, result.stderr

    (archive,) = tmp_path.glob("mobius-cache-*.tgz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "mobius-cache/files/crds/cacheconfig.yaml" in names
    assert "mobius-cache/files/dashboards/alerts.rules.yaml" in names
    assert {n for n in names if n.endswith(".json") and "/files/dashboards/" in n}
    packaged_code = {n for n in names if n.endswith(".py") and "/files/dashboards/" in n}
    assert not packaged_code, "the dashboards' build code was packaged"
