"""The injection decision (``mobius_operator.injection``): pod + CacheConfig + chart settings -> JSON patch.

No Kubernetes here: every patch is applied with ``jsonpatch`` (the RFC 6902 library kopf uses) and the resulting pod
is inspected, so these tests see what the API server would store.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jsonpatch
import pytest

from mobius_operator.injection import (
    CONFIG,
    CPU,
    INJECT,
    INJECTED,
    MEMORY,
    PORT,
    SIDECAR,
    SIDECAR_URL,
    Denied,
    Injected,
    RedisSource,
    SidecarTemplate,
    Skipped,
    Unchanged,
    config_name,
    decide,
    event_target,
    redis_source,
)

TEMPLATE = SidecarTemplate(
    image="registry.example.com/mobius/cache-sidecar:0.1.0",
    redis=RedisSource(
        url="redis://mc-mobius-cache-redis.cache.svc.cluster.local:6379/0",
        secret_name="mc-mobius-cache-redis",
        secret_key="redis-password",
    ),
    port=8787,
    metrics_port=9787,
    resources={"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}},
    security_context={
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    },
    client_label="mc-mobius-cache-client",
    default_config="mc-mobius-cache",
)
SHOP_CONFIG = {
    "redis": {
        "url": "rediss://search-redis.shop.svc:6380/2",
        "passwordSecretRef": {"name": "search-redis", "key": "pw"},
    },
    "maxMemory": "512mb",
}


def failing(template: SidecarTemplate = TEMPLATE) -> SidecarTemplate:
    """The same template with ``failurePolicy: Fail``."""
    return dataclasses.replace(template, deny_invalid=True)


def pod(annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """A pod as a ReplicaSet creates it: generateName, no name, no uid, an owner reference."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-7d9f8-",
            "namespace": "shop",
            "labels": {"app": "web"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-7d9f8",
                    "uid": "0b6c1d8e-1111-2222-3333-444455556666",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "containers": [
                {"name": "web", "image": "shop/web:1", "env": [{"name": "MODE", "value": "prod"}]},
                {"name": "worker", "image": "shop/worker:1"},
            ],
            **spec,
        },
    }
    if annotations is not None:
        body["metadata"]["annotations"] = annotations
    return body


def injected(body: dict[str, Any], template: SidecarTemplate = TEMPLATE, **kwargs: Any) -> dict[str, Any]:
    """Apply the decision's patch; fail when it is not an injection."""
    decision = decide(body, template, **kwargs)
    assert isinstance(decision, Injected), decision
    for op in decision.patch:  # only additions: nothing of the user's pod is removed or replaced (but nulls)
        replaced_null = op["op"] == "replace" and jsonpatch.JsonPointer(op["path"]).resolve(body) is None
        assert op["op"] == "add" or replaced_null, op
    result: dict[str, Any] = jsonpatch.apply_patch(body, decision.patch)
    return result


