"""The operator's pure core: no Kubernetes, no Redis, no kopf."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mobius_cache._config import CacheConfig
from mobius_operator.reconcile import (
    POLICY_KEY,
    Applied,
    Claim,
    Conflict,
    DesiredSettings,
    Invalid,
    InvalidSpec,
    NodeState,
    PublishFailed,
    RedisRefused,
    RedisStats,
    RedisUnreachable,
    SecretUnavailable,
    backoff_delay,
    build_plan,
    cluster_members,
    conditions_for,
    drift,
    find_conflict,
    is_retryable,
    merge_conditions,
    parse_quantity,
    parse_target,
    policy_configmap,
    status_patch,
)

REDIS = {"url": "redis://redis.cache.svc:6379/0"}


def spec(**fields: Any) -> dict[str, Any]:
    return {"redis": REDIS, **fields}


# --- plan -----------------------------------------------------------------------------------------------------
def test_plan_turns_the_spec_into_redis_settings_in_config_get_form() -> None:
    plan = build_plan(spec(maxMemory="512mb", evictionPolicy="allkeys-lfu"))
    assert plan.settings == DesiredSettings(maxmemory=512 * 1024 * 1024, maxmemory_policy="allkeys-lfu")
    assert plan.settings.as_config() == {
        "maxmemory": str(512 * 1024 * 1024),
        "maxmemory-policy": "allkeys-lfu",
    }
    assert plan.target.key == "redis.cache.svc:6379"


def test_omitted_fields_take_the_model_defaults_not_the_operator_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOBIUS_MAX_MEMORY", "5mb")
    monkeypatch.setenv("MOBIUS_EVICTION_POLICY", "noeviction")
    plan = build_plan(spec())
    assert plan.max_memory == CacheConfig.model_fields["max_memory"].default
    assert plan.settings.maxmemory_policy == str(CacheConfig.model_fields["eviction_policy"].default)


def test_the_policy_document_is_the_library_round_trip_without_secrets() -> None:
    raw = spec(
        maxMemory="1gb",
        defaultTTL=600,
        keyPrefix="shop:",
        redis={"url": "redis://default@redis:6379/2", "passwordSecretRef": {"name": "redis-auth"}},
        strategies={"user": {"ttl": 900, "sliding": True}, "report": {"ttl": 120, "serializer": "json"}},
    )
    plan = build_plan(raw)
    doc = json.loads(plan.policy_json)
    assert doc == CacheConfig.from_spec(raw).to_spec()
    assert doc["defaultTTL"] == 600 and doc["keyPrefix"] == "shop:"
    assert doc["strategies"]["report"] == {"ttl": 120, "serializer": "json"}
    assert "redis" not in doc and "redis-auth" not in plan.policy_json
    # The sidecar reads it back through the same model.
    assert CacheConfig.from_spec(doc).default_ttl == 600
    # Deterministic bytes: re-publishing an unchanged spec is a no-op for the ConfigMap and the sidecars.
    assert build_plan(raw).policy_json == plan.policy_json


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"maxMemory": "lots"}, "maxMemory"),
        ({"evictionPolicy": "lru"}, "evictionPolicy"),
        ({"defaultTTL": 7200, "maxTTL": 3600}, "default_ttl (7200) must not exceed max_ttl (3600)"),
        ({"defaultTTL": 0}, "defaultTTL"),
        ({"keyPrefix": "a b"}, "keyPrefix"),
        ({"strategies": {"a:b": {"ttl": 5}}}, "strategy name 'a:b'"),
        ({"strategies": {"user": {"ttl": 5, "colour": "red"}}}, "colour"),
        ({"strategies": ["user"]}, "spec.strategies must be a map"),
        ({"strategies": {"user": 5}}, "strategies.user"),
        ({"strategies": {"a:b": {"ttl": 10**9}}}, "strategy name 'a:b'"),  # the model skips this check here
        ({"maxMemory": 123}, "maxMemory"),
        ({"redis": "redis://r:6379"}, "spec.redis is required"),
    ],
)
def test_a_spec_the_library_refuses_is_invalid_with_a_readable_message(
    fields: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(InvalidSpec) as err:
        build_plan(spec(**fields))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value) and "pydantic" not in str(err.value)


def test_max_memory_above_the_container_limit_is_invalid() -> None:
    limit = parse_quantity("1Gi")
    assert build_plan(spec(maxMemory="1gb"), memory_limit=limit).settings.maxmemory == limit
    with pytest.raises(InvalidSpec, match="above the Redis container's memory limit"):
        build_plan(spec(maxMemory="2gb"), memory_limit=limit)
    with pytest.raises(InvalidSpec, match="no limit"):
        build_plan(spec(maxMemory="0"), memory_limit=limit)
    assert build_plan(spec(maxMemory="0")).settings.maxmemory == 0  # unknown limit: allowed


@pytest.mark.parametrize(
    ("redis", "expected"),
    [
        ({"url": "redis://r:6380/3"}, ("r", 6380, 3, False, None)),
        ({"url": "rediss://app@r.example"}, ("r.example", 6379, 0, True, "app")),
        ({"host": "redis-master.cache.svc"}, ("redis-master.cache.svc", 6379, 0, False, None)),
        ({"host": "r", "port": 7000}, ("r", 7000, 0, False, None)),
    ],
)
def test_targets(redis: dict[str, Any], expected: tuple[Any, ...]) -> None:
    t = parse_target(redis)
    assert (t.host, t.port, t.db, t.tls, t.username) == expected


@pytest.mark.parametrize(
    ("redis", "fragment"),
    [
        (None, "spec.redis is required"),
        ({}, "exactly one"),
        ({"url": "redis://r", "host": "r"}, "exactly one"),
        ({"url": "redis://:hunter2@r:6379"}, "must not contain a password"),
        ({"url": "unix:///tmp/redis.sock"}, "redis://, rediss://, redis\\+cluster://"),
        ({"url": "redis://r:99999"}, "invalid port"),
        ({"url": "redis://r/x"}, "database number"),
        ({"host": "r", "port": "6379"}, "port must be an integer"),
        ({"host": "r", "passwordSecretRef": {"key": "pw"}}, "needs a name"),
    ],
)
def test_bad_targets(redis: Any, fragment: str) -> None:
    with pytest.raises(InvalidSpec, match=fragment):
        parse_target(redis)


def test_sentinel_targets() -> None:
    t = parse_target(
        {
            "url": "rediss+sentinel://app@sentinel-0.redis:26379,sentinel-1.redis/cache/2",
            "passwordSecretRef": {"name": "redis-auth"},
            "sentinelUsername": "watcher",
            "sentinelPasswordSecretRef": {"name": "sentinel-auth", "key": "pw"},
        }
    )
    assert t.sentinel is not None and t.sentinel.master_name == "cache"
    assert t.sentinel.sentinels == (("sentinel-0.redis", 26379), ("sentinel-1.redis", 26379))
    assert (t.db, t.tls, t.username, t.secret_name) == (2, True, "app", "redis-auth")
    assert (t.sentinel_username, t.sentinel_secret_name, t.sentinel_secret_key) == (
        "watcher",
        "sentinel-auth",
        "pw",
    )
    assert t.key == "cache@sentinel-0.redis:26379,sentinel-1.redis:26379" and not t.cluster
    same = parse_target({"url": "redis+sentinel://sentinel-1.redis:26379,SENTINEL-0.redis/cache"})
    assert same.key == t.key  # the same group: a conflict between two resources is seen


@pytest.mark.parametrize(
    ("redis", "fragment"),
    [
        ({"url": "redis+sentinel://s1:26379"}, "names no master"),
        ({"url": "redis+sentinel://:pw@s1/m"}, "must not contain a password"),
        ({"url": "redis+sentinel://s1/m/x"}, "number 0-99"),
        ({"url": "redis://r", "sentinelPasswordSecretRef": {"name": "s"}}, "need a redis\\+sentinel"),
        ({"host": "r", "sentinelUsername": "u"}, "need a redis\\+sentinel"),
        ({"url": "redis+sentinel://s/m", "sentinelPasswordSecretRef": {"key": "k"}}, "needs a name"),
    ],
)
def test_bad_sentinel_targets(redis: Any, fragment: str) -> None:
    with pytest.raises(InvalidSpec, match=fragment):
        parse_target(redis)


def test_cluster_targets_and_members() -> None:
    t = parse_target({"url": "rediss+cluster://seed.cache.svc:6379"})
    assert (t.cluster, t.tls, t.key) == (True, True, "seed.cache.svc:6379")
    assert not parse_target({"url": "redis://r"}).cluster
    nodes = {
        "10.0.0.1:6379@16379": {"flags": "myself,master"},
        "10.0.0.2:6379": {"flags": "slave"},
        "10.0.0.3:6379": {"flags": "master,fail"},
        "10.0.0.4:6379": {"flags": "handshake"},
    }
    assert cluster_members(nodes) == [("10.0.0.1", 6379, True), ("10.0.0.2", 6379, False)]


def test_cluster_stats_sum_the_primaries() -> None:
    a, b = RedisStats(10, 100, 3, 1, 0, 5), RedisStats(20, 100, 1, 3, 2, 7)
    total = RedisStats.combine([a, b])
    assert (total.used_memory, total.max_memory, total.keys, total.evicted_keys, total.hit_ratio) == (
        30,
        100,
        12,
        2,
        0.5,
    )


def test_cluster_members_are_named_by_their_announced_hostname() -> None:
    """With cluster-preferred-endpoint-type hostname (the chart's cluster), TLS checks names, not pod IPs."""
    nodes = {
        "10.0.0.1:6379": {
            "flags": "master",
            "hostname": "mc-redis-0.mc-redis-headless.cache.svc.cluster.local",
        },
        "10.0.0.2:6379": {"flags": "slave", "hostname": ""},
    }
    assert cluster_members(nodes) == [
        ("10.0.0.2", 6379, False),
        ("mc-redis-0.mc-redis-headless.cache.svc.cluster.local", 6379, True),
    ]


def test_the_operator_logs_in_with_its_own_admin_user() -> None:
    """spec.redis.url and passwordSecretRef are the clients' (injected sidecars use them); spec.redis.admin
    is the operator's own login, with only the commands it needs (the chart's mobius-operator user)."""
    t = parse_target(
        {
            "url": "rediss://mobius-cache@r.cache.svc:6379/0",
            "passwordSecretRef": {"name": "redis", "key": "mobius-cache"},
            "admin": {
                "username": "mobius-operator",
                "passwordSecretRef": {"name": "redis", "key": "mobius-operator"},
            },
        }
    )
    assert (t.host, t.tls, t.username, t.secret_name, t.secret_key) == (
        "r.cache.svc",
        True,
        "mobius-operator",
        "redis",
        "mobius-operator",
    )
    host = parse_target({"host": "r", "admin": {"username": "ops", "passwordSecretRef": {"name": "s"}}})
    assert (host.username, host.secret_name, host.secret_key) == ("ops", "s", "password")


@pytest.mark.parametrize(
    ("admin", "fragment"),
    [
        ("ops", "spec.redis.admin must be a map"),
        ({"passwordSecretRef": {"name": "s"}}, "spec.redis.admin.username"),
        (
            {"username": "ops", "passwordSecretRef": {"key": "k"}},
            "spec.redis.admin.passwordSecretRef needs a name",
        ),
    ],
)
def test_bad_admin_logins(admin: Any, fragment: str) -> None:
    with pytest.raises(InvalidSpec, match=fragment):
        parse_target({"url": "redis://r", "admin": admin})


def test_password_secret_reference_defaults_its_key() -> None:
    t = parse_target({"host": "r", "passwordSecretRef": {"name": "auth"}})
    assert (t.secret_name, t.secret_key) == ("auth", "password")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512Mi", 512 * 2**20),
        ("2Gi", 2 * 2**30),
        ("1G", 10**9),
        ("1500M", 1500 * 10**6),
        ("1gb", 2**30),
        ("42", 42),
    ],
)
def test_memory_quantities(text: str, size: int) -> None:
    assert parse_quantity(text) == size


