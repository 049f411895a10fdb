"""Near cache coherence across real sidecar processes on one real Redis.

Every change — through any sidecar, by a plain Redis client, by Redis itself (expiry, eviction, a restart), or a
lost tracking connection — must reach every sidecar: once the change is acknowledged and its invalidation
delivered, no instance serves the old value. Each test primes the readers (their GETs answer ``hit-near``),
makes the change, polls every instance until the new answer arrives (with a deadline) and then checks that
it stays. The writer itself answers the new value at once.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mobius_cache.server.client import SidecarClient
from tests.proxy import tcp_proxy
from tests.servers import RedisServer
from tests.sidecar.procs import SidecarProcess

GONE = (404, None)


def answer(proc: SidecarProcess, key: str) -> tuple[int, bytes | None]:
    resp = httpx.get(f"{proc.url}/v1/cache/{key}", timeout=5)
    return resp.status_code, resp.content if resp.status_code == 200 else None


def x_cache(proc: SidecarProcess, key: str) -> str:
    return httpx.get(f"{proc.url}/v1/cache/{key}", timeout=5).headers["x-cache"]


def prime(proc: SidecarProcess, key: str) -> None:
    """Read until the near cache answers (a fill is refused while an invalidation of the key is in flight,
    e.g. the one of the PUT that just stored it, so this can take more than two reads on a busy machine)."""
    for _ in range(20):
        if x_cache(proc, key) == "hit-near":
            return
        time.sleep(0.005)
    raise AssertionError(f"{key} never became a near hit on {proc.url}: {near_stats(proc)}")


def converge(
    procs: list[SidecarProcess], key: str, want: tuple[int, bytes | None], timeout: float = 2.0
) -> float:
    """Poll every instance until it answers ``want``, then check it keeps answering it; the slowest wait."""
    slowest = 0.0
    for proc in procs:
        t0 = time.monotonic()
        while (got := answer(proc, key)) != want:
            assert time.monotonic() - t0 < timeout, f"{proc.url} still answers {got} for {key}, wanted {want}"
            time.sleep(0.002)
        slowest = max(slowest, time.monotonic() - t0)
    for _ in range(5):
        for proc in procs:
            assert answer(proc, key) == want
    return slowest


def near_stats(proc: SidecarProcess) -> dict[str, Any]:
    return dict(httpx.get(f"{proc.url}/v1/stats", timeout=5).json()["near"])


def wait_live(proc: SidecarProcess, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not near_stats(proc).get("live"):
        assert time.monotonic() < deadline, f"tracking never established on {proc.url}: {near_stats(proc)}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def trio(shared_redis: RedisServer) -> Iterator[list[SidecarProcess]]:
    """Three sidecars on one Redis: the first writes, all three read."""
    procs = [SidecarProcess(shared_redis.url).start() for _ in range(3)]
    try:
        for proc in procs:
            wait_live(proc)
        yield procs
    finally:
        for proc in procs:
            proc.close()


def test_a_near_hit_is_the_same_answer_marked_hit_near(trio: list[SidecarProcess], ns: str) -> None:
    a = trio[0]
    key = f"{ns}:doc"
    with a.http() as http:
        http.put(f"/v1/cache/{key}", content=b'{"a":1}', headers={"content-type": "application/json"})
        first = http.get(f"/v1/cache/{key}")
        prime(a, key)
        second = http.get(f"/v1/cache/{key}")
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("hit", "hit-near")
        for name in ("content-type", "etag", "content-length"):
            assert first.headers[name] == second.headers[name]
        assert first.content == second.content == b'{"a":1}'
        cond = http.get(f"/v1/cache/{key}", headers={"if-none-match": second.headers["etag"]})
        assert cond.status_code == 304 and cond.headers["x-cache"] == "hit-near"
        head = http.head(f"/v1/cache/{key}")
        assert head.status_code == 200 and int(head.headers["x-cache-ttl"]) > 0
        metrics = http.get("/metrics").text
        assert 'mobius_cache_near_requests_total{result="hit"}' in metrics
        assert "mobius_cache_near_tracking 1.0" in metrics
        assert 'route="/v1/cache/{key}",status="200"' in metrics  # near hits are counted as HTTP requests too


def _through_a(a: SidecarProcess) -> dict[str, Callable[[str], tuple[int, bytes | None]]]:
    """Changes made through the first sidecar, and the answer each should leave."""

    def put(key: str) -> tuple[int, bytes | None]:
        assert httpx.put(f"{a.url}/v1/cache/{key}", content=b"new").status_code == 204
        return 200, b"new"

    def batch_set(key: str) -> tuple[int, bytes | None]:
        body = {"items": [{"key": key, "value": {"$base64": "bmV3"}}]}
        assert httpx.post(f"{a.url}/v1/batch/set", json=body).json() == {"stored": 1}
        return 200, b"new"

    def delete(key: str) -> tuple[int, bytes | None]:
        assert httpx.delete(f"{a.url}/v1/cache/{key}").json()["deleted"] == 1
        return GONE

    def invalidate(body: dict[str, Any]) -> tuple[int, bytes | None]:
        assert httpx.post(f"{a.url}/v1/invalidate", json=body).json()["deleted"] >= 1
        return GONE

    def incr(key: str) -> tuple[int, bytes | None]:
        assert httpx.post(f"{a.url}/v1/cache/{key}:n/incr", json={}).json() == {"value": 2}
        return 200, b"2"

    return {
        "put": put,
        "batch_set": batch_set,
        "delete": delete,
        "invalidate_key": lambda key: invalidate({"keys": [key]}),
        "invalidate_tag": lambda key: invalidate({"tags": [key.split(":")[0] + "-tag"]}),
        "invalidate_pattern": lambda key: invalidate({"pattern": key.split(":")[0] + ":*"}),
        "invalidate_cascade": lambda key: invalidate({"cascade": key.split(":")[0] + ":parent"}),
        "incr": incr,
    }


CHANGES = [
    "put",
    "batch_set",
    "delete",
    "invalidate_key",
    "invalidate_tag",
    "invalidate_pattern",
    "invalidate_cascade",
    "incr",
]


@pytest.mark.parametrize("change", CHANGES)
def test_changes_through_one_sidecar_reach_every_sidecar(
    trio: list[SidecarProcess], ns: str, change: str
) -> None:
    a = trio[0]
    key = f"{ns}:k" if change != "incr" else f"{ns}:k:n"
    if change == "incr":
        httpx.post(f"{a.url}/v1/cache/{key}/incr", json={})
    else:
        params = {"tag": f"{ns}-tag", "depends_on": f"{ns}:parent", "ttl": 60}
        httpx.put(f"{a.url}/v1/cache/{key}", content=b"old", params=params)
    for proc in trio:
        prime(proc, key)
    changes = _through_a(a)
    assert sorted(changes) == sorted(CHANGES)
    want = changes[change](f"{ns}:k")
    assert answer(a, key) == want  # the writer: at once
    assert converge(trio, key, want) < 1.0


@pytest.mark.parametrize(
    ("command", "want"),
    [(("SET", "{k}", b"direct"), (200, b"direct")), (("DEL", "{k}"), GONE), (("PEXPIRE", "{k}", 1), GONE)],
    ids=["set", "del", "pexpire"],
)
def test_changes_by_a_plain_redis_client_reach_every_sidecar(
    trio: list[SidecarProcess], shared_redis: RedisServer, ns: str, command: tuple[Any, ...], want: Any
) -> None:
    key = f"{ns}:k"
    httpx.put(f"{trio[0].url}/v1/cache/{key}", content=b"old")
    for proc in trio:
        prime(proc, key)
    with shared_redis.client() as r:
        r.execute_command(*[x.format(k="mobius:" + key) if isinstance(x, str) else x for x in command])
    assert converge(trio, key, want) < 1.0


def test_expiry_is_kept_by_every_sidecar(trio: list[SidecarProcess], ns: str) -> None:
    key = f"{ns}:short"
    httpx.put(f"{trio[0].url}/v1/cache/{key}", content=b"v", params={"ttl": 2})
    t0 = time.monotonic()  # Redis set the TTL before the PUT returned: its copy is gone 2 s after this
    for proc in trio:
        prime(proc, key)
    assert time.monotonic() - t0 < 2.0, (
        "priming took longer than the TTL: the machine is too slow for this test"
    )
    time.sleep(max(0.0, 2.05 - (time.monotonic() - t0)))
    for proc in trio:  # no polling: local copies expire with Redis's
        assert answer(proc, key) == GONE


def test_sessions_and_opted_out_namespaces_are_never_near_cached(
    trio: list[SidecarProcess], shared_redis: RedisServer, ns: str
) -> None:
    a = trio[0]
    key = f"user:{ns}:session"
    httpx.put(f"{a.url}/v1/cache/{key}", content=b"s1")
    assert [x_cache(a, key) for _ in range(3)] == ["hit", "hit", "hit"]
    with shared_redis.client() as r:
        r.set("mobius:" + key, b"s2")
    assert answer(trio[1], key) == (200, b"s2")  # at once: never held locally


def test_a_namespace_opts_out_by_strategy(
    start_sidecar: Callable[..., SidecarProcess], shared_redis: RedisServer
) -> None:
    ns = f"t{uuid.uuid4().hex[:8]}"
    proc = start_sidecar(shared_redis.url, env={"MOBIUS_STRATEGIES": f'{{"{ns}": {{"near": false}}}}'})
    wait_live(proc)
    httpx.put(f"{proc.url}/v1/cache/{ns}:x", content=b"v")
    httpx.put(f"{proc.url}/v1/cache/other{ns}:x", content=b"v")
    assert [x_cache(proc, f"{ns}:x") for _ in range(3)] == ["hit", "hit", "hit"]
    prime(proc, f"other{ns}:x")  # another namespace of the same sidecar is near-cached


def test_a_bad_near_setting_stops_the_sidecar_with_its_name(
    shared_redis: RedisServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBIUS_")}
    env["MOBIUS_STRATEGIES"] = '{"search": {"neer": true}}'
    cmd = [sys.executable, "-m", "mobius_cache.server", "--redis-url", shared_redis.url, "--port", "0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "strategies.search.neer" in done.stderr


def test_near_cache_bytes_stay_within_the_limit(
    start_sidecar: Callable[..., SidecarProcess], shared_redis: RedisServer
) -> None:
    ns = f"t{uuid.uuid4().hex[:8]}"
    proc = start_sidecar(shared_redis.url, env={"MOBIUS_NEAR_CACHE_MAX_BYTES": "64kb"})
    wait_live(proc)
    with proc.http() as http:
        items = [
            {"key": f"{ns}:{i}", "value": {"$base64": base64.b64encode(b"x" * 1000).decode()}}
            for i in range(640)
        ]  # ~10x the limit
        assert http.post("/v1/batch/set", json={"items": items}).json() == {"stored": 640}
        for i in range(640):
            assert http.get(f"/v1/cache/{ns}:{i}").status_code == 200
            assert http.get(f"/v1/cache/{ns}:{i % 10}").status_code == 200  # a hot set that fits
        near = http.get("/v1/stats").json()["near"]
        assert near["bytes"] <= 64 * 1024 and near["max_bytes"] == 64 * 1024
        assert near["evictions"] > 0 and near["hits"] > 0


def test_near_cache_off(
    start_sidecar: Callable[..., SidecarProcess], shared_redis: RedisServer, ns: str
) -> None:
    proc = start_sidecar(shared_redis.url, env={"MOBIUS_NEAR_CACHE": "off"})
    httpx.put(f"{proc.url}/v1/cache/{ns}:x", content=b"v")
    assert [x_cache(proc, f"{ns}:x") for _ in range(3)] == ["hit", "hit", "hit"]
    assert near_stats(proc)["enabled"] is False


# --- changes only Redis makes, and losing it ----------------------------------------------------------------
@pytest.fixture
def pair_on_own_redis(
    redis_server: RedisServer, start_sidecar: Callable[..., SidecarProcess]
) -> list[SidecarProcess]:
    procs = [start_sidecar(redis_server.url) for _ in range(2)]
    for proc in procs:
        wait_live(proc)
    return procs


def test_flushall_reaches_every_sidecar(
    pair_on_own_redis: list[SidecarProcess], redis_server: RedisServer
) -> None:
    httpx.put(f"{pair_on_own_redis[0].url}/v1/cache/f:1", content=b"v")
    for proc in pair_on_own_redis:
        prime(proc, "f:1")
    with redis_server.client() as r:
        r.flushall()
    converge(pair_on_own_redis, "f:1", GONE)


def test_eviction_reaches_every_sidecar(
    pair_on_own_redis: list[SidecarProcess], redis_server: RedisServer
) -> None:
    httpx.put(f"{pair_on_own_redis[0].url}/v1/cache/e:1", content=b"x" * 1000)
    for proc in pair_on_own_redis:
        prime(proc, "e:1")
    with redis_server.client() as r:
        r.config_set("maxmemory-policy", "allkeys-random")
        r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + 200_000)
        for i in range(0, 5000, 100):
            pipe = r.pipeline(transaction=False)
            for j in range(i, i + 100):
                pipe.set(f"filler:{j}", b"f" * 1000)
            pipe.execute()
            if not r.exists("mobius:e:1"):
                break
        assert not r.exists("mobius:e:1"), "Redis never evicted the key"
    converge(pair_on_own_redis, "e:1", GONE)


def test_redis_restart_reaches_every_sidecar(
    pair_on_own_redis: list[SidecarProcess], redis_server: RedisServer
) -> None:
    httpx.put(f"{pair_on_own_redis[0].url}/v1/cache/r:1", content=b"before")
    for proc in pair_on_own_redis:
        prime(proc, "r:1")
    redis_server.restart()
    with redis_server.client() as r:
        r.set("mobius:r:1", b"after")
    converge(pair_on_own_redis, "r:1", (200, b"after"), timeout=10.0)
    for proc in pair_on_own_redis:
        wait_live(proc)
        prime(proc, "r:1")
        assert answer(proc, "r:1") == (200, b"after")


def test_a_cut_tracking_connection_turns_near_off_until_it_is_back(
    redis_server: RedisServer, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    with tcp_proxy(redis_server.port) as proxy:
        writer = start_sidecar(redis_server.url)
        reader = start_sidecar(proxy.url)
        wait_live(reader)
        httpx.put(f"{writer.url}/v1/cache/c:1", content=b"v1")
        prime(reader, "c:1")
        proxy.refuse = True
        assert proxy.cut(b"TRACKING") == 1
        deadline = time.monotonic() + 1.0
        while near_stats(reader)["live"]:
            assert time.monotonic() < deadline, "the near cache stayed on without tracking"
            time.sleep(0.01)
        httpx.put(f"{writer.url}/v1/cache/c:1", content=b"v2")
        assert answer(reader, "c:1") == (200, b"v2")  # off: read from Redis
        assert [x_cache(reader, "c:1") for _ in range(3)] == ["hit", "hit", "hit"]
        proxy.refuse = False
        wait_live(reader)
        prime(reader, "c:1")
        httpx.put(f"{writer.url}/v1/cache/c:1", content=b"v3")
        converge([reader, writer], "c:1", (200, b"v3"))
        assert near_stats(reader)["tracking"]["losses"] == 1


# --- the Unix socket listener -------------------------------------------------------------------------------------
@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(f"/tmp/mcs-{uuid.uuid4().hex[:8]}")  # short: Unix socket paths are limited to 107 bytes
    path.mkdir()
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


def test_unix_socket_listener(
    start_sidecar: Callable[..., SidecarProcess], shared_redis: RedisServer, sock_dir: Path, ns: str
) -> None:
    path = sock_dir / "sidecar.sock"
    proc = start_sidecar(shared_redis.url, env={"MOBIUS_SIDECAR_UDS": str(path)}, token="s3cret")
    assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o666
    with SidecarClient("http://sidecar", uds=str(path), token="s3cret") as client:
        client.put(f"{ns}:u", b"over the socket", content_type="text/plain; charset=utf-8")
        assert client.get(f"{ns}:u").data == b"over the socket"  # type: ignore[union-attr]
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport, base_url="http://sidecar") as http:
        assert http.get(f"/v1/cache/{ns}:u").status_code == 401  # the token applies here too
        got = http.get(f"/v1/cache/{ns}:u", headers={"authorization": "Bearer s3cret"})
        assert got.status_code == 200 and got.headers["x-cache"] in ("hit", "hit-near")
        assert http.get("/healthz").status_code == 200
    assert proc.client().get(f"{ns}:u") is not None  # TCP still serves
    proc.terminate()
    assert not path.exists()  # removed on shutdown


def test_unix_socket_left_by_a_crash_is_replaced_and_a_live_one_is_refused(
    start_sidecar: Callable[..., SidecarProcess], shared_redis: RedisServer, sock_dir: Path
) -> None:
    path = sock_dir / "s.sock"
    first = start_sidecar(shared_redis.url, env={"MOBIUS_SIDECAR_UDS": str(path)})
    assert first.proc is not None
    first.proc.kill()  # no clean-up: the socket file stays behind
    first.proc.wait(5)
    assert path.exists()
    second = start_sidecar(shared_redis.url, env={"MOBIUS_SIDECAR_UDS": str(path)})
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://s") as http:
        assert http.get("/healthz").status_code == 200
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBIUS_")}
    env["MOBIUS_SIDECAR_UDS"] = str(path)
    cmd = [sys.executable, "-m", "mobius_cache.server", "--redis-url", shared_redis.url, "--port", "0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "another process is serving on it" in done.stderr
    not_a_socket = sock_dir / "file"
    not_a_socket.write_text("x")
    env["MOBIUS_SIDECAR_UDS"] = str(not_a_socket)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "exists and is not a socket" in done.stderr
    second.close()
