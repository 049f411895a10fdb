"""Connection handling of ``Cache`` against real redis-server processes: pool, retries, downtime, health,
metrics. Faults are real: the server is killed (SIGKILL), frozen (SIGSTOP) and restarted."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mobius_cache import (
    MISS,
    Cache,
    CacheConfig,
    CacheTimeoutError,
    CacheUnavailableError,
    CircuitOpenError,
    PoolExhaustedError,
)
from tests.conftest import hold_connections, make_config, tiny_pool_config
from tests.servers import RedisServer, free_port


async def _until(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(interval)


async def test_min_connections_are_opened_at_start(
    redis_server: RedisServer, registry: CollectorRegistry
) -> None:
    async with Cache(make_config(redis_server.url, redis_min_connections=5), registry=registry) as c:
        assert c.executor.pool_stats() == {"max": 50, "in_use": 0, "idle": 5}
        clients = redis_server.client().client_list()
        assert len(clients) >= 5 + 1  # ours + the checking client


async def test_start_with_redis_down_does_not_fail(registry: CollectorRegistry) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with Cache(make_config(url), registry=registry) as c:
        t0 = time.perf_counter()
        assert await c.get("other:x") is MISS
        with pytest.raises(CacheUnavailableError):
            await c.set("other:x", 1)
        assert time.perf_counter() - t0 < 2.0


async def test_redis_killed_reads_miss_writes_fail_breaker_opens_and_recovers(
    redis_server: RedisServer, registry: CollectorRegistry
) -> None:
    async with Cache(make_config(redis_server.url), registry=registry) as c:
        await c.set("other:k", "v")
        assert await c.get("other:k") == "v"
        redis_server.kill()

        assert await c.get("other:k") is MISS  # fails open
        assert c.circuit_state == "open"  # one read used up the retry budget and tripped the breaker
        t0 = time.perf_counter()
        for _ in range(100):
            assert await c.get("other:k") is MISS
        assert (time.perf_counter() - t0) / 100 < 0.001  # open circuit: no waiting on Redis
        with pytest.raises(CircuitOpenError) as info:
            await c.set("other:k", "v2")
        assert info.value.retry_after >= 0
        assert c.stats()["namespaces"]["other"]["bypass"] >= 100

        redis_server.start()  # same port, empty data

        async def recovered() -> bool:
            try:
                await c.set("other:k", "v3")
            except CacheUnavailableError:
                return False
            return True

        await _until(recovered, timeout=5)
        assert c.circuit_state == "closed"
        assert await c.get("other:k") == "v3"  # the same client, no restart


async def test_recovery_after_a_restart_does_not_wait_on_stale_connections(
    redis_server: RedisServer, registry: CollectorRegistry
) -> None:
    """Ten warm connections die with the server; one probe after the restart must be enough."""
    cfg = make_config(redis_server.url, redis_min_connections=10, breaker_reset_timeout=0.5)
    async with Cache(cfg, registry=registry) as c:
        assert c.executor.pool_stats()["idle"] == 10
        redis_server.kill()
        assert await c.get("other:x") is MISS
        assert c.circuit_state == "open"
        redis_server.start()
        t0 = time.perf_counter()
        while await c.get("other:x") is MISS and c.circuit_state != "closed":
            assert time.perf_counter() - t0 < 1.5, "recovery waited on stale connections"
            await asyncio.sleep(0.01)
        assert c.circuit_state == "closed"


async def test_an_open_circuit_still_lets_other_tasks_run(
    redis_server: RedisServer, registry: CollectorRegistry
) -> None:
    async with Cache(make_config(redis_server.url, breaker_reset_timeout=60), registry=registry) as c:
        redis_server.kill()
        await c.get("other:x")
        assert c.circuit_state == "open"
        ticks = 0

        async def other_task() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(other_task())
        for _ in range(1000):  # a tight loop that only calls the cache
            await c.get("other:x")
        task.cancel()
        assert ticks > 100


async def test_frozen_redis_is_bounded_by_the_socket_timeout(
    redis_server: RedisServer, registry: CollectorRegistry
) -> None:
    cfg = make_config(redis_server.url, redis_socket_timeout=0.3, breaker_failure_threshold=2)
    async with Cache(cfg, registry=registry) as c:
        await c.set("other:k", "v")
        redis_server.freeze()
        try:
            t0 = time.perf_counter()
            assert await c.get("other:k") is MISS
            assert time.perf_counter() - t0 < 0.3 + 0.25  # one timeout, not retried
            with pytest.raises(CacheTimeoutError):
                await c.set("other:k", "w")
            assert c.circuit_state == "open"
            t0 = time.perf_counter()
            assert await c.get("other:k") is MISS
            assert time.perf_counter() - t0 < 0.01
        finally:
            redis_server.thaw()

        async def healthy() -> bool:
            return bool((await c.health())["ok"])

        await _until(healthy, timeout=5)
        # A timed-out write may still have run once Redis woke up: that is why timeouts are not retried.
        assert await c.get("other:k") in ("v", "w")


async def test_pool_exhaustion_is_a_clear_bounded_error(
    redis_server: RedisServer, registry: CollectorRegistry
) -> None:
    async with Cache(tiny_pool_config(redis_server.url, pool_timeout=0.1), registry=registry) as c:
        # Two slow commands hold both connections; the third waits 0.1 s, then fails clearly.
        blockers = await hold_connections(c, 2, 0.5)
        t0 = time.perf_counter()
        with pytest.raises(PoolExhaustedError, match="2 Redis connections"):
            await c.set("other:k", "v")
        assert 0.08 < time.perf_counter() - t0 < 0.5
        assert c.circuit_state == "closed"  # a busy pool is not a dead Redis
        await asyncio.gather(*blockers)
        await c.set("other:k", "v")  # works afterwards
        assert await c.get("other:k") == "v"
        assert c.executor.pool_stats()["in_use"] == 0


async def test_retry_rides_over_a_quick_restart(
    redis_server: RedisServer, registry: CollectorRegistry
) -> None:
    cfg = make_config(redis_server.url, retry_attempts=5, retry_backoff=0.05, breaker_failure_threshold=10)
    async with Cache(cfg, registry=registry) as c:
        await c.set("other:a", 1)
        redis_server.restart()  # idle pooled connections are now dead
        # The first use of a dead connection fails; the retry opens a new one.
        await c.set("other:a", 2)
        assert await c.get("other:a") == 2


async def test_health_reports_redis_pool_and_circuit(
    redis_server: RedisServer, registry: CollectorRegistry
) -> None:
    async with Cache(make_config(redis_server.url), registry=registry) as c:
        await c.set("other:h", "x")
        h = await c.health()
        assert h["ok"] is True
        assert 0 < h["ping_ms"] < 50
        assert h["used_memory"] > 0
        assert h["maxmemory"] == 64 * 1024 * 1024
        assert h["policy"] == "allkeys-lru"
        assert h["version"].startswith(("6.", "7.", "8."))
        assert h["role"] == "master"
        assert h["keys"] >= 1
        assert h["pool"]["max"] == 50
        assert h["circuit"] == "closed"
        redis_server.kill()
        h = await c.health()
        assert h["ok"] is False and "error" in h


async def test_metrics_move_with_operations(redis_server: RedisServer) -> None:
    registry = CollectorRegistry()
    async with Cache(make_config(redis_server.url, slow_op_threshold_ms=0), registry=registry) as c:
        await c.set("user:1:session", {"u": 1})
        await c.get("user:1:session")
        await c.get("user:2:session")
        await c.get("nsx:1")
        await c.invalidate("user:1:session")
        await c.health()
        text = generate_latest(registry).decode()

    def value(name: str, labels: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{" + labels + "}") or (not labels and line.startswith(name + " ")):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name}{{{labels}}} not in\n{text}")

    assert value("mobius_cache_requests_total", 'namespace="user",op="get",result="hit"') == 1
    assert value("mobius_cache_requests_total", 'namespace="user",op="get",result="miss"') == 1
    assert value("mobius_cache_requests_total", 'namespace="other",op="get",result="miss"') == 1
    assert value("mobius_cache_requests_total", 'namespace="user",op="set",result="ok"') == 1
    assert value("mobius_cache_operation_duration_seconds_count", 'op="get"') == 3
    assert value("mobius_cache_invalidations_total", 'kind="key"') == 1
    assert value("mobius_cache_slow_operations_total", 'op="get"') == 3  # threshold 0: every op is slow
    assert value("mobius_cache_circuit_state", "") == 0
    assert value("mobius_cache_pool_connections", 'state="idle"') >= 1
    assert value("mobius_cache_redis_memory_max_bytes", "") == 64 * 1024 * 1024
    assert value("mobius_cache_redis_memory_used_bytes", "") > 0


async def test_metrics_of_a_closed_cache_leave_the_registry(redis_server: RedisServer) -> None:
    registry = CollectorRegistry()
    c = Cache(make_config(redis_server.url), registry=registry)
    await c.start()
    await c.get("other:x")
    await c.close()
    assert 'op="get"' not in generate_latest(registry).decode()


async def test_slow_operations_are_logged(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with Cache(
        make_config(redis_server.url, slow_op_threshold_ms=0), registry=CollectorRegistry()
    ) as c:
        with caplog.at_level("WARNING", logger="mobius_cache"):
            await c.set("other:slow", 1)
    record = next(r for r in caplog.records if r.getMessage() == "slow cache operation")
    assert record.op == "set" and record.key == "other:slow"  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]


async def test_from_env(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    monkeypatch.setenv("MOBIUS_REDIS_URL", redis_server.url)
    monkeypatch.setenv("MOBIUS_DEFAULT_TTL", "77")
    monkeypatch.setenv("MOBIUS_CACHE_PREFIX", "envp:")
    async with Cache.from_env(registry=CollectorRegistry()) as c:
        assert await c.set("other:e", 1) == 77
    assert redis_server.client().exists("envp:other:e")


async def test_password_from_config(registry: CollectorRegistry) -> None:
    server = RedisServer(extra_args=["--requirepass", "s3cret"]).start()
    try:
        async with Cache(make_config(server.url, redis_password="s3cret"), registry=registry) as c:
            await c.set("other:p", 1)
            assert await c.get("other:p") == 1
        async with Cache(make_config(server.url, redis_min_connections=0), registry=CollectorRegistry()) as c:
            with pytest.raises(Exception, match=r"(?i)auth"):
                await c.set("other:p", 1)
    finally:
        server.close()


def test_config_rejects_bad_settings() -> None:
    from pydantic import ValidationError

    for bad in (
        {"max_memory": "lots"},
        {"eviction_policy": "sometimes"},
        {"default_ttl": 0},
        {"default_ttl": 100, "max_ttl": 10},
        {"redis_url": "http://x"},
        {"redis_min_connections": 60},
        {"cache_prefix": "has space"},
    ):
        with pytest.raises(ValidationError):
            CacheConfig(**bad)  # type: ignore[arg-type]


async def test_failure_series_start_at_zero(redis_server: RedisServer) -> None:
    """Error, bypass and slow-op counters exist (at 0) as soon as their operation does: panels show 0, not
    "no data", and rate() sees the first failure."""
    registry = CollectorRegistry()
    async with Cache(make_config(redis_server.url), registry=registry) as c:
        await c.set("user:1:session", {"u": 1})
        await c.get("user:1:session")
        text = generate_latest(registry).decode()
    for line in (
        'mobius_cache_requests_total{namespace="user",op="get",result="error"} 0.0',
        'mobius_cache_requests_total{namespace="user",op="get",result="bypass"} 0.0',
        'mobius_cache_requests_total{namespace="user",op="set",result="error"} 0.0',
        'mobius_cache_slow_operations_total{op="get"} 0.0',
        'mobius_cache_slow_operations_total{op="set"} 0.0',
    ):
        assert line in text, f"{line} not in\n{text}"
    assert 'op="set",result="bypass"' not in text  # writes never bypass: they fail