def test_bad_memory_quantity() -> None:
    with pytest.raises(ValueError, match="invalid memory quantity"):
        parse_quantity("two gigs")


# --- drift ----------------------------------------------------------------------------------------------------
def test_drift_names_each_setting_that_differs() -> None:
    want = DesiredSettings(maxmemory=20 * 2**20, maxmemory_policy="allkeys-lru")
    assert drift(want, {"maxmemory": str(20 * 2**20), "maxmemory-policy": "allkeys-lru"}) == {}
    assert drift(want, {"maxmemory": "0", "maxmemory-policy": "ALLKEYS-LRU"}) == {
        "maxmemory": ("0", str(20 * 2**20))
    }
    assert drift(want, {}) == {
        "maxmemory": (None, str(20 * 2**20)),
        "maxmemory-policy": (None, "allkeys-lru"),
    }


# --- conflicts --------------------------------------------------------------------------------------------------
def claim(name: str, created: str, mb: int, policy: str = "allkeys-lru", target: str = "r:6379") -> Claim:
    return Claim(created, "shop", name, target, DesiredSettings(mb * 2**20, policy))


def test_the_older_claim_wins_and_a_later_different_one_conflicts() -> None:
    a = claim("a", "2026-01-01T00:00:00Z", 100)
    b = claim("b", "2026-01-02T00:00:00Z", 200)
    assert find_conflict(a, [a, b]) is None
    assert find_conflict(b, [a, b]) == a


