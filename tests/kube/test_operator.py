"""The operator against the real API server, as the chart's ServiceAccount under exactly the chart's RBAC.

The chart is installed for real (helm install); the operator then runs on this machine (three ways: the
`mobius-operator` console script, `kopf run -m mobius_operator.run`, and the operator image under Docker with a
read-only root filesystem) with a kubeconfig holding a TokenRequest token of the chart's ServiceAccount and the
environment of the chart's Deployment, against real redis-server processes on loopback. The in-cluster
Deployment is scaled to zero so that only the operator under test acts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.cluster import CHART, Cluster, wait_for
from tests.kube.conftest import Images
from tests.servers import RedisServer, free_port

RELEASE = "mc"
OPERATOR = f"{RELEASE}-mobius-cache-operator"
SA = f"system:serviceaccount:{{ns}}:{OPERATOR}"
INTERVAL = "2"  # re-assert every 2 s, so drift is seen quickly (the chart's default is 30 s)


@dataclass
class Operator:
    """One running operator process (or container) and where its log goes."""

    proc: subprocess.Popen[bytes]
    log: Path
    health: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def chart_env(kube: Cluster, namespace: str) -> dict[str, str]:
    """The operator container's environment as the installed chart renders it (fieldRefs resolved)."""
    manifest = kube.helm("get", "manifest", RELEASE, "-n", namespace).stdout
    for doc in yaml.safe_load_all(manifest):
        if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == OPERATOR:
            env = {}
            for item in doc["spec"]["template"]["spec"]["containers"][0].get("env", []):
                if "value" in item:
                    env[item["name"]] = item["value"]
                elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
                    env[item["name"]] = namespace
            return env
    raise AssertionError("the chart rendered no operator Deployment")


def start_operator(
    how: str, kube: Cluster, namespace: str, tmp_path: Path, images: Images | None
) -> Operator:
    kubeconfig = kube.kubeconfig_for(OPERATOR, namespace, tmp_path / "kubeconfig")
    kubeconfig.chmod(0o644)  # the image runs as uid 10001
    env = {**chart_env(kube, namespace), "MOBIUS_OPERATOR_RECONCILE_INTERVAL": INTERVAL}
    # The injector's webhook server needs the pod's certificate mount and a Service in front of it; it is
    # tested in-cluster (tests/e2e). Here the operator runs on this machine: reconciliation only.
    env["MOBIUS_INJECTOR_ENABLED"] = "false"
    port = free_port()
    health = f"http://127.0.0.1:{port}/healthz"
    common = ["--all-namespaces", "--liveness", health]
    if how == "mobius-operator":
        argv = [str(Path(sys.executable).with_name("mobius-operator")), *common, "--log-format", "plain"]
    elif how == "kopf-run":
        argv = [
            str(Path(sys.executable).with_name("kopf")),
            "run",
            "-m",
            "mobius_operator.run",
            "--standalone",
        ]
        argv += common
    else:
        assert images is not None
        argv = ["docker", "run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp"]
        argv += [
            "--name",
            f"op-{namespace}",
            "-v",
            f"{kubeconfig}:/kube/config:ro",
            "-e",
            "KUBECONFIG=/kube/config",
        ]
        argv += ["-v", f"{kube.pki}/ca.crt:{kube.pki}/ca.crt:ro"]
        for name, value in env.items():
            argv += ["-e", f"{name}={value}"]
        argv += [images.operator, *common, "--log-format", "plain"]
    log = tmp_path / "operator.log"
    full_env = {**os.environ, **env, "KUBECONFIG": str(kubeconfig)}
    if images is not None and images.docker_host:
        full_env["DOCKER_HOST"] = images.docker_host
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    op = Operator(proc, log, health)
    try:
        wait_for(f"the operator ({how}) to be live", lambda: _live(op), timeout=60)
    except AssertionError:
        op.stop()
        raise AssertionError(f"the operator did not start; its log:\n{op.text()[-3000:]}") from None
    return op


