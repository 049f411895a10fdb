"""The operator's Redis administration against real redis-server processes: set, verify, and fail clearly."""

from __future__ import annotations

import time

import pytest

from mobius_operator.reconcile import DesiredSettings, RedisTarget
from mobius_operator.redis_admin import RedisAuthError, RedisRefusedError, RedisUnreachableError, ensure
from tests.servers import HOST, RedisCluster, RedisServer, free_port

MB = 1024 * 1024
WANT = DesiredSettings(maxmemory=20 * MB, maxmemory_policy="allkeys-lfu")


def settings(server: RedisServer) -> dict[str, str]:
    with server.client(decode_responses=True) as c:
        return {name: c.config_get(name)[name] for name in ("maxmemory", "maxmemory-policy")}


def target(port: int) -> RedisTarget:
    return RedisTarget(host=HOST, port=port)


async def test_ensure_sets_what_drifted_and_is_idempotent(redis_server: RedisServer) -> None:
    with redis_server.client() as c:
        c.set("k", "v")
        c.get("k")
    first = await ensure(target(redis_server.port), None, WANT, timeout=2)
    assert first.corrected == {
        "maxmemory": (str(64 * MB), str(20 * MB)),
        "maxmemory-policy": ("allkeys-lru", "allkeys-lfu"),
    }
    assert first.stats.max_memory == 20 * MB and first.stats.keys == 1 and first.stats.keyspace_hits == 1
    again = await ensure(target(redis_server.port), None, WANT, timeout=2)
    assert again.corrected == {}


async def test_nothing_listening_fails_fast_and_names_the_server() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(RedisUnreachableError, match=f"cannot reach Redis {HOST}:{port}"):
        await ensure(target(port), None, WANT, timeout=2)
    assert time.monotonic() - started < 1.0  # refused at once, no client-side retries


async def test_a_hung_redis_fails_within_the_timeout(redis_server: RedisServer) -> None:
    redis_server.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnreachableError, match="Timeout"):
            await ensure(target(redis_server.port), None, WANT, timeout=0.3)
        assert time.monotonic() - started < 2.0
    finally:
        redis_server.thaw()


async def test_wrong_or_missing_password(redis_server: RedisServer) -> None:
    with redis_server.client() as c:
        c.config_set("requirepass", "pw")
    for password in (None, "nope"):
        with pytest.raises(RedisAuthError, match="authentication failed"):
            await ensure(target(redis_server.port), password, WANT, timeout=2)
    assert (await ensure(target(redis_server.port), "pw", WANT, timeout=2)).stats.max_memory == 20 * MB


async def test_config_disabled_is_a_refusal_not_an_outage() -> None:
    server = RedisServer(extra_args=["--rename-command", "CONFIG", ""]).start()
    try:
        with pytest.raises(RedisRefusedError, match="refused the command"):
            await ensure(target(server.port), None, WANT, timeout=2)
    finally:
        server.close()


async def test_a_value_redis_rejects_is_a_refusal(redis_server: RedisServer) -> None:
    bad = DesiredSettings(maxmemory=20 * MB, maxmemory_policy="not-a-policy")
    with pytest.raises(RedisRefusedError, match="refused the command"):
        await ensure(target(redis_server.port), None, bad, timeout=2)


@pytest.mark.cluster
async def test_a_cluster_gets_the_settings_on_every_node(redis_cluster: RedisCluster) -> None:
    seed = redis_cluster.nodes[0]
    before = {n.port: settings(n) for n in redis_cluster.nodes}
    try:
        cluster_target = RedisTarget(host=HOST, port=seed.port, cluster=True)
        seen = await ensure(cluster_target, None, WANT, timeout=2)
        assert len({k.split()[0] for k in seen.corrected}) == 6  # every node was corrected
        for node in redis_cluster.nodes:
            assert settings(node) == {"maxmemory": str(20 * MB), "maxmemory-policy": "allkeys-lfu"}
        assert seen.stats.max_memory == 20 * MB
        assert (await ensure(cluster_target, None, WANT, timeout=2)).corrected == {}
    finally:  # the cluster is shared by the session: leave it as it was
        for node in redis_cluster.nodes:
            with node.client() as c:
                for name, value in before[node.port].items():
                    c.config_set(name, value)