def test_same_settings_or_other_redis_do_not_conflict() -> None:
    a = claim("a", "2026-01-01T00:00:00Z", 100)
    same = claim("same", "2026-01-02T00:00:00Z", 100)
    elsewhere = claim("elsewhere", "2026-01-02T00:00:00Z", 200, target="other:6379")
    assert find_conflict(same, [a, same, elsewhere]) is None
    assert find_conflict(elsewhere, [a, same, elsewhere]) is None


def test_policy_difference_conflicts_and_ties_break_by_name() -> None:
    a = claim("a", "2026-01-01T00:00:00Z", 100, "allkeys-lru")
    b = claim("b", "2026-01-01T00:00:00Z", 100, "volatile-lru")
    assert find_conflict(a, [a, b]) is None
    assert find_conflict(b, [b, a]) == a


def test_only_the_owner_counts_losers_do_not_block() -> None:
    a = claim("a", "2026-01-01T00:00:00Z", 100)
    loser = claim("loser", "2026-01-02T00:00:00Z", 200)
    agrees = claim("agrees", "2026-01-03T00:00:00Z", 100)
    assert find_conflict(loser, [a, loser, agrees]) == a
    assert find_conflict(agrees, [a, loser, agrees]) is None


def test_once_the_winner_is_gone_the_next_oldest_wins() -> None:
    b = claim("b", "2026-01-02T00:00:00Z", 200)
    c = claim("c", "2026-01-03T00:00:00Z", 300)
    assert find_conflict(b, [b, c]) is None
    assert find_conflict(c, [b, c]) == b


