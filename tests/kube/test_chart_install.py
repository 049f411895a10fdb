"""`helm install`, `upgrade` and `uninstall` of the chart against the real API server.

Every value set the rendering tests use (tests/chart/test_lint_and_validate.py) is installed for real: the API
server applies its own validation (strict fields, the real prometheus-operator CRDs for the monitoring objects,
the CRD's schema), `lookup` runs against real objects, and `helm uninstall` is checked against every namespaced
kind the server serves. The cluster has no nodes, so pods stay Pending: scheduling is tests/e2e's business.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import pytest

from tests.chart.helm import set_args
from tests.chart.test_lint_and_validate import VALUE_SETS
from tests.kube.cluster import CHART, ROOT, Cluster, wait_for

CRD = "cacheconfigs.cache.mobius.io"
# What every namespace holds before anything is installed into it.
BASELINE = {"configmaps/kube-root-ca.crt", "serviceaccounts/default"}
NOT_OBJECTS = {"events", "events.events.k8s.io"}  # Events outlive their objects by design (TTL 1 h)


@pytest.fixture(scope="module")
def monitoring_crds(kube: Cluster) -> None:
    """The real ServiceMonitor/PodMonitor/PrometheusRule CRDs, so the monitoring values install for real."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cluster" / "cluster.py"), "monitoring-crds"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def namespaced_kinds(kube: Cluster) -> list[str]:
    out = kube.kubectl("api-resources", "--namespaced=true", "--verbs=list", "-o", "name").stdout.split()
    return [kind for kind in out if kind not in NOT_OBJECTS]


def objects_in(kube: Cluster, namespace: str) -> set[str]:
    """Every object in the namespace, of every namespaced kind the API server serves, as 'kind/name'."""
    kinds = namespaced_kinds(kube)
    out = kube.kubectl("get", ",".join(kinds), "-n", namespace, "-o", "json").stdout
    found = set()
    for item in json.loads(out)["items"]:
        kind = item["kind"].lower() + "s"
        found.add(f"{kind}/{item['metadata']['name']}")
    return found - BASELINE


def release_cluster_objects(kube: Cluster, release: str, namespace: str) -> list[str]:
    """The cluster-scoped objects labelled as this release's (the CRD aside)."""
    out = kube.kubectl(
        "get",
        "clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingwebhookconfigurations",
        "-l",
        f"app.kubernetes.io/instance={release}",
        "-o",
        "json",
    ).stdout
    return [
        f"{i['kind']}/{i['metadata']['name']}"
        for i in json.loads(out)["items"]
        if i["metadata"]["name"].endswith(f"-{namespace}") or namespace in json.dumps(i)
    ]


def install(kube: Cluster, release: str, namespace: str, values: dict[str, Any], *extra: str) -> str:
    return kube.helm("install", release, str(CHART), "-n", namespace, *set_args(values), *extra).stdout


def uninstall_leaves_only_the_crd(kube: Cluster, release: str, namespace: str) -> None:
    out = kube.helm("uninstall", release, "-n", namespace).stdout
    assert "kept due to the resource policy" not in out or CRD in out
    left: set[str] = set()

    def empty() -> bool:
        nonlocal left
        left = objects_in(kube, namespace)
        return not left

    try:
        wait_for(f"namespace {namespace} to be empty after helm uninstall", empty, timeout=60, interval=0.5)
    except AssertionError:
        raise AssertionError(f"helm uninstall left {sorted(left)} in {namespace}") from None
    assert release_cluster_objects(kube, release, namespace) == []
    assert kube.get("crd", CRD) is not None, "the CRD is kept (deleting it would delete every CacheConfig)"


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_install_then_uninstall_leaves_nothing_but_the_crd(
    kube: Cluster, namespace: str, monitoring_crds: None, name: str
) -> None:
    values, _ = VALUE_SETS[name]
    install(kube, "mc", namespace, values)
    assert kube.helm("status", "mc", "-n", namespace, "-o", "json").stdout.count('"deployed"') >= 1
    installed = objects_in(kube, namespace)
    assert installed, "nothing was installed"
    if values.get("monitoring.serviceMonitor.enabled"):
        assert "servicemonitors/mc-mobius-cache-redis" in installed
        assert any(o.startswith("prometheusrules/") for o in installed)
    if values.get("monitoring.podMonitor.enabled"):
        assert any(o.startswith("podmonitors/") for o in installed)
    uninstall_leaves_only_the_crd(kube, "mc", namespace)


