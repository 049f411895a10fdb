"""End to end: the real kopf operator against the KMock API emulator (real HTTP) and real redis-server processes.

Every wait polls with a deadline; the reconcile interval is 0.5 s here (30 s by default).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from mobius_cache._config import CacheConfig
from tests.operator.conftest import Cluster, eventually
from tests.servers import RedisServer, free_port, sentinel_group

MB = 1024 * 1024


def config_get(server: RedisServer) -> tuple[int, str]:
    with server.client(decode_responses=True, socket_timeout=2) as c:
        values = c.config_get("maxmemory*")
    return int(values["maxmemory"]), values["maxmemory-policy"]


def ready(cluster: Cluster, name: str) -> dict[str, Any]:
    return cluster.condition(name, "Ready")


def is_ready(cluster: Cluster, name: str, generation: int = 1) -> bool:
    obj = cluster.maybe(name) or {}
    status = obj.get("status", {})
    return ready(cluster, name).get("status") == "True" and status.get("observedGeneration") == generation


async def test_create_applies_to_redis_publishes_the_policy_and_reports_status(
    cluster: Cluster, run_operator: Any, redis_server: RedisServer
) -> None:
    with redis_server.client() as c:
        c.mset({"mobius:a": 1, "mobius:b": 2, "mobius:c": 3})
        c.get("mobius:a"), c.get("mobius:b"), c.get("mobius:c"), c.get("mobius:missing")
    spec = {
        "redis": {"url": redis_server.url},
        "maxMemory": "20mb",
        "evictionPolicy": "allkeys-lfu",
        "defaultTTL": 600,
        "strategies": {"report": {"ttl": 120, "serializer": "json"}},
    }
    async with run_operator():
        started = time.monotonic()
        await cluster.create("web", spec)
        await eventually(lambda: is_ready(cluster, "web"), what="Ready=True")
        took = time.monotonic() - started

        assert config_get(redis_server) == (20 * MB, "allkeys-lfu")
        obj = cluster.get("web")
        status = obj["status"]
        conditions = {c["type"]: c for c in status["conditions"]}
        assert {t: (c["status"], c["reason"]) for t, c in conditions.items()} == {
            "Ready": ("True", "Applied"),
            "ConfigApplied": ("True", "Applied"),
            "RedisReachable": ("True", "Connected"),
        }
        assert all(c["lastTransitionTime"] and c["message"] for c in conditions.values())
        assert status["applied"]["maxMemoryBytes"] == 20 * MB
        assert status["applied"]["evictionPolicy"] == "allkeys-lfu"
        assert status["redis"]["keys"] == 3 and status["redis"]["hitRatio"] == 0.75
        assert status["redis"]["usedMemory"] > 0

        cm = cluster.get("web-policy", resource="v1/configmaps")
        assert json.loads(cm["data"]["policy.json"]) == CacheConfig.from_spec(spec).to_spec()
        (owner,) = cm["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("CacheConfig", "web", obj["metadata"]["uid"])
        await eventually(
            lambda: cluster.events("Applied"), what="an Applied Event"
        )  # posted in the background
    assert took < 5, f"create → Ready took {took:.2f}s"


async def test_the_policy_configmap_is_written_once_and_not_rewritten_while_unchanged(
    cluster: Cluster, run_operator: Any, redis_server: RedisServer
) -> None:
    async with run_operator(interval=0.2):
        await cluster.create("web", {"redis": {"url": redis_server.url}, "maxMemory": "20mb"})
        await eventually(lambda: is_ready(cluster, "web"), what="Ready")
        first = cluster.get("web")["status"]["applied"]["verifiedAt"]
        # Several timer runs later (each re-verifies Redis and refreshes the status) ...
        await eventually(
            lambda: cluster.get("web")["status"]["applied"]["verifiedAt"] != first,
            timeout=5,
            what="a re-check",
        )
    writes = [
        r.method.value
        for r in list(cluster.kmock._requests)
        if r.resource is not None and r.resource.plural == "configmaps" and r.method.value != "GET"
    ]
    assert writes == ["POST"], writes  # ... the ConfigMap was created once and never patched


async def test_a_restarted_operator_resumes_and_reapplies_at_once(
    cluster: Cluster, run_operator: Any, redis_server: RedisServer
) -> None:
    async with run_operator():
        await cluster.create("web", {"redis": {"url": redis_server.url}, "maxMemory": "20mb"})
        await eventually(lambda: is_ready(cluster, "web"), what="Ready")
    with redis_server.client() as c:  # changed while no operator runs
        c.config_set("maxmemory", "50mb")
    async with run_operator(interval=600):  # no timer run during the test: only the resume handler can fix it
        await eventually(
            lambda: config_get(redis_server)[0] == 20 * MB, timeout=10, what="re-applied on resume"
        )
        assert is_ready(cluster, "web")


async def test_update_is_reapplied(cluster: Cluster, run_operator: Any, redis_server: RedisServer) -> None:
    async with run_operator():
        await cluster.create("web", {"redis": {"url": redis_server.url}, "maxMemory": "20mb"})
        await eventually(lambda: is_ready(cluster, "web"), what="Ready for generation 1")
        await cluster.update_spec(
            "web", {"maxMemory": "30mb", "evictionPolicy": "volatile-ttl", "defaultTTL": 60}
        )
        await eventually(lambda: is_ready(cluster, "web", generation=2), what="Ready for generation 2")
        assert config_get(redis_server) == (30 * MB, "volatile-ttl")
        policy = json.loads(cluster.get("web-policy", resource="v1/configmaps")["data"]["policy.json"])
        assert (policy["maxMemory"], policy["defaultTTL"]) == ("30mb", 60)
        assert cluster.get("web")["status"]["applied"]["maxMemory"] == "30mb"


async def test_drift_is_corrected_within_the_interval_with_an_event(
    cluster: Cluster, run_operator: Any, redis_server: RedisServer
) -> None:
    async with run_operator(interval=0.5):
        await cluster.create("web", {"redis": {"url": redis_server.url}, "maxMemory": "20mb"})
        await eventually(lambda: is_ready(cluster, "web"), what="Ready")

        with redis_server.client() as c:  # someone runs CONFIG SET by hand
            c.config_set("maxmemory", "100mb")
            c.config_set("maxmemory-policy", "noeviction")
        started = time.monotonic()
        await eventually(
            lambda: config_get(redis_server) == (20 * MB, "allkeys-lru"), timeout=5, what="restored"
        )
        restored_in = time.monotonic() - started
        events = await eventually(
            lambda: cluster.events("DriftCorrected"), timeout=5, what="DriftCorrected event"
        )
        assert "maxmemory 104857600 -> 20971520" in events[0]["message"]
        assert restored_in < 3.0, f"restored after {restored_in:.2f}s with a 0.5 s interval"

        # Redis restarts with other settings (its command line says 64mb): corrected the same way.
        redis_server.restart()
        assert config_get(redis_server)[0] == 64 * MB
        await eventually(
            lambda: config_get(redis_server) == (20 * MB, "allkeys-lru"), timeout=5, what="re-set"
        )
        await eventually(lambda: len(cluster.events("DriftCorrected")) >= 2, timeout=5, what="second event")
        assert is_ready(cluster, "web")


async def test_redis_down_is_reported_then_recovered(
    cluster: Cluster, run_operator: Any, redis_server: RedisServer
) -> None:
    redis_server.stop()
    async with run_operator():
        await cluster.create("web", {"redis": {"url": redis_server.url}, "maxMemory": "20mb"})
        reachable = await eventually(
            lambda: (
                cluster.condition("web", "RedisReachable").get("status") == "False"
                and cluster.condition("web", "RedisReachable")
            ),
            what="RedisReachable=False",
        )
        assert reachable["reason"] == "ConnectionFailed"
        assert f"127.0.0.1:{redis_server.port}" in reachable["message"]
        assert ready(cluster, "web")["reason"] == "RedisUnreachable"
        await asyncio.sleep(0)  # the operator keeps retrying (backoff 0.2 s → 1 s) without crashing

        redis_server.start()
        await eventually(lambda: is_ready(cluster, "web"), timeout=10, what="recovery")
        assert config_get(redis_server) == (20 * MB, "allkeys-lru")
        assert cluster.condition("web", "RedisReachable")["status"] == "True"

        # A Redis that hangs (SIGSTOP) during the life of the resource: bounded timeouts, reported, recovered.
        redis_server.freeze()
        try:
            await eventually(
                lambda: cluster.condition("web", "RedisReachable").get("status") == "False",
                timeout=10,
                what="frozen Redis reported",
            )
        finally:
            redis_server.thaw()
        await eventually(lambda: is_ready(cluster, "web"), timeout=10, what="recovery after thaw")


async def test_invalid_spec_is_reported_and_nothing_applied(
    cluster: Cluster, run_operator: Any, redis_server: RedisServer
) -> None:
    before = config_get(redis_server)
    async with run_operator(redis_memory_limit="50Mi"):
        # An object stored before the CRD had its CEL rule: defaultTTL above maxTTL.
        await cluster.create("old", {"redis": {"url": redis_server.url}, "defaultTTL": 7200, "maxTTL": 3600})
        # Valid for the schema, but above the Redis container's memory limit.
        await cluster.create("big", {"redis": {"url": redis_server.url}, "maxMemory": "100mb"})
        for name, fragment in [
            ("old", "must not exceed max_ttl"),
            ("big", "above the Redis container's memory"),
        ]:
            cond = await eventually(functools.partial(ready, cluster, name), what=f"{name} status")
            assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec"), cond
            assert fragment in cond["message"]
            assert cluster.condition(name, "ConfigApplied")["status"] == "False"
            assert cluster.maybe(f"{name}-policy", resource="v1/configmaps") is None
            assert "applied" not in cluster.get(name)["status"]
        await eventually(lambda: cluster.events("InvalidSpec"), what="an InvalidSpec warning Event")

        # Fixing the spec is picked up like any update.
        await cluster.update_spec("big", {"maxMemory": "40mb"})
        await eventually(lambda: is_ready(cluster, "big", generation=2), what="fixed spec applied")
    assert before != config_get(redis_server) == (40 * MB, "allkeys-lru")


async def test_conflict_then_deletion_of_the_winner(
    cluster: Cluster, run_operator: Any, redis_server: RedisServer
) -> None:
    target = {"url": redis_server.url}
    async with run_operator():
        await cluster.create("first", {"redis": target, "maxMemory": "20mb"}, created="2026-01-01T00:00:00Z")
        await eventually(lambda: is_ready(cluster, "first"), what="first Ready")
        # Same Redis, reached by host+port, with other memory settings; and a third one that agrees.
        other = {"host": "127.0.0.1", "port": redis_server.port}
        await cluster.create("second", {"redis": other, "maxMemory": "30mb"}, created="2026-01-02T00:00:00Z")
        await cluster.create("same", {"redis": target, "maxMemory": "20mb"}, created="2026-01-03T00:00:00Z")
        cond = await eventually(
            lambda: ready(cluster, "second").get("reason") == "Conflict" and ready(cluster, "second")
        )
        assert cond["status"] == "False" and "shop/first" in cond["message"]
        await eventually(lambda: is_ready(cluster, "same"), what="an agreeing resource is applied")
        await asyncio.sleep(1.2)  # two more reconcile intervals: the loser must still not have been applied
        assert config_get(redis_server) == (20 * MB, "allkeys-lru")
        assert cluster.maybe("second-policy", resource="v1/configmaps") is None
        assert ready(cluster, "second")["reason"] == "Conflict"

        # Deleting the owner releases its finalizer; "second" is now the oldest claim on this Redis, so it is
        # applied, and "same" (which agreed with "first") now conflicts with "second".
        await cluster.delete("first")
        await eventually(lambda: cluster.maybe("first") is None, what="first deleted (finalizer released)")
        await eventually(
            lambda: is_ready(cluster, "second"), timeout=5, what="second applied once first is gone"
        )
        assert config_get(redis_server) == (30 * MB, "allkeys-lru")
        cond = await eventually(
            lambda: ready(cluster, "same").get("reason") == "Conflict" and ready(cluster, "same")
        )
        assert "shop/second" in cond["message"]


async def test_password_comes_from_the_secret(
    cluster: Cluster, run_operator: Any, redis_server: RedisServer
) -> None:
    with redis_server.client() as c:  # (tests.servers waits for an unauthenticated PING: set it afterwards)
        c.config_set("requirepass", "s3cret-pw")
    url = redis_server.url
    spec = {"redis": {"url": url, "passwordSecretRef": {"name": "auth", "key": "pw"}}, "maxMemory": "20mb"}
    async with run_operator():
        await cluster.create("web", spec)
        cond = await eventually(
            lambda: ready(cluster, "web").get("reason") == "SecretUnavailable" and ready(cluster, "web")
        )
        assert "Secret shop/auth" in cond["message"] and "does not exist" in cond["message"]

        await cluster.add_secret("auth", {"pw": "wrong"})
        cond = await eventually(
            lambda: (
                cluster.condition("web", "RedisReachable").get("status") == "False"
                and cluster.condition("web", "RedisReachable")
            )
        )
        assert cond["reason"] == "AuthenticationFailed" and "authentication failed" in cond["message"]
        assert "wrong" not in cond["message"]

        await cluster.kmock.patch(
            "/api/v1/namespaces/shop/secrets/auth",
            json={"data": {"pw": base64.b64encode(b"s3cret-pw").decode()}},
        )
        await eventually(lambda: is_ready(cluster, "web"), timeout=10, what="Ready with the right password")
    with redis_server.client(password="s3cret-pw", decode_responses=True) as c:
        assert c.config_get("maxmemory")["maxmemory"] == str(20 * MB)
    policy = cluster.get("web-policy", resource="v1/configmaps")["data"]["policy.json"]
    assert "s3cret" not in policy


async def test_the_console_script_runs_the_operator_with_liveness_and_json_logs(
    cluster: Cluster, redis_server: RedisServer, tmp_path: Any
) -> None:
    port = free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "MOBIUS_OPERATOR_RECONCILE_INTERVAL": "0.5"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    log = (tmp_path / "operator.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mobius_operator",
            "--all-namespaces",
            "--liveness",
            f"http://127.0.0.1:{port}/healthz",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(timeout=1) as http:

            async def live() -> bool:
                try:
                    return (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(live, timeout=20, what="liveness endpoint")
        await eventually(cluster.watching, timeout=10, what="the operator watching")
        await cluster.create("web", {"redis": {"url": redis_server.url}, "maxMemory": "20mb"})
        await eventually(lambda: is_ready(cluster, "web"), timeout=10, what="Ready via the console script")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    lines = [line for line in (tmp_path / "operator.log").read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and len(records) >= len(lines) - 2, lines[:5]  # structured: (almost) every line is JSON
    assert any("Applied to Redis" in r.get("message", "") for r in records)
    assert code == 0


@pytest.mark.parametrize("argv", [[], ["--namespace", "a", "--all-namespaces"]])
def test_the_console_script_needs_exactly_one_scope(argv: list[str]) -> None:
    from mobius_operator.__main__ import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)
    assert parse_args(["-n", "a", "--namespace", "b"]).namespaces == ["a", "b"]


async def test_a_sentinel_group_is_configured_on_every_node(cluster: Cluster, run_operator: Any) -> None:
    """The operator against a real Sentinel group: the master and both replicas hold the settings, each
    node's state is in the status, and the data-node and Sentinel passwords come from their own Secrets."""
    with sentinel_group(password="data-pw", sentinel_password="sentinel-pw") as group:
        spec = {
            "redis": {
                "url": group.url(),
                "passwordSecretRef": {"name": "redis-auth"},
                "sentinelPasswordSecretRef": {"name": "sentinel-auth", "key": "sentinel-password"},
            },
            "maxMemory": "20mb",
            "evictionPolicy": "allkeys-lfu",
        }
        await cluster.add_secret("redis-auth", {"password": "data-pw"})
        await cluster.add_secret("sentinel-auth", {"sentinel-password": "sentinel-pw"})
        async with run_operator():
            await cluster.create("ha", spec)
            await eventually(lambda: is_ready(cluster, "ha"), timeout=15, what="Ready=True")
        status = cluster.get("ha")["status"]
        master = group.master()
        assert status["nodes"][0] == {
            "address": f"127.0.0.1:{master.port}",
            "role": "master",
            "state": "Applied",
        }
        assert sorted(n["address"] for n in status["nodes"]) == sorted(
            f"127.0.0.1:{n.port}" for n in group.nodes
        )
        assert {(n["role"], n["state"]) for n in status["nodes"][1:]} == {("replica", "Applied")}
        assert status["applied"]["target"].startswith("mymaster@")
        applied = cluster.condition("ha", "ConfigApplied")["message"]
        assert "on 3 nodes (1 master, 2 replicas)" in applied
        for node in group.nodes:
            with group.node_client(node, decode_responses=True) as c:
                assert (c.config_get("maxmemory")["maxmemory"], c.config_get("maxmemory-policy")) == (
                    str(20 * MB),
                    {"maxmemory-policy": "allkeys-lfu"},
                )