# --- stats, conditions, status ------------------------------------------------------------------------------------
INFO = {
    "used_memory": 1_000_000,
    "maxmemory": 20 * 2**20,
    "keyspace_hits": 75,
    "keyspace_misses": 25,
    "evicted_keys": 3,
    "db0": {"keys": 10, "expires": 2},
    "db3": {"keys": 5, "expires": 0},
}


def test_stats_from_info() -> None:
    stats = RedisStats.from_info(INFO)
    assert (stats.used_memory, stats.evicted_keys, stats.keys) == (1_000_000, 3, 15)
    assert stats.hit_ratio == 0.75
    assert RedisStats.from_info({}).hit_ratio is None


def _by_type(conds: list[Any]) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in conds}


def test_conditions_of_each_outcome() -> None:
    plan = build_plan(spec())
    stats = RedisStats.from_info(INFO)
    winner = claim("a", "2026-01-01T00:00:00Z", 100)
    cases: list[tuple[Any, tuple[str, str, str, str]]] = [
        (Applied(plan, stats), ("True", "Applied", "True", "True")),
        (Invalid("bad"), ("False", "InvalidSpec", "False", "Unknown")),
        (Conflict(winner), ("False", "Conflict", "False", "Unknown")),
        (SecretUnavailable("no secret"), ("False", "SecretUnavailable", "False", "Unknown")),
        (RedisUnreachable("refused"), ("False", "RedisUnreachable", "False", "False")),
        (RedisRefused("unknown command"), ("False", "ApplyFailed", "False", "True")),
        (PublishFailed("403 Forbidden"), ("False", "PublishFailed", "False", "Unknown")),
    ]
    for outcome, (ready, reason, applied, reachable) in cases:
        got = _by_type(conditions_for(outcome))
        assert got["Ready"] == (ready, reason), outcome
        assert got["ConfigApplied"][0] == applied, outcome
        assert got["RedisReachable"][0] == reachable, outcome
    conflict_msg = next(c.message for c in conditions_for(Conflict(winner)) if c.type == "Ready")
    assert "shop/a" in conflict_msg


