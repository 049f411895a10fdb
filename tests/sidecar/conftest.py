"""Fixtures of the sidecar tests: real sidecar processes over real redis-server processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.servers import RedisServer
from tests.sidecar.procs import SidecarProcess


@pytest.fixture(scope="session")
def sidecar(shared_redis: RedisServer) -> Iterator[SidecarProcess]:
    """One sidecar for the tests that only read and write (each test uses its own keys, see ``ns``)."""
    proc = SidecarProcess(shared_redis.url).start()
    try:
        yield proc
    finally:
        proc.close()


@pytest.fixture
def ns() -> str:
    """A key prefix of this test's own (a namespace without a strategy: the default TTL applies)."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start_sidecar() -> Iterator[Callable[..., SidecarProcess]]:
    """Start sidecars with custom options; all of them are stopped after the test."""
    started: list[SidecarProcess] = []

    def start(redis_url: str, **kwargs: object) -> SidecarProcess:
        proc = SidecarProcess(redis_url, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.close()
