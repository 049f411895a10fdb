"""Implicit pipelining: concurrent commands share one write; correctness is per command and in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mobius_cache import MISS, Cache, CacheConflictError, CacheUnavailableError
from tests.conftest import make_config
from tests.servers import RedisCluster, RedisServer


async def test_concurrent_commands_are_coalesced(cache: Cache) -> None:
    await cache.set_many({f"other:{i}": i for i in range(200)})
    before = cache.executor.batches  # type: ignore[attr-defined]
    got = await asyncio.gather(*(cache.get(f"other:{i}") for i in range(200)))
    assert got == list(range(200))  # every caller gets its own reply
    batches = cache.executor.batches - before  # type: ignore[attr-defined]
    assert 1 <= batches <= 5, batches  # 200 commands, a handful of writes


async def test_sequential_commands_do_not_wait_for_a_tick(cache: Cache) -> None:
    before = cache.executor.batches  # type: ignore[attr-defined]
    for i in range(50):
        await cache.set(f"other:s{i}", i)
        assert await cache.get(f"other:s{i}") == i
    assert cache.executor.batches == before  # type: ignore[attr-defined]  # lone callers go direct


async def test_a_redis_error_fails_only_its_own_command(cache: Cache) -> None:
    await cache.set("api:v1:text", "not a number")
    await cache.set("other:ok", 1)
    results = await asyncio.gather(
        cache.get("other:ok"),
        cache.incr("api:v1:text"),
        cache.incr("api:v1:count"),
        cache.get("other:ok"),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[3] == 1
    assert isinstance(results[1], CacheConflictError)
    assert results[2] == 1


async def test_order_is_kept_within_a_pipeline(cache: Cache) -> None:
    # Issued in one tick while another command is in flight: all go into the same pipeline, in order.
    blocker = asyncio.ensure_future(cache.get("other:any"))
    ops = [cache.incr("api:v1:seq") for _ in range(100)]
    values = await asyncio.gather(*ops)
    await blocker
    assert values == list(range(1, 101))


async def test_cancelled_callers_do_not_break_the_connection(cache: Cache) -> None:
    await cache.set("other:c", "v")
    tasks = [asyncio.ensure_future(cache.get("other:c")) for _ in range(100)]
    for t in tasks[::3]:
        t.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(r == "v" or isinstance(r, asyncio.CancelledError) for r in results)
    assert await cache.get("other:c") == "v"
    assert await asyncio.gather(*(cache.get("other:c") for _ in range(50))) == ["v"] * 50


async def test_connection_loss_fails_the_commands_in_flight_only(redis_server: RedisServer) -> None:
    async with Cache(
        make_config(redis_server.url, breaker_reset_timeout=0.2), registry=CollectorRegistry()
    ) as c:
        await c.set("other:k", 1)
        redis_server.kill()
        results = await asyncio.gather(*(c.set(f"other:{i}", i) for i in range(100)), return_exceptions=True)
        assert all(isinstance(r, CacheUnavailableError) for r in results)
        redis_server.start()
        for _ in range(200):
            try:
                await c.set("other:k", 2)
                break
            except CacheUnavailableError:
                await asyncio.sleep(0.02)
        got = await asyncio.gather(*(c.get("other:k") for _ in range(100)))
        assert got == [2] * 100


async def test_pipelining_can_be_turned_off(redis_server: RedisServer) -> None:
    async with Cache(make_config(redis_server.url, autopipeline=False), registry=CollectorRegistry()) as c:
        await asyncio.gather(*(c.set(f"other:{i}", i) for i in range(50)))
        assert c.executor.batches == 0  # type: ignore[attr-defined]
        assert await c.get("other:7") == 7


@pytest.mark.parametrize("n", [1, 511, 512, 513, 2000])
async def test_batches_larger_than_the_cap_are_split(cache: Cache, n: int) -> None:
    blocker = asyncio.ensure_future(cache.get("other:x"))
    got = await asyncio.gather(*(cache.get(f"other:none{i}") for i in range(n)))
    await blocker
    assert got == [MISS] * n


async def test_cluster_pipelines_route_each_command_by_slot(redis_cluster: Any) -> None:
    cfg = make_config(redis_cluster.url, "cp:", redis_min_connections=0)
    async with Cache(cfg, registry=CollectorRegistry()) as c:
        keys = [f"other:{i}" for i in range(300)]  # spread over every primary
        await c.set_many({k: i for i, k in enumerate(keys)})
        before = c.executor.batches  # type: ignore[attr-defined]
        got = await asyncio.gather(*(c.get(k) for k in keys))
        assert got == list(range(300))
        assert 1 <= c.executor.batches - before <= 5  # type: ignore[attr-defined]
        await c.set("api:v1:text", "not a number")
        results = await asyncio.gather(
            c.get(keys[0]), c.incr("api:v1:text"), c.incr("api:v1:n"), c.get(keys[1]), return_exceptions=True
        )
        assert results[0] == 0 and results[3] == 1
        assert isinstance(results[1], CacheConflictError) and results[2] == 1


async def test_writes_and_reads_issued_in_one_tick_keep_their_order(cache: Cache) -> None:
    blocker = asyncio.ensure_future(cache.get("other:any"))  # in flight: what follows is pipelined
    results = await asyncio.gather(
        cache.set("other:o", "a"),
        cache.get("other:o"),
        cache.set("other:o", "b"),
        cache.get("other:o"),
        cache.delete("other:o"),
        cache.get("other:o"),
    )
    await blocker
    assert results[1] == "a" and results[3] == "b" and results[5] is MISS


@pytest.mark.cluster
async def test_cluster_routes_concurrent_commands_per_slot(redis_cluster: RedisCluster) -> None:
    async with Cache(make_config(redis_cluster.url), registry=CollectorRegistry()) as c:
        keys = [f"other:{i}" for i in range(300)]
        await asyncio.gather(*(c.set(k, k) for k in keys))
        assert await asyncio.gather(*(c.get(k) for k in keys)) == keys
        holding = []
        for node in redis_cluster.primaries():
            with node.client() as r:
                holding.append(
                    sum(
                        r.exists(f"mobius:{k}")
                        for k in keys
                        if r.cluster("keyslot", f"mobius:{k}") in _slots(r)
                    )
                )
        assert (
            sum(holding) == 300 and sum(1 for n in holding if n) >= 2
        )  # spread over the primaries, none lost


def _slots(r: Any) -> set[int]:
    """The slots this primary owns (from CLUSTER SLOTS)."""
    me = r.connection_pool.connection_kwargs["port"]
    owned: set[int] = set()
    for start, end, primary, *_ in r.execute_command("CLUSTER SLOTS"):
        if int(primary[1]) == me:
            owned.update(range(int(start), int(end) + 1))
    return owned


async def test_set_many_with_tags_is_one_write(cache: Cache) -> None:
    before = cache.executor.batches  # type: ignore[attr-defined]
    items = [(f"other:tg{i}", i, 60, ["many"]) for i in range(50)]
    assert await cache.set_many(items) == 50
    # 50 scripts in at most 3 writes: the first goes direct, the rest as one pipeline, plus one more when Redis
    # had not loaded the script yet (NOSCRIPT, then EVAL) — not 50 round trips.
    assert cache.executor.batches - before <= 3  # type: ignore[attr-defined]
    assert await cache.invalidate_tags("many") == 50