def test_last_transition_time_moves_only_when_the_status_changes() -> None:
    first = merge_conditions(None, conditions_for(RedisUnreachable("x")), now="T1", generation=1)
    again = merge_conditions(first, conditions_for(RedisUnreachable("y")), now="T2", generation=1)
    fixed = merge_conditions(
        again, conditions_for(Applied(build_plan(spec()), RedisStats.from_info(INFO))), now="T3", generation=1
    )
    times = [{c["type"]: c["lastTransitionTime"] for c in conds} for conds in (first, again, fixed)]
    assert times[1] == times[0] == {"Ready": "T1", "ConfigApplied": "T1", "RedisReachable": "T1"}
    assert times[2] == {"Ready": "T3", "ConfigApplied": "T3", "RedisReachable": "T3"}
    assert next(c for c in again if c["type"] == "Ready")["message"] == "y"


def test_status_patch_records_applied_values_only_when_verified() -> None:
    plan = build_plan(spec(maxMemory="20mb"))
    stats = RedisStats.from_info(INFO)
    ok = status_patch(Applied(plan, stats), previous=None, generation=4, now="T", configmap="c-policy")
    assert ok["observedGeneration"] == 4
    assert ok["applied"] == {
        "target": "redis.cache.svc:6379",
        "maxMemory": "20mb",
        "maxMemoryBytes": 20 * 2**20,
        "evictionPolicy": "allkeys-lru",
        "policyConfigMap": "c-policy",
        "verifiedAt": "T",
    }
    assert ok["redis"]["hitRatio"] == 0.75 and ok["redis"]["keys"] == 15
    down = status_patch(RedisUnreachable("x"), previous=ok, generation=5, now="T2", configmap="c-policy")
    assert "applied" not in down and "redis" not in down  # the merge patch keeps the last verified values
    assert down["observedGeneration"] == 5


def test_status_patch_reports_every_node() -> None:
    plan = build_plan({"redis": {"url": "redis+sentinel://s1,s2/cache"}, "maxMemory": "20mb"})
    nodes = (
        NodeState("10.0.0.1:6379", "master", "Applied"),
        NodeState("10.0.0.2:6379", "replica", "Applied"),
        NodeState("10.0.0.3:6379", "replica", "Down", "flagged by the Sentinels: slave,s_down"),
    )
    ok = status_patch(
        Applied(plan, RedisStats.from_info(INFO), nodes=nodes),
        previous=None,
        generation=1,
        now="T",
        configmap="c-policy",
    )
    assert ok["nodes"] == [
        {"address": "10.0.0.1:6379", "role": "master", "state": "Applied"},
        {"address": "10.0.0.2:6379", "role": "replica", "state": "Applied"},
        {
            "address": "10.0.0.3:6379",
            "role": "replica",
            "state": "Down",
            "message": "flagged by the Sentinels: slave,s_down",
        },
    ]
    assert ok["applied"]["target"] == "cache@s1:26379,s2:26379"
    applied = next(c for c in ok["conditions"] if c["type"] == "ConfigApplied")["message"]
    assert "on 3 nodes (1 master, 2 replicas), 1 down and skipped" in applied
    failed = (
        NodeState("10.0.0.1:6379", "master", "Applied"),
        NodeState("10.0.0.2:6379", "replica", "Refused", "no"),
    )
    refused = status_patch(
        RedisRefused("1 of 2 nodes", None, nodes=failed), previous=ok, generation=1, now="T2", configmap="c"
    )
    assert [n["state"] for n in refused["nodes"]] == ["Applied", "Refused"] and "applied" not in refused
    assert "nodes" not in status_patch(Invalid("x"), previous=ok, generation=2, now="T3", configmap="c")


def test_retry_policy() -> None:
    assert [backoff_delay(r, base=1, cap=10) for r in range(6)] == [1, 2, 4, 8, 10, 10]
    assert backoff_delay(10_000, base=1, cap=60) == 60
    assert is_retryable(RedisUnreachable("x")) and is_retryable(SecretUnavailable("x"))
    assert not is_retryable(Invalid("x")) and not is_retryable(Conflict(claim("a", "t", 1)))


def test_policy_configmap_shape() -> None:
    cm = policy_configmap("web", "shop", "{}")
    assert cm["metadata"]["name"] == "web-policy" and cm["metadata"]["namespace"] == "shop"
    assert cm["data"] == {POLICY_KEY: "{}"} and POLICY_KEY == "policy.json"