def sidecar_of(body: dict[str, Any]) -> dict[str, Any]:
    (sidecar,) = [c for c in body["spec"]["initContainers"] if c["name"] == SIDECAR]
    return sidecar


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- what an annotated pod gets ------------------------------------------------------------------------------
def test_an_annotated_pod_gets_the_native_sidecar_and_everything_around_it() -> None:
    before = pod({INJECT: "true"}, initContainers=[{"name": "migrate", "image": "shop/migrate:1"}])
    after = injected(before)
    spec = after["spec"]

    # The sidecar is the last init container, restartable: a native sidecar, after the regular init containers.
    assert [c["name"] for c in spec["initContainers"]] == ["migrate", SIDECAR]
    sidecar = sidecar_of(after)
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == TEMPLATE.image
    assert sidecar["command"] == ["mobius-sidecar"]
    startup = sidecar["startupProbe"]
    assert "http://127.0.0.1:8787/readyz" in startup["exec"]["command"][-1]
    assert startup["periodSeconds"] == 1 and startup["failureThreshold"] * startup["periodSeconds"] >= 60
    assert "/healthz" in sidecar["livenessProbe"]["exec"]["command"][-1]

    # Redis URL and password Secret; the policy file; loopback only; the metrics listener.
    env = env_of(sidecar)
    assert env["MOBIUS_REDIS_URL"] == TEMPLATE.redis.url
    assert env["MOBIUS_REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "mc-mobius-cache-redis", "key": "redis-password"}
    }
    assert env["MOBIUS_POLICY_FILE"] == "/etc/mobius/policy/policy.json"
    assert (env["MOBIUS_SIDECAR_HOST"], env["MOBIUS_SIDECAR_PORT"]) == ("127.0.0.1", "8787")
    assert (env["MOBIUS_SIDECAR_METRICS_HOST"], env["MOBIUS_SIDECAR_METRICS_PORT"]) == ("0.0.0.0", "9787")
    assert sidecar["ports"] == [{"name": "mobius-metrics", "containerPort": 9787, "protocol": "TCP"}]

    # The chart's resources and security context.
    assert sidecar["resources"] == TEMPLATE.resources
    assert sidecar["securityContext"] == TEMPLATE.security_context

    # The policy ConfigMap of the chart's CacheConfig, mounted for hot reload, and a scratch /tmp.
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
    assert volumes["mobius-policy"]["configMap"] == {"name": "mc-mobius-cache-policy", "optional": True}
    assert mounts["mobius-policy"] == {
        "name": "mobius-policy",
        "mountPath": "/etc/mobius/policy",
        "readOnly": True,
    }
    assert (
        volumes["mobius-tmp"]["emptyDir"]["medium"] == "Memory"
        and mounts["mobius-tmp"]["mountPath"] == "/tmp"
    )

    # Every app container learns where the sidecar is; their own settings stay.
    for container in spec["containers"]:
        assert env_of(container)[SIDECAR_URL] == "http://127.0.0.1:8787", container["name"]
    assert env_of(spec["containers"][0])["MODE"] == "prod"

    # The label the Redis NetworkPolicy admits, the pod's own labels kept, and the marker.
    assert after["metadata"]["labels"] == {"app": "web", "mc-mobius-cache-client": "true"}
    assert after["metadata"]["annotations"] == {INJECT: "true", INJECTED: "true"}


def test_the_injected_pod_differs_only_by_additions() -> None:
    before = pod({INJECT: "true"})
    after = injected(before)
    # Remove what was added: the original pod is left, untouched.
    after["spec"].pop("initContainers")
    after["spec"].pop("volumes")
    for container in after["spec"]["containers"]:
        container["env"] = [e for e in container["env"] if e["name"] != SIDECAR_URL] or None
        if container["env"] is None:
            del container["env"]
    del after["metadata"]["labels"]["mc-mobius-cache-client"]
    del after["metadata"]["annotations"][INJECTED]
    assert after == before


def test_a_pod_without_labels_annotations_env_or_volumes_is_injected_too() -> None:
    bare = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "one", "namespace": "shop", "annotations": {INJECT: "TRUE "}},
        "spec": {"containers": [{"name": "c", "image": "x"}], "initContainers": None, "volumes": None},
    }
    after = injected(bare)
    assert after["metadata"]["labels"] == {"mc-mobius-cache-client": "true"}
    assert [c["name"] for c in after["spec"]["initContainers"]] == [SIDECAR]
    assert env_of(after["spec"]["containers"][0]) == {SIDECAR_URL: "http://127.0.0.1:8787"}


def test_a_url_the_user_set_is_kept() -> None:
    before = pod({INJECT: "true"})
    before["spec"]["containers"][0]["env"].append({"name": SIDECAR_URL, "value": "http://127.0.0.1:9999"})
    after = injected(before)
    web, worker = after["spec"]["containers"]
    assert [e for e in web["env"] if e["name"] == SIDECAR_URL] == [
        {"name": SIDECAR_URL, "value": "http://127.0.0.1:9999"}
    ]
    assert env_of(worker)[SIDECAR_URL] == "http://127.0.0.1:8787"