def redis_passwords(kube: Cluster, namespace: str) -> dict[str, str]:
    """The generated password of every Redis user (one key each)."""
    secret = kube.get("secret", "mc-mobius-cache-redis", namespace)
    assert secret is not None
    return {user: base64.b64decode(value).decode() for user, value in secret["data"].items()}


def test_upgrade_keeps_the_generated_redis_password(kube: Cluster, namespace: str) -> None:
    install(kube, "mc", namespace, {})
    first = redis_passwords(kube, namespace)
    assert set(first) == {"mobius-cache", "mobius-operator", "mobius-exporter"}
    assert all(len(p) == 32 for p in first.values())
    kube.helm("upgrade", "mc", str(CHART), "-n", namespace, "--set", "redis.maxmemory=512mb")
    assert redis_passwords(kube, namespace) == first, "the lookup must find and keep the running passwords"
    config = kube.get("configmap", "mc-mobius-cache-redis", namespace)
    assert config is not None and "maxmemory 512mb" in config["data"]["redis.conf"]
    kube.helm("uninstall", "mc", "-n", namespace)


def test_two_releases_in_two_namespaces(
    kube: Cluster, namespace: str, request: pytest.FixtureRequest
) -> None:
    second = f"{namespace}-b"
    kube.kubectl("create", "namespace", second)
    request.addfinalizer(lambda: kube.kubectl("delete", "namespace", second, "--wait=false", check=False))
    scope = {"operator.scope": "namespace"}  # two operators: each watches its own namespace
    install(kube, "one", namespace, scope)
    install(kube, "two", second, scope)
    for ns, release in ((namespace, "one"), (second, "two")):
        assert kube.get("statefulset", f"{release}-mobius-cache-redis", ns) is not None
        assert kube.get("role", f"{release}-mobius-cache-operator", ns) is not None
    crd = kube.get("crd", CRD)
    assert crd is not None
    # The CRD stays with whoever installed it first (release "one" here, or an earlier test): never "two".
    owner = (crd["metadata"].get("annotations") or {}).get("meta.helm.sh/release-name")
    assert owner != "two", "the second release took the CRD over"
    uninstall_leaves_only_the_crd(kube, "two", second)
    uninstall_leaves_only_the_crd(kube, "one", namespace)


def test_an_architecture_change_or_a_scale_in_is_refused(kube: Cluster, namespace: str) -> None:
    """validateValues reads the running StatefulSet (lookup): what would lose data fails the upgrade, saying why."""
    install(kube, "mc", namespace, {"redis.architecture": "replication", "redis.replicas": 3})
    sts = kube.get("statefulset", "mc-mobius-cache-redis", namespace)
    assert sts is not None and sts["metadata"]["annotations"]["cache.mobius.io/architecture"] == "replication"

    def upgrade(*values: str) -> subprocess.CompletedProcess[str]:
        args = [arg for value in values for arg in ("--set", value)]
        return kube.helm("upgrade", "mc", str(CHART), "-n", namespace, *args, check=False)

    changed = upgrade("redis.architecture=cluster", "redis.cluster.check=false")
    assert (
        changed.returncode != 0 and "this release runs replication; changing it to cluster" in changed.stderr
    )
    shrunk = upgrade("redis.architecture=replication", "redis.replicas=2")
    assert shrunk.returncode != 0 and "would shrink from 4 to 3 Redis pods" in shrunk.stderr
    grown = upgrade("redis.architecture=replication", "redis.replicas=4")
    assert grown.returncode == 0, grown.stderr
    sts = kube.get("statefulset", "mc-mobius-cache-redis", namespace)
    assert sts is not None and sts["spec"]["replicas"] == 5
    kube.helm("uninstall", "mc", "-n", namespace)


def test_upgrade_keeps_the_generated_tls_certificate(kube: Cluster, namespace: str) -> None:
    install(kube, "mc", namespace, {"redis.tls.enabled": True})
    first = kube.get("secret", "mc-mobius-cache-redis-tls", namespace)
    assert first is not None and set(first["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    kube.helm("upgrade", "mc", str(CHART), "-n", namespace, "--set", "redis.tls.enabled=true")
    again = kube.get("secret", "mc-mobius-cache-redis-tls", namespace)
    assert again is not None and again["data"] == first["data"], "a new CA would break every client"
    ca = kube.get("configmap", "mc-mobius-cache-redis-ca", namespace)
    assert ca is not None
    assert ca["data"]["ca.crt"].strip() == base64.b64decode(first["data"]["ca.crt"]).decode().strip()
    kube.helm("uninstall", "mc", "-n", namespace)