def _live(op: Operator) -> bool:
    if op.proc.poll() is not None:
        raise AssertionError(f"the operator exited with {op.proc.returncode}:\n{op.text()[-3000:]}")
    try:
        import urllib.request

        with urllib.request.urlopen(op.health, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture
def release(kube: Cluster, namespace: str) -> Iterator[str]:
    """The chart installed with its defaults; its in-cluster operator scaled to zero (the test runs its own)."""
    kube.helm("install", RELEASE, str(CHART), "-n", namespace)
    kube.kubectl("scale", f"deployment/{OPERATOR}", "--replicas=0", "-n", namespace)
    yield namespace
    kube.helm("uninstall", RELEASE, "-n", namespace, check=False)


PASSWORD = "kube-test-s3cret"


def cacheconfig(name: str, namespace: str, server: RedisServer, **spec: Any) -> dict[str, Any]:
    redis_spec: dict[str, Any] = {"url": f"redis://127.0.0.1:{server.port}/0"}
    if "--requirepass" in server.extra_args:  # the password from a real Secret, read under the chart's RBAC
        redis_spec["passwordSecretRef"] = {"name": "redis-a", "key": "password"}
    return {
        "apiVersion": "cache.mobius.io/v1alpha1",
        "kind": "CacheConfig",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"redis": redis_spec, **spec},
    }


def ready(kube: Cluster, namespace: str, name: str, generation: int = 1) -> dict[str, Any] | None:
    obj = kube.get("cacheconfig", name, namespace)
    status = (obj or {}).get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    if status.get("observedGeneration") == generation and conditions.get("Ready", {}).get("status") == "True":
        return obj
    return None


def reason(kube: Cluster, namespace: str, name: str) -> str | None:
    obj = kube.get("cacheconfig", name, namespace) or {}
    conditions = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
    return conditions.get("Ready", {}).get("reason")


def config(server: RedisServer) -> tuple[int, str]:
    password = PASSWORD if "--requirepass" in server.extra_args else None
    with server.client(decode_responses=True, password=password) as c:
        got = c.config_get("maxmemory*")
    return int(got["maxmemory"]), got["maxmemory-policy"]