def test_without_metrics_port_label_or_password() -> None:
    plain = dataclasses.replace(
        TEMPLATE, metrics_port=None, client_label=None, redis=RedisSource(url="redis://r:6379/0")
    )
    after = injected(pod({INJECT: "true"}), plain)
    sidecar = sidecar_of(after)
    assert "ports" not in sidecar
    env = env_of(sidecar)
    assert "MOBIUS_REDIS_PASSWORD" not in env and "MOBIUS_SIDECAR_METRICS_PORT" not in env
    assert after["metadata"]["labels"] == {"app": "web"}


def test_without_a_default_config_the_policy_volume_is_empty() -> None:
    after = injected(pod({INJECT: "true"}), dataclasses.replace(TEMPLATE, default_config=None))
    volumes = {v["name"]: v for v in after["spec"]["volumes"]}
    assert "emptyDir" in volumes["mobius-policy"]


def test_a_tls_redis_ca_is_mounted_where_the_url_names_it() -> None:
    ca = {"configMap": {"name": "mc-mobius-cache-redis-ca"}}
    after = injected(pod({INJECT: "true"}), dataclasses.replace(TEMPLATE, redis_ca_volume=ca))
    volumes = {v["name"]: v for v in after["spec"]["volumes"]}
    assert volumes["mobius-redis-ca"] == {"name": "mobius-redis-ca", **ca}
    mounts = {m["name"]: m for m in sidecar_of(after)["volumeMounts"]}
    assert mounts["mobius-redis-ca"] == {
        "name": "mobius-redis-ca",
        "mountPath": "/etc/mobius/redis-ca",
        "readOnly": True,
    }
    assert "mobius-redis-ca" not in {v["name"] for v in injected(pod({INJECT: "true"}))["spec"]["volumes"]}


def test_a_tls_cacheconfig_url_is_given_the_mounted_ca() -> None:
    """A CacheConfig's URL carries no query (the CRD takes none): a rediss:// one gets the mounted CA added
    (redis-py adds it to the system's, so a Redis with a public certificate still verifies)."""
    template = dataclasses.replace(TEMPLATE, redis_ca_volume={"configMap": {"name": "ca"}})
    after = injected(pod({INJECT: "true", CONFIG: "search"}), template, config=SHOP_CONFIG)
    url = env_of(sidecar_of(after))["MOBIUS_REDIS_URL"]
    assert url == "rediss://search-redis.shop.svc:6380/2?ssl_ca_certs=/etc/mobius/redis-ca/ca.crt"
    plain = {"redis": {"url": "redis://r:6379/0"}}
    after = injected(pod({INJECT: "true", CONFIG: "search"}), template, config=plain)
    assert env_of(sidecar_of(after))["MOBIUS_REDIS_URL"] == "redis://r:6379/0"


