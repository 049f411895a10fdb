"""Redis Cluster: every operation on a local 6-node cluster, and a primary killed during a workload.

The failover test starts its own cluster (it kills a node); the others share the session's cluster."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from mobius_cache import MISS, Cache, CacheUnavailableError
from tests.conftest import make_config
from tests.servers import RedisCluster

pytestmark = pytest.mark.cluster


@pytest.fixture
async def ccache(redis_cluster: RedisCluster) -> AsyncIterator[Cache]:
    cfg = make_config(redis_cluster.url, f"c{uuid.uuid4().hex[:8]}:", redis_min_connections=0)
    async with Cache(cfg, registry=CollectorRegistry()) as c:
        yield c


async def test_operations_on_the_cluster(ccache: Cache) -> None:
    c = ccache
    assert await c.set("project:1:metadata", {"a": 1}) == 3600
    assert await c.get("project:1:metadata") == {"a": 1}
    assert await c.get("project:404:metadata") is MISS
    assert await c.add("other:a", 1) and not await c.add("other:a", 2)
    assert await c.compare_and_set("other:a", 1, 3) and await c.get("other:a") == 3
    assert await c.incr("api:v1:n", 5, ttl=10) == 5
    items = {f"other:{i}": i for i in range(200)}  # spread over all slots
    assert await c.set_many(items) == 200
    assert await c.get_many([*items, "other:none"]) == items
    res = await c.set_raw("api:v1:img", b"\x89PNG", "image/png", if_absent=True)
    assert res.stored
    entry = await c.get_entry("api:v1:img")
    assert entry is not MISS and entry.content_type == "image/png"
    assert await c.exists("other:a") and await c.delete("other:a") == 1
    got = await asyncio.gather(*(c.get(f"other:{i}") for i in range(200)))
    assert got == list(range(200))
    h = await c.health()
    assert h["ok"] and h["role"] == "cluster" and h["primaries"] == 3


async def test_primary_killed_during_a_workload() -> None:
    cluster = RedisCluster().start()
    try:
        cfg = make_config(
            cluster.url, redis_min_connections=0, breaker_reset_timeout=0.5, redis_socket_timeout=1.0
        )
        async with Cache(cfg, registry=CollectorRegistry()) as c:
            await c.set_many({f"other:{i}": i for i in range(500)})
            victim = cluster.primaries()[0]
            errors = ok = 0
            recovered_at = None
            t_kill = time.monotonic()
            victim.kill()
            while time.monotonic() - t_kill < 20:
                t0 = time.monotonic()
                try:
                    for i in range(0, 500, 25):
                        await c.set(f"other:{i}", i)
                    ok += 1
                    if recovered_at is None and t0 - t_kill > 0:
                        recovered_at = time.monotonic() - t_kill
                        break
                except CacheUnavailableError:
                    errors += 1
                    await asyncio.sleep(0.1)
                assert time.monotonic() - t0 < 5, "an operation hung"
            assert recovered_at is not None, "writes never recovered after the failover"
            print(f"\nfailover: writes failed {errors} rounds, recovered after {recovered_at:.1f}s")
            assert recovered_at < 15
            assert await c.get("other:0") in (0, MISS)
    finally:
        cluster.close()
