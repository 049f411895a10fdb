"""Redis as rendered: its config comes from typed values, its memory is bounded, its pods are locked down."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart import helm
from tests.chart.admitted import admitted, sidecar_of
from tests.chart.helm import one, pod_spec, render

WORKLOADS = ("StatefulSet", "Deployment", "Pod")


def redis_conf(values: dict[str, Any]) -> dict[str, str]:
    text = one(render(values), "ConfigMap", "mc-mobius-cache-redis")["data"]["redis.conf"]
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return dict(line.split(" ", 1) for line in lines)


def test_maxmemory_and_policy_defaults_reach_redis_conf() -> None:
    conf = redis_conf({})
    assert conf["maxmemory"] == "1gb"
    assert conf["maxmemory-policy"] == "allkeys-lru"
    assert conf["save"] == '""' and conf["appendonly"] == "no"


@pytest.mark.parametrize(
    ("maxmemory", "policy", "limit"),
    [("512mb", "allkeys-lfu", "1Gi"), ("300000000", "volatile-ttl", "512M"), ("2gb", "noeviction", "3Gi")],
)
def test_maxmemory_and_policy_values_reach_redis_conf(maxmemory: str, policy: str, limit: str) -> None:
    values = {
        "redis.maxmemory": maxmemory,
        "redis.maxmemoryPolicy": policy,
        "redis.resources.limits.memory": limit,
    }
    conf = redis_conf(values)
    assert (conf["maxmemory"], conf["maxmemory-policy"]) == (maxmemory, policy)
    cacheconfig = helm.default_cacheconfig(render(values))
    assert (cacheconfig["spec"]["maxMemory"], cacheconfig["spec"]["evictionPolicy"]) == (maxmemory, policy)


def test_extra_config_is_appended() -> None:
    conf = redis_conf({"redis.extraConfig": {"maxmemory-samples": 10, "lazyfree-lazy-eviction": "yes"}})
    assert conf["maxmemory-samples"] == "10" and conf["lazyfree-lazy-eviction"] == "yes"


def test_extra_config_cannot_override_managed_directives() -> None:
    result = helm.template({"redis.extraConfig": {"maxmemory": "5gb"}})
    assert result.returncode != 0
    assert "redis.extraConfig.maxmemory is set by the chart itself" in result.stderr


@pytest.mark.parametrize(
    ("maxmemory", "limit"),
    [("1gb", "1280Mi"), ("1gb", "1.25Gi"), ("800mb", "1000Mi"), ("1g", "1250M"), ("100mb", "2Gi")],
)
def test_headroom_of_20_percent_is_accepted(maxmemory: str, limit: str) -> None:
    result = helm.template({"redis.maxmemory": maxmemory, "redis.resources.limits.memory": limit})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("maxmemory", "limit", "need"),
    [
        ("1gb", "1279Mi", "1280Mi"),
        ("1gb", "1Gi", "1280Mi"),
        ("2gb", "1536Mi", "2560Mi"),
        ("1g", "1249M", "1193Mi"),
    ],
)
def test_too_little_headroom_fails_with_the_fix(maxmemory: str, limit: str, need: str) -> None:
    result = helm.template({"redis.maxmemory": maxmemory, "redis.resources.limits.memory": limit})
    assert result.returncode != 0
    assert "leaves less than 20% headroom" in result.stderr
    assert f"Raise limits.memory to at least {need}" in result.stderr


def test_a_memory_limit_is_required() -> None:
    result = helm.template({"redis.resources.limits": None})
    assert result.returncode != 0
    assert "redis.resources.limits.memory is required" in result.stderr


def test_all_problems_are_reported_at_once() -> None:
    result = helm.template(
        {"redis.maxmemory": "4gb", "redis.extraConfig": {"save": "60 1"}, "cacheConfig.defaultTTL": 999999}
    )
    assert result.returncode != 0
    for message in ("headroom", "redis.extraConfig.save", "defaultTTL (999999) must not exceed"):
        assert message in result.stderr


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env") or []}


def test_every_client_gets_its_own_user_and_password() -> None:
    docs = render({"example.enabled": True, "injector.enabled": False})
    secret = one(docs, "Secret", "mc-mobius-cache-redis")
    assert set(secret["data"]) == {"mobius-cache", "mobius-operator", "mobius-exporter"}
    sts = one(docs, "StatefulSet")
    redis, exporter, key_groups = pod_spec(sts)["containers"]
    assert redis["command"] == ["sh", "/scripts/start-redis.sh"] and "args" not in redis
    passwords = next(v for v in pod_spec(sts)["volumes"] if v["name"] == "passwords")
    assert passwords["secret"]["secretName"] == "mc-mobius-cache-redis"
    # The probes and the exporter log in as the exporter's user; nobody gets another role's password.
    assert _env(redis)["MOBIUS_REDIS_CLI_USER"]["value"] == "mobius-exporter"
    assert _env(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == "mobius-exporter"
    assert _env(exporter)["REDIS_USER"]["value"] == "mobius-exporter"
    assert _env(exporter)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "mobius-exporter"
    assert _env(exporter)["REDIS_EXPORTER_CONFIG_COMMAND"]["value"] == "-"
    assert _env(key_groups)["REDIS_USER"]["value"] == "mobius-exporter"
    assert _env(key_groups)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "mobius-exporter"
    assert _env(key_groups)["REDIS_EXPORTER_CONFIG_COMMAND"]["value"] == "-"
    # The default CacheConfig: clients (injected sidecars) log in as the cache user, the operator as its own.
    spec = helm.default_cacheconfig(docs)["spec"]["redis"]
    assert spec == {
        "url": "redis://mobius-cache@mc-mobius-cache-redis.cache.svc.cluster.local:6379/0",
        "passwordSecretRef": {"name": "mc-mobius-cache-redis", "key": "mobius-cache"},
        "admin": {
            "username": "mobius-operator",
            "passwordSecretRef": {"name": "mc-mobius-cache-redis", "key": "mobius-operator"},
        },
    }
    example = pod_spec(one(docs, "Deployment", "mc-mobius-cache-example"))
    sidecar = next(c for c in example["containers"] if c["name"] == "mobius-sidecar")
    assert _env(sidecar)["MOBIUS_REDIS_URL"]["value"].startswith("redis://mobius-cache@")
    assert _env(sidecar)["MOBIUS_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "mobius-cache"
    test_env = _env(one(docs, "Pod")["spec"]["containers"][0])
    assert test_env["REDIS_URL"]["value"].startswith("redis://mobius-cache@")
    assert test_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "mobius-cache"
    assert test_env["EXPECT_ACL"]["value"] == "true"
    assert "protected-mode yes" in one(docs, "ConfigMap", "mc-mobius-cache-redis")["data"]["redis.conf"]


@pytest.mark.parametrize(
    ("architecture", "users"),
    [
        ("replication", {"mobius-replication", "mobius-sentinel"}),
        ("cluster", {"mobius-replication", "mobius-admin"}),
    ],
)
def test_each_architecture_adds_only_the_users_it_needs(architecture: str, users: set[str]) -> None:
    docs = render({"redis.architecture": architecture})
    secret = one(docs, "Secret", "mc-mobius-cache-redis")
    assert set(secret["data"]) == {"mobius-cache", "mobius-operator", "mobius-exporter", *users}
    rules = one(docs, "ConfigMap", "mc-mobius-cache-redis")["data"]["users.acl"]
    named = {line.split()[1] for line in rules.splitlines() if line.startswith("user ")}
    assert named == {"default", "mobius-cache", "mobius-operator", "mobius-exporter", *users}


def test_generated_passwords_are_random_and_not_in_values() -> None:
    first = helm.objects(helm.template({}).stdout)
    second = helm.objects(helm.template({}).stdout)
    a = one(first, "Secret", "mc-mobius-cache-redis")["data"]
    b = one(second, "Secret", "mc-mobius-cache-redis")["data"]
    assert a.keys() == b.keys() and all(a[k] != b[k] for k in a)
    assert len(set(a.values())) == len(a), "two users share a password"


def test_existing_secret_is_used_and_nothing_generated() -> None:
    docs = render(
        {"redis.auth.existingSecret": "corp-redis", "example.enabled": True, "injector.enabled": False}
    )
    assert not helm.find(docs, "Secret", "mc-mobius-cache-redis")
    volumes = pod_spec(one(docs, "StatefulSet"))["volumes"]
    assert next(v for v in volumes if v["name"] == "passwords")["secret"]["secretName"] == "corp-redis"
    example = pod_spec(one(docs, "Deployment", "mc-mobius-cache-example"))
    sidecar = next(c for c in example["containers"] if c["name"] == "mobius-sidecar")
    ref = _env(sidecar)["MOBIUS_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "corp-redis", "key": "mobius-cache"}


def test_auth_off_renders_no_secret_and_no_password() -> None:
    docs = render({"redis.auth.enabled": False})
    assert not helm.find(docs, "Secret", "mc-mobius-cache-redis")
    redis = pod_spec(one(docs, "StatefulSet"))["containers"][0]
    assert _env(redis)["MOBIUS_REDIS_AUTH"]["value"] == "off" and "REDISCLI_AUTH" not in _env(redis)
    assert "passwords" not in {v["name"] for v in pod_spec(one(docs, "StatefulSet"))["volumes"]}
    spec = helm.default_cacheconfig(docs)["spec"]["redis"]
    assert "passwordSecretRef" not in spec and "admin" not in spec and "@" not in spec["url"]
    assert "protected-mode no" in one(docs, "ConfigMap", "mc-mobius-cache-redis")["data"]["redis.conf"]


def test_persistence_uses_a_claim_and_snapshots() -> None:
    docs = render({"redis.persistence.enabled": True, "redis.persistence.size": "20Gi"})
    sts = one(docs, "StatefulSet")
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "data" not in {v["name"] for v in pod_spec(sts)["volumes"]}
    conf = redis_conf({"redis.persistence.enabled": True, "redis.persistence.size": "20Gi"})
    assert conf["save"] != '""'


def test_exporter_off_removes_container_and_port() -> None:
    docs = render({"exporter.enabled": False})
    assert [c["name"] for c in pod_spec(one(docs, "StatefulSet"))["containers"]] == ["redis"]
    service = one(docs, "Service", "mc-mobius-cache-redis")
    assert [p["name"] for p in service["spec"]["ports"]] == ["redis"]


def test_redis_has_probes_and_resources() -> None:
    redis, exporter, _key_groups = pod_spec(one(render({}), "StatefulSet"))["containers"]
    for probe, mode in (("startupProbe", "live"), ("livenessProbe", "live"), ("readinessProbe", "ready")):
        assert redis[probe]["exec"]["command"] == ["sh", "/scripts/probe.sh", mode]
    assert redis["resources"]["limits"]["memory"] == "1536Mi"
    assert exporter["livenessProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize(
    "values", [{}, {"example.enabled": True}, {"operator.scope": "namespace", "example.enabled": True}]
)
def test_every_pod_is_locked_down(values: dict[str, Any]) -> None:
    workloads = [d for d in render(values) if d["kind"] in WORKLOADS]
    assert len(workloads) >= 3
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, workload["metadata"]["name"]
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in spec["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["runAsNonRoot"] is True, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context["seccompProfile"]["type"] == "RuntimeDefault", where
            assert "limits" in container["resources"], where


def test_pdb_and_network_policy() -> None:
    docs = render({"redis.networkPolicy.clientNamespaceSelector": {"matchLabels": {"team": "search"}}})
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    policy = one(docs, "NetworkPolicy")
    redis_rule, metrics_rule = policy["spec"]["ingress"]
    assert redis_rule["ports"] == [{"port": "redis"}]
    peers = redis_rule["from"]
    client = {"matchLabels": {"mc-mobius-cache-client": "true"}}
    assert {"podSelector": client} in peers
    assert {"namespaceSelector": {"matchLabels": {"team": "search"}}, "podSelector": client} in peers
    operator_labels = one(docs, "Deployment", "mc-mobius-cache-operator")["spec"]["selector"]["matchLabels"]
    assert {"podSelector": {"matchLabels": operator_labels}} in peers
    assert len(peers) == 3, "only labelled clients and the operator reach Redis"
    assert metrics_rule == {"ports": [{"port": "metrics"}, {"port": "key-groups"}]}


def test_helm_test_pod_is_a_labelled_client() -> None:
    pod = one(render({}), "Pod")
    assert pod["metadata"]["labels"]["mc-mobius-cache-client"] == "true"
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["EXPECT_MAXMEMORY"] == str(1024**3)
    assert env["CACHECONFIG"] == "mc-mobius-cache"


def test_external_redis_points_everything_at_it() -> None:
    url = "redis+cluster://redis-cluster.data.svc:6379"
    docs = render(
        {
            "redis.enabled": False,
            "externalRedis.url": url,
            "externalRedis.existingSecret": "managed",
            "example.enabled": True,
        }
    )
    assert not helm.find(docs, "StatefulSet") and not helm.find(docs, "NetworkPolicy")
    assert helm.default_cacheconfig(docs)["spec"]["redis"] == {
        "url": url,
        "passwordSecretRef": {"name": "managed", "key": "redis-password"},
    }
    sidecar = sidecar_of(admitted(docs, "mc-mobius-cache-example"))
    assert _env(sidecar)["MOBIUS_REDIS_URL"]["value"] == url
    test_env = {e["name"]: e for e in one(docs, "Pod")["spec"]["containers"][0]["env"]}
    assert test_env["REDIS_URL"]["value"] == url and "EXPECT_MAXMEMORY" not in test_env


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis.enabled": False}, "set externalRedis.url"),
        ({"externalRedis.url": "redis://elsewhere:6379"}, "choose one"),
    ],
)
def test_redis_choice_must_be_unambiguous(values: dict[str, Any], message: str) -> None:
    result = helm.template(values)
    assert result.returncode != 0 and message in result.stderr
