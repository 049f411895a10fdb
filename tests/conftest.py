"""Shared fixtures: real redis-server processes on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import RedisCluster, RedisServer


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