@pytest.mark.parametrize("how", ["mobius-operator", "kopf-run", "image"])
def test_the_operator_reconciles_under_the_charts_rbac(
    how: str, kube: Cluster, release: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ns = release
    images = request.getfixturevalue("images") if how == "image" else None
    a = RedisServer(maxmemory="0", policy="noeviction", extra_args=["--requirepass", PASSWORD]).start()
    b = RedisServer().start()
    kube.kubectl("create", "secret", "generic", "redis-a", f"--from-literal=password={PASSWORD}", "-n", ns)
    op = start_operator(how, kube, ns, tmp_path, images)
    try:
        # The release's default CacheConfig: created by the operator, owned by the (chart's) Deployment.
        deployment = kube.get("deployment", OPERATOR, ns)
        assert deployment is not None
        default = wait_for(
            "the default CacheConfig", lambda: kube.get("cacheconfig", f"{RELEASE}-mobius-cache", ns)
        )
        (owner,) = default["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Deployment",
            OPERATOR,
            deployment["metadata"]["uid"],
        )

        # Create: Redis configured and verified, Ready, the policy ConfigMap owned by the CacheConfig, an Event.
        kube.apply(cacheconfig("c1", ns, a, maxMemory="24mb", evictionPolicy="allkeys-lfu"))
        obj = wait_for("c1 Ready", lambda: ready(kube, ns, "c1"), timeout=60)
        assert config(a) == (24 * 1024 * 1024, "allkeys-lfu")
        assert obj["status"]["applied"]["maxMemoryBytes"] == 24 * 1024 * 1024
        assert not obj["metadata"].get("finalizers"), "a finalizer would make deletion wait for the operator"
        cm = kube.get("configmap", "c1-policy", ns)
        assert cm is not None
        (owner,) = cm["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("CacheConfig", obj["metadata"]["uid"])
        assert json.loads(cm["data"]["policy.json"])
        described = kube.kubectl("describe", "cacheconfig", "c1", "-n", ns).stdout
        assert "Applied" in described.split("Events:")[1]

        # Update: a new generation is applied and observed.
        kube.kubectl(
            "patch", "cacheconfig", "c1", "-n", ns, "--type=merge", "-p", '{"spec":{"maxMemory":"32mb"}}'
        )
        wait_for("c1 generation 2 Ready", lambda: ready(kube, ns, "c1", generation=2), timeout=60)
        assert config(a) == (32 * 1024 * 1024, "allkeys-lfu")

        # Drift: someone changes Redis behind the operator's back; the loop sets it back and says so.
        with a.client(password=PASSWORD) as c:
            c.config_set("maxmemory", "1mb")
        wait_for("drift corrected", lambda: config(a) == (32 * 1024 * 1024, "allkeys-lfu"), timeout=60)
        wait_for(
            "a DriftCorrected Event",
            lambda: [e for e in kube.events(ns, "c1") if e["reason"] == "DriftCorrected"],
            timeout=20,
        )

        # Invalid: the CRD accepts 2gb, the operator refuses it (above the chart's Redis memory limit).
        kube.apply(cacheconfig("too-big", ns, b, maxMemory="2gb"))
        wait_for("InvalidSpec", lambda: reason(kube, ns, "too-big") == "InvalidSpec", timeout=60)
        assert config(b)[0] != 2 * 1024**3

        # Conflict: a younger CacheConfig for the same Redis is refused while the older one exists.
        time.sleep(1.1)  # creation timestamps have one-second resolution: make c2 strictly younger
        kube.apply(cacheconfig("c2", ns, a, maxMemory="8mb"))
        wait_for("Conflict", lambda: reason(kube, ns, "c2") == "Conflict", timeout=60)
        assert config(a)[0] == 32 * 1024 * 1024

        # Delete: the ConfigMap goes with its owner (garbage collection), and c2 takes Redis over.
        kube.kubectl("delete", "cacheconfig", "c1", "-n", ns, "--timeout=30s")
        wait_for(
            "c1-policy garbage-collected", lambda: kube.get("configmap", "c1-policy", ns) is None, timeout=30
        )
        wait_for("c2 Ready after c1 is gone", lambda: ready(kube, ns, "c2"), timeout=60)
        assert config(a)[0] == 8 * 1024 * 1024
    finally:
        op.stop()
        a.close()
        b.close()
    log = op.text()
    assert " 403" not in log and "Forbidden" not in log and "forbidden" not in log, log[-3000:]

    # With the operator gone, deleting a CacheConfig does not hang (no finalizer).
    kube.kubectl("delete", "cacheconfig", "c2", "-n", ns, "--timeout=15s")
    # `helm uninstall` takes the default CacheConfig with it (garbage-collected with its owner, the Deployment).
    kube.helm("uninstall", RELEASE, "-n", ns)
    wait_for(
        "the default CacheConfig to go with the release",
        lambda: kube.get("cacheconfig", f"{RELEASE}-mobius-cache", ns) is None,
        timeout=30,
    )


CAN = [
    ("get", "cacheconfigs", "other"),
    ("watch", "cacheconfigs", "other"),
    ("patch", "cacheconfigs/status", "other"),
    ("create", "configmaps", "other"),
    ("patch", "configmaps", "other"),
    ("get", "secrets", "other"),
    ("create", "events", "other"),
    ("create", "cacheconfigs", "own"),
    ("get", f"deployments/{OPERATOR}", "own"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", ""),
]
CANNOT = [
    ("list", "secrets", "own"),
    ("watch", "secrets", "own"),
    ("create", "secrets", "own"),
    ("delete", "secrets", "own"),
    ("delete", "configmaps", "own"),
    ("delete", "cacheconfigs", "own"),
    ("create", "cacheconfigs", "other"),
    ("get", "pods", "own"),
    ("create", "deployments", "own"),
    ("get", "deployments/somebody-else", "own"),
    ("list", "namespaces", ""),
    ("get", "nodes", ""),
    ("create", "clusterroles", ""),
]


def can_i(kube: Cluster, sa: str, verb: str, resource: str, namespace: str) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={sa}"]
    args += ["-n", namespace] if namespace else []
    proc = kube.kubectl(*args, check=False)
    return proc.stdout.strip() == "yes"


def test_the_charts_rbac_grants_what_the_operator_uses_and_nothing_else(
    kube: Cluster, release: str, namespace: str
) -> None:
    other = "default"
    sa = SA.format(ns=release)
    where = {"own": release, "other": other, "": ""}
    granted = [c for c in CAN if not can_i(kube, sa, c[0], c[1], where[c[2]])]
    refused = [c for c in CANNOT if can_i(kube, sa, c[0], c[1], where[c[2]])]
    assert granted == [] and refused == [], f"missing: {granted}; too much: {refused}"


def test_namespace_scope_keeps_the_operator_out_of_other_namespaces(kube: Cluster, namespace: str) -> None:
    kube.helm("install", RELEASE, str(CHART), "-n", namespace, "--set", "operator.scope=namespace")
    try:
        sa = SA.format(ns=namespace)
        assert can_i(kube, sa, "get", "secrets", namespace)
        assert can_i(kube, sa, "watch", "cacheconfigs", namespace)
        for verb, resource in [("get", "secrets"), ("get", "cacheconfigs"), ("create", "configmaps")]:
            assert not can_i(kube, sa, verb, resource, "default"), f"{verb} {resource} in another namespace"
    finally:
        kube.helm("uninstall", RELEASE, "-n", namespace, check=False)
