"""The operator's objects, the CRD (one source) and the default CacheConfig (valid against that CRD)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart import helm
from tests.chart.admitted import admitted, sidecar_of
from tests.chart.helm import find, one, pod_spec, render

CRD_SOURCE = helm.ROOT / "operator" / "mobius_operator" / "crds" / "cacheconfig.yaml"

# The minimum the operator needs (the RBAC table in docs/operator.md) and kopf itself (CRD discovery).
# Anything more is a finding, anything less a broken operator.
OPERATOR_RULES = {
    ("cache.mobius.io", "cacheconfigs"): {"get", "list", "watch", "patch"},
    ("cache.mobius.io", "cacheconfigs/status"): {"patch"},
    ("", "configmaps"): {"get", "create", "patch"},
    ("", "secrets"): {"get"},
    ("", "events"): {"create"},
}
DISCOVERY_RULES = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}


def rules_of(obj: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in obj["rules"]:
        assert not rule.get("resourceNames") and "*" not in rule["verbs"] and "*" not in rule["resources"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_cluster_scope_rbac_is_the_minimum() -> None:
    docs = render({})
    assert not find(docs, "Role", "mc-mobius-cache-operator")
    role = one(docs, "ClusterRole")
    assert rules_of(role) == OPERATOR_RULES | DISCOVERY_RULES
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "mc-mobius-cache-operator", "namespace": "cache"}
    ]
    args = pod_spec(one(docs, "Deployment", "mc-mobius-cache-operator"))["containers"][0]["args"]
    assert args == ["--all-namespaces"]


def test_namespace_scope_grants_only_the_release_namespace() -> None:
    docs = render({"operator.scope": "namespace"})
    assert rules_of(one(docs, "ClusterRole")) == DISCOVERY_RULES
    role = one(docs, "Role", "mc-mobius-cache-operator")
    assert role["metadata"]["namespace"] == "cache"
    assert rules_of(role) == OPERATOR_RULES
    assert (
        one(docs, "RoleBinding", "mc-mobius-cache-operator")["roleRef"]["name"] == "mc-mobius-cache-operator"
    )
    args = pod_spec(one(docs, "Deployment", "mc-mobius-cache-operator"))["containers"][0]["args"]
    assert args == ["--namespace=cache"]


def test_operator_deployment_is_single_and_recreated() -> None:
    deployment = one(render({}), "Deployment", "mc-mobius-cache-operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = pod_spec(deployment)
    assert spec["serviceAccountName"] == "mc-mobius-cache-operator"
    container = spec["containers"][0]
    assert container["command"] == ["mobius-operator"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [
        {"name": "health", "containerPort": 8080},
        {"name": "webhook", "containerPort": 9443},  # the sidecar injector (tests/chart/test_injector.py)
    ]
    limit = {"name": "MOBIUS_OPERATOR_REDIS_MEMORY_LIMIT", "value": "1536Mi"}
    assert limit in container["env"], "the operator refuses a maxMemory above the Redis limit"
    others = {e["name"] for e in container["env"]}
    assert any(name.startswith("MOBIUS_INJECTOR_") for name in others)


def test_crd_equals_the_operator_file() -> None:
    crd = one(render({}), "CustomResourceDefinition")
    source = yaml.safe_load(CRD_SOURCE.read_text())
    annotations = crd["metadata"].pop("annotations")
    labels = crd["metadata"].pop("labels")
    source_labels = source["metadata"].pop("labels", {})
    assert crd == source
    assert annotations == {"helm.sh/resource-policy": "keep"}, "the CRD must survive helm uninstall"
    assert source_labels.items() <= labels.items()


def test_crd_can_be_left_out() -> None:
    assert not find(render({"crds.install": False}), "CustomResourceDefinition")


def _schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_SOURCE.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def pruned_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would silently drop (not in a structural schema without additionalProperties)."""
    if not isinstance(obj, dict) or schema.get("type") != "object":
        return []
    if "properties" not in schema:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return [f for k, v in obj.items() for f in pruned_fields(v, extra, f"{path}.{k}")]
        return []
    found: list[str] = []
    for key, value in obj.items():
        if key not in schema["properties"]:
            found.append(f"{path}.{key}")
        else:
            found += pruned_fields(value, schema["properties"][key], f"{path}.{key}")
    return found


CACHECONFIG_VALUES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "auth-off": {"redis.auth.enabled": False},
    "tuned": {
        "cacheConfig.maxMemory": "900mb",
        "cacheConfig.evictionPolicy": "allkeys-lfu",
        "cacheConfig.defaultTTL": 600,
        "cacheConfig.maxTTL": 7200,
        "cacheConfig.keyPrefix": "search:",
        "cacheConfig.strategies": {"user": {"ttl": 900, "sliding": True, "evictable": False}},
    },
    "external": {"redis.enabled": False, "externalRedis.url": "rediss://cache.example.com:6380/0"},
    "cluster-tls": {"redis.architecture": "cluster", "redis.tls.enabled": True},
    "replication": {"redis.architecture": "replication"},
}


