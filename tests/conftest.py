"""Shared fixtures: real redis-server processes on free loopback ports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mobius_cache import Cache, CacheConfig
from tests.servers import (
    GROUP_PASSWORD,
    GROUP_SENTINEL_PASSWORD,
    RedisCluster,
    RedisServer,
    SentinelGroup,
    sentinel_group,
)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh standalone redis-server for one test (it may be killed, frozen or restarted)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    """One redis-server for the tests that only read and write (each test uses its own key prefix)."""
    server = RedisServer(maxmemory="256mb").start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A local 6-node Redis Cluster, shared by the cluster tests of one session (~2 s to start)."""
    cluster = RedisCluster().start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def auth_sentinel_group() -> Iterator[SentinelGroup]:
    """A Sentinel group (master, 2 replicas, 3 Sentinels) whose data nodes and Sentinels require different
    passwords, shared by the tests that neither kill its nodes nor leave them changed (~2 s to start)."""
    with sentinel_group(password=GROUP_PASSWORD, sentinel_password=GROUP_SENTINEL_PASSWORD) as group:
        yield group


@pytest.fixture
def registry() -> CollectorRegistry:
    """A private metrics registry, so each test sees only its own cache's metrics."""
    return CollectorRegistry()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to the test, so tests sharing one Redis never see each other's keys."""
    return f"t{uuid.uuid4().hex[:8]}:"


def make_config(url: str, prefix: str = "mobius:", **overrides: object) -> CacheConfig:
    """A test configuration: small retry delays and a quick breaker, so fault tests stay fast."""
    values: dict[str, object] = {
        "redis_url": url,
        "cache_prefix": prefix,
        "redis_min_connections": 2,
        "redis_socket_timeout": 1.0,
        "redis_socket_connect_timeout": 0.5,
        "breaker_reset_timeout": 0.3,
        "retry_backoff": 0.01,
        "slow_op_threshold_ms": 1000,
    }
    values.update(overrides)
    return CacheConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def cache(shared_redis: RedisServer, prefix: str, registry: CollectorRegistry) -> AsyncIterator[Cache]:
    """A started ``Cache`` on the shared Redis, with its own prefix and registry."""
    async with Cache(make_config(shared_redis.url, prefix), registry=registry) as c:
        yield c


def tiny_pool_config(url: str, pool_timeout: float) -> CacheConfig:
    """Two connections, no pipelining, a short wait for a free one: for pool-exhaustion tests."""
    return make_config(
        url,
        redis_max_connections=2,
        redis_min_connections=0,
        pool_timeout=pool_timeout,
        autopipeline=False,
        redis_socket_timeout=3.0,
    )


async def hold_connections(cache: Cache, n: int, seconds: float) -> list[asyncio.Future[Any]]:
    """Occupy ``n`` pooled connections with server-side BLPOPs for ``seconds``; await the result to release."""
    holds = [
        asyncio.ensure_future(cache._exec("BLPOP", f"{cache.keys.prefix}never", seconds)) for _ in range(n)
    ]
    await asyncio.sleep(0.05)
    return holds
