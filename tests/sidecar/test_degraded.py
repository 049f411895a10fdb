"""Degraded mode: Redis goes away and comes back; the sidecar keeps answering, fast, and recovers by itself."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.servers import RedisServer, free_port
from tests.sidecar.procs import SidecarProcess


def _poll(what: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.05)
    raise AssertionError(message)


def test_redis_down_then_back(
    redis_server: RedisServer, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    # The default 10 warm connections: all die with the server; the first broken one makes the pool drop the
    # rest, so the breaker's probe connects afresh and recovery takes one reset timeout.
    proc = start_sidecar(redis_server.url)
    with proc.http() as http:
        assert http.put("/v1/cache/api:v1:d", content=b"v").status_code == 204
        redis_server.kill()

        # Reads fail open at once; after a few failures the breaker opens.
        def bypassing() -> bool:
            resp = http.get("/v1/cache/api:v1:d")
            assert resp.status_code == 404, resp.text
            return (
                resp.headers["x-cache"] == "bypass"
                and http.get("/readyz").json()["redis"]["circuit"] == "open"
            )

        _poll(bypassing, 10, "the breaker never opened")
        timings = []
        for _ in range(20):
            t0 = time.perf_counter()
            resp = http.get("/v1/cache/api:v1:d")
            timings.append(time.perf_counter() - t0)
            assert resp.status_code == 404 and resp.headers["x-cache"] == "bypass"
        assert max(timings) < 0.05, f"bypass reads took up to {max(timings) * 1000:.1f} ms"

        put = http.put("/v1/cache/api:v1:d", content=b"w")
        assert put.status_code == 503 and put.json()["error"] == "cache_unavailable"
        assert int(put.headers["retry-after"]) >= 1
        batch = http.post("/v1/batch/get", json={"keys": ["api:v1:d"]})
        assert batch.status_code == 200 and batch.json()["misses"] == ["api:v1:d"]

        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["redis"]["up"] is False
        assert http.get("/healthz").status_code == 200
        stats = http.get("/v1/stats")
        assert stats.status_code == 200 and stats.json()["redis"]["up"] is False

        redis_server.start()  # same port, empty

        def recovered() -> bool:
            return http.put("/v1/cache/api:v1:d", content=b"back").status_code == 204

        _poll(recovered, 15, "writes did not recover after Redis came back")
        hit = http.get("/v1/cache/api:v1:d")
        assert hit.status_code == 200 and hit.content == b"back" and hit.headers["x-cache"] == "hit"
        _poll(
            lambda: http.get("/readyz").json()["redis"]["up"] is True, 10, "readyz still reports Redis down"
        )


def test_starts_while_redis_is_down(start_sidecar: Callable[..., SidecarProcess]) -> None:
    dead = RedisServer()
    dead.port = free_port()  # nothing listens there yet
    proc = start_sidecar(dead.url)
    with proc.http() as http:
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["redis"]["up"] is False
        resp = http.get("/v1/cache/x")
        assert resp.status_code == 404 and resp.headers["x-cache"] == "bypass"
        assert http.put("/v1/cache/x", content=b"1").status_code == 503
        dead.start()
        try:
            _poll(lambda: http.put("/v1/cache/x", content=b"1").status_code == 204, 15, "no recovery")
        finally:
            dead.close()


def test_frozen_redis_answers_within_bounds(
    redis_server: RedisServer, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    """A hung Redis (SIGSTOP) must not hang requests: socket timeouts bound them, then the breaker opens."""
    proc = start_sidecar(
        redis_server.url, env={"MOBIUS_REDIS_SOCKET_TIMEOUT": "0.2", "MOBIUS_RETRY_ATTEMPTS": "0"}
    )
    with proc.http() as http:
        http.put("/v1/cache/f", content=b"x")
        redis_server.freeze()
        try:
            for _ in range(6):
                t0 = time.perf_counter()
                resp = http.get("/v1/cache/f")
                assert resp.status_code == 404 and resp.headers["x-cache"] == "bypass"
                assert time.perf_counter() - t0 < 1.5
            ready = http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["redis"]["up"] is False
        finally:
            redis_server.thaw()
        _poll(lambda: http.get("/v1/cache/f").status_code == 200, 15, "no recovery after thaw")


def test_two_sidecars_share_writes_and_invalidations(
    sidecar: SidecarProcess, shared_redis: RedisServer, start_sidecar: Callable[..., SidecarProcess], ns: str
) -> None:
    a = sidecar
    b = start_sidecar(shared_redis.url)
    with a.client() as ca, b.client() as cb:
        ca.put(f"{ns}:shared", b"from-a", content_type="text/plain", tags=["tg"])
        hit = cb.get(f"{ns}:shared")
        assert hit is not None and hit.data == b"from-a" and hit.content_type == "text/plain"
        cb.put(f"{ns}:shared", b"from-b", content_type="text/plain", tags=["tg"])
        assert (ca.get(f"{ns}:shared") or hit).data == b"from-b"
        assert ca.invalidate(tags=["tg"]) == 1
        assert cb.get(f"{ns}:shared") is None
        cb.put(f"{ns}:other", b"x")
        assert ca.delete(f"{ns}:other") == 1
        assert cb.get(f"{ns}:other") is None
    assert isinstance(httpx.get(f"{a.url}/healthz").json(), dict)