@pytest.mark.parametrize(
    "name",
    [
        *sorted(CACHECONFIG_VALUES),
        "external-cluster",
    ],
)
def test_default_cacheconfig_validates_against_the_crd(name: str) -> None:
    cluster: dict[str, Any] = {
        "redis.enabled": False,
        "externalRedis.url": "redis+cluster://redis-cluster.data:6379",
    }
    values = CACHECONFIG_VALUES.get(name, cluster)
    cacheconfig = helm.default_cacheconfig(render(values))
    if "+sentinel://" in cacheconfig["spec"]["redis"]["url"] and "sentinel" not in CRD_SOURCE.read_text():
        pytest.skip("this CRD does not take redis+sentinel:// URLs yet (the Sentinel work adds them)")
    jsonschema.Draft7Validator(_schema()).validate(cacheconfig)
    assert pruned_fields(cacheconfig, _schema()) == []
    assert cacheconfig["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mobius-operator"


def test_the_default_cacheconfig_is_the_operators_not_a_helm_object() -> None:
    """Helm hooks outlive `helm uninstall`: the operator creates it, owned by its Deployment (tests/kube prove it)."""
    docs = render({})
    assert helm.find(docs, "CacheConfig") == []
    env = {
        e["name"]: e
        for e in helm.pod_spec(one(docs, "Deployment", "mc-mobius-cache-operator"))["containers"][0]["env"]
    }
    assert env["MOBIUS_OPERATOR_OWNER_DEPLOYMENT"]["value"] == "mc-mobius-cache-operator"
    assert env["MOBIUS_OPERATOR_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    role = one(docs, "Role", "mc-mobius-cache-operator-default-config")
    assert {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "resourceNames": ["mc-mobius-cache-operator"],
        "verbs": ["get"],
    } in role["rules"]
    off = render({"cacheConfig.create": False})
    assert "MOBIUS_OPERATOR_DEFAULT_CACHECONFIG" not in str(off)
    assert helm.find(off, "Role", "mc-mobius-cache-operator-default-config") == []


def test_a_bad_cacheconfig_fails_the_schema() -> None:
    """The check above can fail: a CacheConfig the CRD refuses is refused here too."""
    cacheconfig = helm.default_cacheconfig(render({}))
    cacheconfig["spec"]["evictionPolicy"] = "lru"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(_schema()).validate(cacheconfig)
    cacheconfig["spec"]["evictionPolicy"] = "allkeys-lru"
    cacheconfig["spec"]["maxMemroy"] = "1gb"
    assert pruned_fields(cacheconfig, _schema()) == [".spec.maxMemroy"]


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"example.enabled": True},
        {"exporter.enabled": False},
        {"redis.architecture": "replication"},
        {"redis.architecture": "cluster", "redis.tls.enabled": True},
    ],
)
def test_labels_and_selectors_match(values: dict[str, Any]) -> None:
    docs = render(values)
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "mc", doc["metadata"]["name"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert "app.kubernetes.io/component" in labels
    workloads = [d for d in docs if d["kind"] in ("StatefulSet", "Deployment")]
    for workload in workloads:
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    selectors = [w["spec"]["template"]["metadata"]["labels"] for w in workloads]
    for service in find(docs, "Service"):
        chosen = [s for s in selectors if service["spec"]["selector"].items() <= s.items()]
        assert len(chosen) == 1, f"Service {service['metadata']['name']} selects {len(chosen)} workloads"
    sts = one(docs, "StatefulSet")
    assert one(docs, "Service", sts["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    redis_labels = sts["spec"]["template"]["metadata"]["labels"]
    for kind in ("PodDisruptionBudget",):
        assert one(docs, kind)["spec"]["selector"]["matchLabels"].items() <= redis_labels.items()
    assert one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()


@pytest.mark.parametrize("injector", [True, False])
def test_the_example_app_carries_the_sidecar_contract(injector: bool) -> None:
    """Injected (one annotation) or carried by the pod itself (injector off): the same contract."""
    docs = render({"example.enabled": True, "injector.enabled": injector})
    pod = admitted(docs, "mc-mobius-cache-example")
    spec = pod["spec"]
    assert pod["metadata"]["labels"]["mc-mobius-cache-client"] == "true"
    sidecar = sidecar_of(pod)
    env = {e["name"]: e for e in sidecar["env"]}
    # The sidecar logs in as the cache's own ACL user, with that user's password only.
    assert (
        env["MOBIUS_REDIS_URL"]["value"]
        == "redis://mobius-cache@mc-mobius-cache-redis.cache.svc.cluster.local:6379/0"
    )
    assert env["MOBIUS_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mc-mobius-cache-redis",
        "key": "mobius-cache",
    }
    assert env["MOBIUS_POLICY_FILE"]["value"] == "/etc/mobius/policy/policy.json"
    assert env["MOBIUS_SIDECAR_HOST"]["value"] == "127.0.0.1"
    assert env["MOBIUS_SIDECAR_PORT"]["value"] == "8787"
    # The API is loopback only; the one port on the pod IP is the metrics-only listener.
    assert sidecar["ports"] == [{"name": "mobius-metrics", "containerPort": 9787, "protocol": "TCP"}]
    assert env["MOBIUS_SIDECAR_METRICS_PORT"]["value"] == "9787"
    assert env["MOBIUS_SIDECAR_METRICS_HOST"]["value"] == "0.0.0.0"
    assert "/healthz" in sidecar["livenessProbe"]["exec"]["command"][-1]
    assert "/readyz" in sidecar["readinessProbe"]["exec"]["command"][-1]
    mount = next(m for m in sidecar["volumeMounts"] if m["mountPath"] == "/etc/mobius/policy")
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"] == {"name": "mc-mobius-cache-policy", "optional": True}
    assert helm.default_cacheconfig(docs)["metadata"]["name"] + "-policy" == volume["configMap"]["name"]


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_operator_accepts_the_rendered_command_line(scope: str) -> None:
    """The operator's own argument parser takes what the Deployment passes."""
    from mobius_operator.__main__ import parse_args

    container = pod_spec(one(render({"operator.scope": scope}), "Deployment", "mc-mobius-cache-operator"))
    args = parse_args(container["containers"][0]["args"])
    assert args.all_namespaces == (scope == "cluster")
    assert args.namespaces == (None if scope == "cluster" else ["cache"])
    assert args.liveness == "http://0.0.0.0:8080/healthz", "the liveness probe expects kopf on 8080"
