"""redis.architecture as rendered: pods, Services, the URL every client gets, PDB and anti-affinity, the
cluster keeper, TLS wiring and the values that are refused. (The same files run as real processes in
test_acl, test_tls, test_replication and test_cluster_keeper.)"""

from __future__ import annotations

import base64
import subprocess
from typing import Any

import pytest

from tests.chart import helm
from tests.chart.helm import find, one, pod_spec, render

SVC = "mc-mobius-cache-redis.cache.svc.cluster.local"
POD = "mc-mobius-cache-redis-{}.mc-mobius-cache-redis-headless.cache.svc.cluster.local"
CA = "/etc/mobius/redis-ca/ca.crt"


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def containers(docs: list[dict[str, Any]], name: str = "mc-mobius-cache-redis") -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_spec(one(docs, "StatefulSet", name))["containers"]}


def urls(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The Redis URL of each client: a sidecar (the example app's, added by hand: render with the injector
    off), what the injector gives the sidecars it adds, the helm test, and the default CacheConfig (clients'
    URL; the operator logs in as spec.redis.admin)."""
    example = pod_spec(one(docs, "Deployment", "mc-mobius-cache-example"))
    sidecar = next(c for c in example["containers"] if c["name"] == "mobius-sidecar")
    operator = pod_spec(one(docs, "Deployment", "mc-mobius-cache-operator"))["containers"][0]
    cacheconfig = helm.default_cacheconfig(docs)["spec"]["redis"]
    assert cacheconfig["admin"]["username"] == "mobius-operator"
    assert cacheconfig["admin"]["passwordSecretRef"]["key"] == "mobius-operator"
    return {
        "sidecar": env(sidecar)["MOBIUS_REDIS_URL"],
        "injected": env(operator).get("MOBIUS_INJECTOR_REDIS_URL", ""),
        "helm test": env(one(docs, "Pod")["spec"]["containers"][0])["REDIS_URL"],
        "cacheconfig": cacheconfig["url"],
    }


def test_standalone_is_one_pod() -> None:
    docs = render({"example.enabled": True, "injector.enabled": False})
    sts = one(docs, "StatefulSet")
    assert sts["spec"]["replicas"] == 1 and sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert "affinity" not in pod_spec(sts)
    assert set(containers(docs)) == {"redis", "exporter", "key-groups"}
    assert one(docs, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1,
        "selector": sts["spec"]["selector"],
    }
    assert [p["name"] for p in one(docs, "Service", "mc-mobius-cache-redis")["spec"]["ports"]] == [
        "redis",
        "metrics",
        "key-groups",
    ]
    assert urls(docs) == {
        "sidecar": f"redis://mobius-cache@{SVC}:6379/0",
        "injected": "",
        "helm test": f"redis://mobius-cache@{SVC}:6379/0",
        "cacheconfig": f"redis://mobius-cache@{SVC}:6379/0",
    }
    assert not find(docs, "Job") and len(find(docs, "Deployment")) == 2  # the operator and the example
    operator = pod_spec(one(render({}), "Deployment", "mc-mobius-cache-operator"))["containers"][0]
    assert env(operator)["MOBIUS_INJECTOR_REDIS_URL"] == f"redis://mobius-cache@{SVC}:6379/0"
    assert env(operator)["MOBIUS_INJECTOR_REDIS_SECRET_KEY"] == "mobius-cache"


def test_replication_runs_a_sentinel_in_every_pod() -> None:
    docs = render({"redis.architecture": "replication", "example.enabled": True, "injector.enabled": False})
    sts = one(docs, "StatefulSet")
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert set(containers(docs)) == {"redis", "sentinel", "exporter", "key-groups"}
    redis_env, sentinel_env = env(containers(docs)["redis"]), env(containers(docs)["sentinel"])
    for e in (redis_env, sentinel_env):
        assert e["MOBIUS_REDIS_BOOTSTRAP_MASTER"] == f"{POD.format(0)} 6379"
        assert e["MOBIUS_SENTINEL_ADDRESSES"] == " ".join(f"{POD.format(i)}:26379" for i in range(3))
        assert (
            e["MOBIUS_REDIS_ANNOUNCE_HOST"]
            == "$(POD_NAME).mc-mobius-cache-redis-headless.cache.svc.cluster.local"
        )
    sentinel_svc = one(docs, "Service", "mc-mobius-cache-redis-sentinel")
    assert sentinel_svc["spec"]["ports"] == [{"name": "sentinel", "port": 26379, "targetPort": "sentinel"}]
    # No Redis port on a Service over all pods: writes must reach the master, found through the Sentinels.
    assert [p["name"] for p in one(docs, "Service", "mc-mobius-cache-redis")["spec"]["ports"]] == [
        "metrics",
        "key-groups",
    ]
    sentinel_url = "mc-mobius-cache-redis-sentinel.cache.svc.cluster.local:26379/mobius-cache/0"
    assert urls(docs) == {
        "sidecar": f"redis+sentinel://mobius-cache@{sentinel_url}",
        "injected": "",
        "helm test": f"redis+sentinel://mobius-cache@{sentinel_url}",
        "cacheconfig": f"redis+sentinel://mobius-cache@{sentinel_url}",
    }


@pytest.mark.parametrize(("replicas", "quorum"), [(2, 2), (3, 3), (4, 3)])
def test_replication_keeps_a_quorum_through_evictions(replicas: int, quorum: int) -> None:
    docs = render({"redis.architecture": "replication", "redis.replicas": replicas})
    assert one(docs, "StatefulSet")["spec"]["replicas"] == replicas + 1
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == quorum
    conf = one(docs, "ConfigMap", "mc-mobius-cache-redis")["data"]["sentinel.conf"]
    assert f"sentinel monitor mobius-cache @MASTER_HOST@ @MASTER_PORT@ {quorum}" in conf


@pytest.mark.parametrize("architecture", ["replication", "cluster"])
def test_pods_are_spread_over_nodes(architecture: str) -> None:
    labels = one(render({}), "StatefulSet")["spec"]["selector"]["matchLabels"]
    term = {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": labels}}
    soft = pod_spec(one(render({"redis.architecture": architecture}), "StatefulSet"))["affinity"]
    assert soft == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]
        }
    }
    hard = pod_spec(
        one(render({"redis.architecture": architecture, "redis.podAntiAffinity": "hard"}), "StatefulSet")
    )
    assert hard["affinity"] == {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    none = pod_spec(
        one(render({"redis.architecture": architecture, "redis.podAntiAffinity": "none"}), "StatefulSet")
    )
    assert "affinity" not in none
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    mine = pod_spec(one(render({"redis.architecture": architecture, "redis.affinity": own}), "StatefulSet"))
    assert mine["affinity"] == own


def test_cluster_has_shards_times_copies_and_a_keeper() -> None:
    docs = render({"redis.architecture": "cluster", "example.enabled": True, "injector.enabled": False})
    sts = one(docs, "StatefulSet")
    assert sts["spec"]["replicas"] == 6 and sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["metadata"]["annotations"]["cache.mobius.io/architecture"] == "cluster"
    assert {"name": "cluster-bus", "containerPort": 16379} in containers(docs)["redis"]["ports"]
    conf = one(docs, "ConfigMap", "mc-mobius-cache-redis")["data"]["redis.conf"].splitlines()
    assert {
        "cluster-enabled yes",
        "cluster-preferred-endpoint-type hostname",
        "cluster-node-timeout 5000",
    } <= set(conf)
    keeper = one(docs, "Deployment", "mc-mobius-cache-redis-keeper")
    assert keeper["spec"]["replicas"] == 1 and keeper["spec"]["strategy"] == {"type": "Recreate"}
    keeper_env = env(pod_spec(keeper)["containers"][0])
    assert keeper_env["MOBIUS_CLUSTER_NODES"] == " ".join(f"{POD.format(i)}:6379" for i in range(6))
    assert (keeper_env["MOBIUS_CLUSTER_SHARDS"], keeper_env["MOBIUS_CLUSTER_REPLICAS_PER_SHARD"]) == (
        "3",
        "1",
    )
    assert keeper_env["MOBIUS_REDIS_USER"] == "mobius-admin"
    assert keeper_env["MOBIUS_REDIS_PASSWORD"]["secretKeyRef"]["key"] == "mobius-admin"
    check = one(docs, "Job")
    assert check["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert pod_spec(check)["containers"][0]["command"][2:4] == ["wait", "--timeout"]
    script = one(docs, "ConfigMap", "mc-mobius-cache-redis-keeper")["data"]["redis_cluster.py"]
    assert script == (helm.CHART / "files" / "redis_cluster.py").read_text()
    assert urls(docs) == {
        "sidecar": f"redis+cluster://mobius-cache@{SVC}:6379/0",
        "injected": "",
        "helm test": f"redis+cluster://mobius-cache@{SVC}:6379/0",
        "cacheconfig": f"redis+cluster://mobius-cache@{SVC}:6379/0",
    }


def test_the_check_job_can_be_left_out() -> None:
    assert not find(render({"redis.architecture": "cluster", "redis.cluster.check": False}), "Job")


def test_cluster_size_follows_the_values() -> None:
    docs = render(
        {"redis.architecture": "cluster", "redis.cluster.shards": 4, "redis.cluster.replicasPerShard": 2}
    )
    assert one(docs, "StatefulSet")["spec"]["replicas"] == 12
    keeper_env = env(pod_spec(one(docs, "Deployment", "mc-mobius-cache-redis-keeper"))["containers"][0])
    assert len(keeper_env["MOBIUS_CLUSTER_NODES"].split()) == 12


@pytest.mark.parametrize("architecture", ["replication", "cluster"])
def test_replicas_have_room_for_a_full_sync(architecture: str) -> None:
    volumes = pod_spec(one(render({"redis.architecture": architecture}), "StatefulSet"))["volumes"]
    data = next(v for v in volumes if v["name"] == "data")
    assert data["emptyDir"]["sizeLimit"] == 1024**3 * 5 // 4


@pytest.mark.parametrize("architecture", ["replication", "cluster"])
def test_the_pods_reach_each_other_and_clients_reach_them(architecture: str) -> None:
    docs = render({"redis.architecture": architecture})
    clients_rule, peers_rule, _metrics = one(docs, "NetworkPolicy")["spec"]["ingress"]
    own = one(docs, "StatefulSet")["spec"]["selector"]["matchLabels"]
    assert peers_rule["from"] == [{"podSelector": {"matchLabels": own}}]
    peer_ports = {p["port"] for p in peers_rule["ports"]}
    client_ports = {p["port"] for p in clients_rule["ports"]}
    if architecture == "replication":
        assert peer_ports == client_ports == {"redis", "sentinel"}
    else:
        assert peer_ports == {"redis", "cluster-bus"} and client_ports == {"redis"}
        keeper = one(docs, "Deployment", "mc-mobius-cache-redis-keeper")["spec"]["selector"]["matchLabels"]
        assert {"podSelector": {"matchLabels": keeper}} in clients_rule["from"]
        check = one(docs, "Job")["spec"]["template"]["metadata"]["labels"]
        assert check["mc-mobius-cache-client"] == "true"


def _names_in(cert_pem: bytes) -> str:
    proc = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName"],
        input=cert_pem,
        capture_output=True,
        timeout=30,
    )
    return proc.stdout.decode()


def test_tls_everywhere_with_a_generated_certificate() -> None:
    docs = render(
        {
            "redis.tls.enabled": True,
            "redis.architecture": "replication",
            "example.enabled": True,
            "injector.enabled": False,
        }
    )
    secret = one(docs, "Secret", "mc-mobius-cache-redis-tls")
    assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    names = _names_in(base64.b64decode(secret["data"]["tls.crt"]))
    for name in (
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "DNS:*.mc-mobius-cache-redis-headless.cache.svc.cluster.local",
        "DNS:mc-mobius-cache-redis-sentinel.cache.svc.cluster.local",
        "DNS:mc-mobius-cache-redis.cache.svc",
    ):
        assert name in names
    ca_map = one(docs, "ConfigMap", "mc-mobius-cache-redis-ca")
    assert ca_map["data"]["ca.crt"].encode().strip() == base64.b64decode(secret["data"]["ca.crt"]).strip()
    found = urls(docs)
    assert found["sidecar"].startswith("rediss+sentinel://mobius-cache@") and found["sidecar"].endswith(
        f"/0?ssl_ca_certs={CA}"
    )
    assert (
        found["cacheconfig"].startswith("rediss+sentinel://") and "?" not in found["cacheconfig"]
    )  # the CRD takes no query
    operator = pod_spec(one(docs, "Deployment", "mc-mobius-cache-operator"))
    assert env(operator["containers"][0])["SSL_CERT_FILE"] == CA
    for spec in (
        operator,
        pod_spec(one(docs, "Deployment", "mc-mobius-cache-example")),
        one(docs, "Pod")["spec"],
    ):
        volume = next(v for v in spec["volumes"] if v["name"] == "mobius-redis-ca")
        assert volume == {"name": "mobius-redis-ca", "configMap": {"name": "mc-mobius-cache-redis-ca"}}
    exporter = env(containers(docs)["exporter"])
    assert exporter["REDIS_ADDR"] == "rediss://localhost:6379"
    assert exporter["REDIS_EXPORTER_TLS_CA_CERT_FILE"] == "/etc/redis-tls/ca.crt"
    for name in ("redis", "sentinel"):
        assert env(containers(docs)[name])["MOBIUS_REDIS_TLS_CA"] == "/etc/redis-tls/ca.crt"
    conf = one(docs, "ConfigMap", "mc-mobius-cache-redis")["data"]
    assert (
        "port 0" in conf["redis.conf"].splitlines() and "tls-port 26379" in conf["sentinel.conf"].splitlines()
    )


def test_tls_with_an_existing_certificate_shows_clients_only_its_ca() -> None:
    docs = render(
        {
            "redis.tls.enabled": True,
            "redis.tls.existingSecret": "corp-tls",
            "example.enabled": True,
            "injector.enabled": False,
        }
    )
    assert not find(docs, "ConfigMap", "mc-mobius-cache-redis-ca")
    assert not find(docs, "Secret", "mc-mobius-cache-redis-tls")
    volumes = pod_spec(one(docs, "StatefulSet"))["volumes"]
    assert next(v for v in volumes if v["name"] == "tls")["secret"]["secretName"] == "corp-tls"
    client = next(
        v
        for v in pod_spec(one(docs, "Deployment", "mc-mobius-cache-example"))["volumes"]
        if v["name"] == "mobius-redis-ca"
    )
    assert client["secret"] == {"secretName": "corp-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}


def test_the_tls_certificate_is_kept_across_renders_only_through_lookup() -> None:
    """helm template cannot look the Secret up: each render makes a new CA (an install or upgrade reuses it)."""
    first = one(
        helm.objects(helm.template({"redis.tls.enabled": True}).stdout), "Secret", "mc-mobius-cache-redis-tls"
    )
    second = one(
        helm.objects(helm.template({"redis.tls.enabled": True}).stdout), "Secret", "mc-mobius-cache-redis-tls"
    )
    assert first["data"]["ca.crt"] != second["data"]["ca.crt"]
    template = (helm.CHART / "templates" / "redis" / "tls.yaml").read_text()
    assert 'lookup "v1" "Secret"' in template


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"redis.architecture": "cluster", "redis.service.port": 60000},
            "redis.service.port 60000 is too high for a Redis Cluster",
        ),
        (
            {"redis.acl.cacheKeyPrefixes": ["app:"]},
            'cacheConfig.keyPrefix "mobius:" is outside redis.acl.cacheKeyPrefixes',
        ),
        ({"redis.extraConfig": {"tls-port": 6380}}, "redis.extraConfig.tls-port is set by the chart itself"),
        (
            {"redis.extraConfig": {"cluster-enabled": "yes"}},
            "redis.extraConfig.cluster-enabled is set by the chart",
        ),
        ({"redis.extraConfig": {"aclfile": "/x"}}, "redis.extraConfig.aclfile is set by the chart itself"),
    ],
)
def test_values_that_cannot_work_are_refused(values: dict[str, Any], message: str) -> None:
    result = helm.template(values)
    assert result.returncode != 0 and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"redis.architecture": "sentinel"}, "/redis/architecture"),
        ({"redis.replicas": 1}, "/redis/replicas"),
        ({"redis.cluster.shards": 2}, "/redis/cluster/shards"),
        ({"redis.podAntiAffinity": "strict"}, "/redis/podAntiAffinity"),
        ({"redis.acl.cacheKeyPrefixes": ["a*"]}, "/redis/acl/cacheKeyPrefixes/0"),
        ({"redis.auth.password": "x"}, "additional properties 'password' not allowed"),
    ],
)
def test_the_schema_refuses_bad_architecture_values(values: dict[str, Any], where: str) -> None:
    result = helm.template(values)
    assert result.returncode != 0 and where in result.stderr, result.stderr