# --- each annotation -----------------------------------------------------------------------------------------
def test_config_annotation_takes_redis_secret_and_policy_from_that_cacheconfig() -> None:
    after = injected(pod({INJECT: "true", CONFIG: "search"}), config=SHOP_CONFIG)
    sidecar = sidecar_of(after)
    env = env_of(sidecar)
    assert env["MOBIUS_REDIS_URL"] == "rediss://search-redis.shop.svc:6380/2"
    assert env["MOBIUS_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "search-redis", "key": "pw"}}
    volumes = {v["name"]: v for v in after["spec"]["volumes"]}
    assert volumes["mobius-policy"]["configMap"]["name"] == "search-policy"


def test_config_with_host_and_no_password() -> None:
    after = injected(
        pod({INJECT: "true", CONFIG: "local"}), config={"redis": {"host": "redis.shop", "port": 6380}}
    )
    env = env_of(sidecar_of(after))
    assert env["MOBIUS_REDIS_URL"] == "redis://redis.shop:6380/0"
    assert "MOBIUS_REDIS_PASSWORD" not in env


@pytest.mark.parametrize(
    ("spec", "source"),
    [
        ({"redis": {"url": "redis://r:6379/0"}}, RedisSource("redis://r:6379/0")),
        (
            {"redis": {"url": "rediss+cluster://app@r.db:7000", "passwordSecretRef": {"name": "s"}}},
            RedisSource("rediss+cluster://app@r.db:7000", "s", "password"),
        ),
        ({"redis": {"host": "r"}}, RedisSource("redis://r:6379/0")),
        (  # the operator's own login (admin) is not the sidecars'
            {
                "redis": {
                    "url": "redis://mobius-cache@r:6379/0",
                    "passwordSecretRef": {"name": "s", "key": "mobius-cache"},
                    "admin": {"username": "mobius-operator", "passwordSecretRef": {"name": "s", "key": "op"}},
                }
            },
            RedisSource("redis://mobius-cache@r:6379/0", "s", "mobius-cache"),
        ),
    ],
)
def test_redis_source_of_a_cacheconfig(spec: dict[str, Any], source: RedisSource) -> None:
    assert redis_source(spec) == source


def test_cpu_sets_the_request_and_raises_a_lower_limit() -> None:
    sidecar = sidecar_of(injected(pod({INJECT: "true", CPU: "250m"})))
    assert sidecar["resources"] == {
        "requests": {"cpu": "250m", "memory": "96Mi"},
        "limits": {"memory": "256Mi"},
    }
    limited = dataclasses.replace(
        TEMPLATE, resources={"requests": {"cpu": "50m"}, "limits": {"cpu": "100m", "memory": "256Mi"}}
    )
    raised = sidecar_of(injected(pod({INJECT: "true", CPU: "0.5"}), limited))["resources"]
    assert raised == {"requests": {"cpu": "0.5"}, "limits": {"cpu": "0.5", "memory": "256Mi"}}
    kept = sidecar_of(injected(pod({INJECT: "true", CPU: "75m"}), limited))["resources"]
    assert kept["limits"]["cpu"] == "100m"


def test_memory_sets_request_and_limit() -> None:
    sidecar = sidecar_of(injected(pod({INJECT: "true", MEMORY: "1Gi"})))
    assert sidecar["resources"] == {"requests": {"cpu": "50m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    assert TEMPLATE.resources["limits"] == {"memory": "256Mi"}, "the template itself is never changed"


def test_port_moves_the_api_the_probes_and_the_url() -> None:
    after = injected(pod({INJECT: "true", PORT: "18080"}))
    sidecar = sidecar_of(after)
    assert env_of(sidecar)["MOBIUS_SIDECAR_PORT"] == "18080"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "http://127.0.0.1:18080/" in sidecar[probe]["exec"]["command"][-1], probe
    assert {env_of(c)[SIDECAR_URL] for c in after["spec"]["containers"]} == {"http://127.0.0.1:18080"}


# --- idempotence ---------------------------------------------------------------------------------------------
OPTION_SETS = [
    {},
    {CONFIG: "search"},
    {CPU: "200m"},
    {MEMORY: "512Mi"},
    {PORT: "18000"},
    {CONFIG: "search", CPU: "1", MEMORY: "300Mi", PORT: "12345"},
]


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(k.split("/")[1] for k in o) or "none")
def test_injecting_twice_changes_nothing(options: dict[str, str]) -> None:
    config = SHOP_CONFIG if CONFIG in options else None
    once = injected(pod({INJECT: "true", **options}), config=config)
    again = decide(once, TEMPLATE, config=config)
    assert again == Unchanged("already injected")
    assert decide(once, failing(), config=config) == Unchanged("already injected")


def test_a_reinvocation_tells_only_the_containers_added_since() -> None:
    """reinvocationPolicy IfNeeded: a later webhook added a container; only that one gets the URL."""
    once = injected(pod({INJECT: "true", PORT: "18000"}))
    once["spec"]["containers"].append({"name": "added-later", "image": "x"})
    twice = injected(once)
    assert env_of(twice["spec"]["containers"][-1]) == {SIDECAR_URL: "http://127.0.0.1:18000"}
    assert twice["spec"]["initContainers"] == once["spec"]["initContainers"]
    assert decide(twice, TEMPLATE) == Unchanged("already injected")


# --- not asked, opted out, conflicts -------------------------------------------------------------------------
@pytest.mark.parametrize("annotations", [None, {}, {"other.io/inject": "true"}])
def test_a_pod_without_the_annotation_is_not_touched(annotations: dict[str, str] | None) -> None:
    assert decide(pod(annotations), failing()) == Unchanged("not requested")


@pytest.mark.parametrize("value", ["false", "False", " FALSE "])
def test_opting_out(value: str) -> None:
    # Opting out wins over everything else, even over bad options.
    assert decide(pod({INJECT: value, PORT: "80"}), failing()) == Unchanged("opted out")


@pytest.mark.parametrize(
    ("where", "entry", "said"),
    [
        ("containers", {"name": SIDECAR, "image": "mine"}, "container named 'mobius-sidecar' (containers)"),
        ("initContainers", {"name": SIDECAR, "image": "mine"}, "(initContainers)"),
        ("volumes", {"name": "mobius-policy", "emptyDir": {}}, "volume named 'mobius-policy'"),
        ("volumes", {"name": "mobius-tmp", "emptyDir": {}}, "volume named 'mobius-tmp'"),
    ],
)
def test_a_pod_with_a_sidecar_of_its_own_is_left_alone_with_a_warning(
    where: str, entry: dict[str, Any], said: str
) -> None:
    body = pod({INJECT: "true"})
    body["spec"].setdefault(where, []).append(entry)
    for template in (TEMPLATE, failing()):  # a warning, never a denial: the pod is valid as it is
        decision = decide(body, template)
        assert isinstance(decision, Skipped) and decision.reason == "SidecarConflict", decision
        assert said in decision.message and "left as it is" in decision.message


def test_the_marker_alone_does_not_count_as_injected() -> None:
    """Annotations copied from an injected pod, without the sidecar: inject."""
    sidecar = sidecar_of(injected(pod({INJECT: "true", INJECTED: "true"})))
    assert sidecar["restartPolicy"] == "Always"


# --- bad annotation values -----------------------------------------------------------------------------------
BAD: list[tuple[dict[str, str], dict[str, Any], str]] = [
    ({INJECT: "yes"}, {}, 'cache.mobius.io/inject must be "true" or "false", not \'yes\''),
    (
        {CPU: "lots"},
        {},
        "cache.mobius.io/cpu must be a CPU quantity above zero such as 250m or 0.5, not 'lots'",
    ),
    ({CPU: "0"}, {}, "cache.mobius.io/cpu must be a CPU quantity above zero"),
    ({CPU: "-1"}, {}, "cache.mobius.io/cpu must be"),
    ({CPU: "0.0005"}, {}, "cache.mobius.io/cpu must be"),
    (
        {MEMORY: "lots"},
        {},
        "cache.mobius.io/memory must be a memory quantity such as 256Mi or 1Gi, not 'lots'",
    ),
    ({MEMORY: "1gb"}, {}, "cache.mobius.io/memory must be a memory quantity"),
    ({MEMORY: "64Mi"}, {}, "cache.mobius.io/memory 64Mi is below the sidecar's minimum of 96Mi"),
    ({PORT: "80"}, {}, "cache.mobius.io/port must be a port number from 1024 to 65535"),
    ({PORT: "70000"}, {}, "cache.mobius.io/port must be a port number from 1024 to 65535"),
    ({PORT: "http"}, {}, "not 'http'"),
    ({PORT: "9787"}, {}, "cache.mobius.io/port 9787 is the sidecar's metrics port"),
    ({CONFIG: "Search_Cache"}, {}, "cache.mobius.io/config: 'Search_Cache' is not a CacheConfig name"),
    ({CONFIG: "cache/mobius-cache"}, {}, "'cache/mobius-cache' is not a CacheConfig name"),
    ({CONFIG: "x" * 250}, {}, "is too long for its policy ConfigMap name"),
    ({CONFIG: "missing"}, {}, "CacheConfig shop/missing (cache.mobius.io/config) does not exist"),
    (
        {CONFIG: "search"},
        {"config_error": "403 Forbidden"},
        "cannot read CacheConfig shop/search (cache.mobius.io/config): 403 Forbidden",
    ),
    (
        {CONFIG: "search"},
        {"config": {"redis": {"url": "http://r"}}},
        "CacheConfig shop/search (cache.mobius.io/config) cannot be used: spec.redis.url must be redis://",
    ),
    (
        {"cache.mobius.io/memroy": "1Gi"},
        {},
        "unknown annotation cache.mobius.io/memroy (known: inject, config",
    ),
]


@pytest.mark.parametrize(("annotations", "kwargs", "message"), BAD, ids=[str(b[0]) for b in BAD])
def test_bad_annotations_warn_with_ignore_and_deny_with_fail(
    annotations: dict[str, str], kwargs: dict[str, Any], message: str
) -> None:
    body = pod({INJECT: "true", **annotations})
    ignored = decide(body, TEMPLATE, **kwargs)
    assert isinstance(ignored, Skipped), ignored
    assert ignored.reason == "InvalidAnnotation"
    assert ignored.message.startswith("sidecar not injected: ") and message in ignored.message

    denied = decide(body, failing(), **kwargs)
    assert isinstance(denied, Denied), denied
    assert denied.message.startswith("cannot inject the mobius-cache sidecar: ") and message in denied.message


@pytest.mark.parametrize(
    ("annotations", "ports", "message"),
    [
        ({}, [8787], "container 'web' declares port 8787, the sidecar's API port: set cache.mobius.io/port"),
        ({PORT: "8080"}, [8080], "container 'web' declares port 8080, the sidecar's API port"),
        ({}, [9787], "declares port 9787, the sidecar's metrics port: change sidecar.metricsPort"),
    ],
)
def test_a_port_an_app_container_declares_is_refused(
    annotations: dict[str, str], ports: list[int], message: str
) -> None:
    body = pod({INJECT: "true", **annotations})
    body["spec"]["containers"][0]["ports"] = [{"containerPort": p} for p in ports]
    decision = decide(body, failing())
    assert isinstance(decision, Denied) and message in decision.message, decision


def test_host_network_pods_are_refused() -> None:
    decision = decide(pod({INJECT: "true"}, hostNetwork=True), TEMPLATE)
    assert isinstance(decision, Skipped) and "hostNetwork" in decision.message


def test_every_problem_is_reported_at_once() -> None:
    decision = decide(pod({INJECT: "true", CPU: "lots", MEMORY: "1", PORT: "1"}), failing())
    assert isinstance(decision, Denied)
    for key in (CPU, MEMORY, PORT):
        assert key in decision.message


def test_valid_quantities_are_accepted() -> None:
    for cpu, memory in itertools.product(
        ["1", "2.5", "100m", "0.125"], ["96Mi", "1Gi", "1.5Gi", "200M", "134217728"]
    ):
        assert isinstance(decide(pod({INJECT: "true", CPU: cpu, MEMORY: memory}), failing()), Injected)


# --- helpers for the handler ---------------------------------------------------------------------------------
def test_config_name_is_read_only_when_it_is_worth_a_lookup() -> None:
    assert config_name(pod({INJECT: "true", CONFIG: "search"})) == "search"
    assert config_name(pod({INJECT: "true"})) is None
    assert config_name(pod({CONFIG: "search"})) is None  # no injection asked for
    assert config_name(pod({INJECT: "false", CONFIG: "search"})) is None
    assert config_name(pod({INJECT: "true", CONFIG: "Bad Name"})) is None


def test_events_go_to_the_controller_or_to_a_named_pod() -> None:
    assert event_target(pod({INJECT: "true"})) == {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web-7d9f8",
        "namespace": "shop",
        "uid": "0b6c1d8e-1111-2222-3333-444455556666",
    }
    bare = {"metadata": {"name": "one", "namespace": "shop"}}
    assert event_target(bare) == {"apiVersion": "v1", "kind": "Pod", "name": "one", "namespace": "shop"}
    assert event_target({"metadata": {"generateName": "one-", "namespace": "shop"}}) is None
