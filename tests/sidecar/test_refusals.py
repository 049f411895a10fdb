"""Redis refusals over HTTP (issue 16): each has its own status and code, Retry-After where a retry helps, one
log line naming the command and Redis's error, a place in /readyz — and a refused write stores nothing."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import httpx
import pytest
import redis

from mobius_cache import (
    CacheConflictError,
    CacheError,
    CacheUnavailableError,
    IndexCorruptedError,
    RedisBusyError,
    RedisLoadingError,
    RedisMasterDownError,
    RedisNoPermissionError,
    RedisOutOfMemoryError,
    RedisReadOnlyError,
    RedisRefusedError,
    RedisScriptMissingError,
)
from mobius_cache.server.errors import error_for
from tests.servers import HOST, RedisServer
from tests.sidecar.procs import SidecarProcess
from tests.test_partial_writes import all_or_nothing, make_full

PREFIX = "mobius:"  # the sidecar's default


def _error(resp: httpx.Response) -> tuple[int, str, str | None]:
    return resp.status_code, resp.json()["error"], resp.headers.get("retry-after")


def test_permission_and_memory_refusals(
    redis_server: RedisServer, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    raw = redis_server.client()
    raw.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-time")
    raw.set(f"{PREFIX}search:old:results:1", b"v1")  # an earlier value with its tag, written by an admin
    raw.zadd(f"{PREFIX}~tag:t", {f"{PREFIX}search:old:results:1": time.time() * 1000 + 600_000})
    proc = start_sidecar(f"redis://app:pw@{HOST}:{redis_server.port}/0")
    with proc.http() as http:
        tagged = http.put("/v1/cache/search:q:results:1", params={"tag": "t"}, content=b"v")
        assert _error(tagged) == (502, "redis_no_permission", None)
        assert "may not run TIME" in tagged.json()["detail"]
        dependent = http.put("/v1/cache/search:d:results:1", params={"depends_on": "x:1"}, content=b"v")
        assert _error(dependent) == (502, "redis_no_permission", None)
        assert http.get("/v1/cache/search:q:results:1").status_code == 404
        assert not all_or_nothing(raw, PREFIX, "search:q:results:1", ["t"])
        assert not all_or_nothing(raw, PREFIX, "search:d:results:1", parents=["x:1"])
        assert http.put("/v1/cache/search:plain:results:1", content=b"v").status_code == 204

        redis_state = http.get("/readyz").json()["redis"]
        assert redis_state["up"] is True and redis_state["circuit"] == "closed"
        assert redis_state["refused"]["code"] == "NOPERM"
        assert redis_state["refused"]["command"].endswith("set_indexed")
        assert http.get("/v1/stats").json()["refusals"] == {"NOPERM": 2}
        lines = [line for line in proc.log().splitlines() if "Redis refused" in line]
        assert len(lines) == 1 and "set_indexed" in lines[0] and "NOPERM" in lines[0], (
            lines
        )  # once, not per request

        # The same user invalidates the earlier value: nothing stale.
        assert http.post("/v1/invalidate", json={"tags": ["t"]}).json()["deleted"] == 1
        assert raw.exists(f"{PREFIX}search:old:results:1", f"{PREFIX}~tag:t") == 0

        make_full(raw)
        for resp in (
            http.put("/v1/cache/search:q:results:1", params={"tag": "t"}, content=b"v"),
            http.put("/v1/cache/search:plain:results:1", content=b"w"),
            http.post("/v1/cache/api:v1:n/incr", json={"by": 1}),
        ):
            assert _error(resp) == (507, "redis_out_of_memory", "1"), resp.text
        assert http.get("/v1/cache/search:plain:results:1").content == b"v"  # reads still work
        assert http.delete("/v1/cache/search:plain:results:1").json()["deleted"] == 1  # and deletes
        assert not all_or_nothing(raw, PREFIX, "search:q:results:1", ["t"])
        assert http.get("/readyz").json()["redis"]["refused"]["code"] == "OOM"
    raw.close()


def test_replica_as_target(redis_server: RedisServer, start_sidecar: Callable[..., SidecarProcess]) -> None:
    replica = RedisServer(extra_args=["--replicaof", HOST, str(redis_server.port)]).start()
    try:
        proc = start_sidecar(replica.url, env={"MOBIUS_BREAKER_RESET_TIMEOUT": "30"})
        with proc.http() as http:
            redis_state = http.get("/readyz").json()["redis"]
            assert redis_state["up"] is False and "read-only replica" in redis_state["error"]
            resp = http.put("/v1/cache/search:q:results:1", params={"tag": "t"}, content=b"v")
            assert _error(resp) == (503, "redis_read_only", "1")
            assert "read-only replica" in resp.json()["detail"]
            gone = http.delete("/v1/cache/search:old:results:1")
            assert gone.status_code == 202 and gone.json()["queued"] == 1  # owed, not dropped
            redis_state = http.get("/readyz").json()["redis"]
            assert redis_state["circuit"] == "open" and redis_state["refused"]["code"] == "READONLY"
        with redis_server.client() as master:
            assert not all_or_nothing(master, PREFIX, "search:q:results:1", ["t"])
    finally:
        replica.close()


def test_corrupted_index_script_flush_and_busy(
    redis_server: RedisServer, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    raw = redis_server.client()
    proc = start_sidecar(redis_server.url)
    with proc.http() as http:
        raw.set(f"{PREFIX}~tag:bad", "junk")
        resp = http.put("/v1/cache/search:q:results:1", params={"tag": ["good", "bad"]}, content=b"v")
        assert _error(resp) == (500, "index_corrupted", None)
        assert "~tag:bad" in resp.json()["detail"]
        assert not all_or_nothing(raw, PREFIX, "search:q:results:1", ["good"])
        assert http.post("/v1/invalidate", json={"tags": ["bad"]}).json()["deleted"] == 0
        for _ in range(2):  # the script cache flushed between calls: reloaded, never seen by the client
            raw.script_flush()
            resp = http.put("/v1/cache/search:q:results:1", params={"tag": ["good", "bad"]}, content=b"v")
            assert resp.status_code == 204, resp.text
        assert all_or_nothing(raw, PREFIX, "search:q:results:1", ["good", "bad"])

        raw.config_set("busy-reply-threshold", 50)
        errors: list[BaseException] = []

        def endless() -> None:
            with redis_server.client() as runner:
                try:
                    runner.eval("local i = 0 while true do i = i + 1 end", 0)
                except redis.exceptions.ResponseError as exc:
                    errors.append(exc)

        thread = threading.Thread(target=endless)
        thread.start()
        try:
            deadline = time.monotonic() + 5
            while True:
                resp = http.put("/v1/cache/search:b:results:1", params={"tag": "good"}, content=b"v")
                if resp.status_code != 204:
                    break
                assert time.monotonic() < deadline, "Redis never answered BUSY"
            assert _error(resp) == (503, "redis_busy", "1"), resp.text
        finally:
            while thread.is_alive():
                with contextlib.suppress(redis.exceptions.RedisError), redis_server.client() as killer:
                    killer.script_kill()  # NOTBUSY once the script is gone
                thread.join(0.1)
        assert errors and "killed" in str(errors[0])
    raw.close()


@pytest.mark.parametrize(
    ("exc", "status", "code", "retry_after"),
    [
        (RedisLoadingError("x"), 503, "redis_loading", "1"),
        (RedisBusyError("x"), 503, "redis_busy", "1"),
        (RedisMasterDownError("x"), 503, "redis_master_down", "1"),
        (RedisReadOnlyError("x"), 503, "redis_read_only", "1"),
        (RedisScriptMissingError("x"), 503, "redis_noscript", "1"),
        (RedisRefusedError("x", redis_code="MISCONF", retry_after=1), 503, "redis_misconf", "1"),
        (RedisRefusedError("x", redis_code="NOREPLICAS", retry_after=1), 503, "redis_no_replicas", "1"),
        (RedisOutOfMemoryError("x"), 507, "redis_out_of_memory", "1"),
        (RedisNoPermissionError("x"), 502, "redis_no_permission", None),
        (IndexCorruptedError("x"), 500, "index_corrupted", None),
        (RedisRefusedError("x", redis_code="ERR"), 502, "redis_error", None),
        (CacheConflictError("x"), 409, "cache_conflict", None),
        (CacheUnavailableError("x"), 503, "cache_unavailable", "1"),
    ],
)
def test_the_error_table(exc: CacheError, status: int, code: str, retry_after: str | None) -> None:
    err = error_for(exc)
    assert (err.status, err.code, err.headers.get("Retry-After")) == (status, code, retry_after)


def test_keys_cannot_take_the_place_of_an_index(sidecar: SidecarProcess) -> None:
    with sidecar.http() as http:
        assert http.put("/v1/cache/~tag:t", content=b"v").status_code == 422
        resp = http.get("/v1/cache/~tag:t")
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_key"
        assert http.put("/v1/cache/api:v1:x", params={"tag": "~t"}, content=b"v").status_code == 204
