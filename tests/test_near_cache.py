"""The near cache with real Redis: coherence after every kind of change, by this instance or anyone else.

"Coherent" here means: once a change is acknowledged and its invalidation delivered, no instance serves the old
value. Changes made through an instance are seen by that instance as soon as the call returns (no waiting);
changes made elsewhere are seen once tracking delivers them (polled with a deadline, and measured).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from mobius_cache import MISS, Cache
from mobius_cache.strategies import SessionStore
from tests.conftest import make_config
from tests.proxy import tcp_proxy
from tests.servers import RedisCluster, RedisServer, free_port, wait_for_port


async def started(url: str, prefix: str, **overrides: Any) -> Cache:
    cache = await Cache(make_config(url, prefix, **overrides), registry=CollectorRegistry()).start()
    assert await cache.wait_near(5.0), cache.near_stats()
    return cache


@pytest.fixture
async def pair(shared_redis: RedisServer, prefix: str) -> AsyncIterator[tuple[Cache, Cache]]:
    """Two instances on one Redis: ``a`` writes, ``b`` reads (each has its own near cache)."""
    a, b = await started(shared_redis.url, prefix), await started(shared_redis.url, prefix)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def primed(cache: Cache, key: str) -> Any:
    """Read ``key`` until the near cache answers; returns the value it holds."""
    for _ in range(20):  # a fill is refused while an invalidation of the key is in flight: retry
        _entry, status = await cache.lookup(key)
        if status == "hit-near":
            return await cache.get(key)
        await asyncio.sleep(0.005)
    raise AssertionError(f"{key} never became a near hit (last status {status})")


async def eventually(read: Callable[[], Awaitable[Any]], want: Any, timeout: float = 2.0) -> float:
    """Poll ``read`` until it returns ``want``; returns how long that took, fails after ``timeout``."""
    t0 = time.monotonic()
    while True:
        got = await read()
        if got == want:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"still {got!r} after {timeout}s, wanted {want!r}")
        await asyncio.sleep(0.001)


async def stays(read: Callable[[], Awaitable[Any]], want: Any, times: int = 20) -> None:
    for _ in range(times):
        assert await read() == want
        await asyncio.sleep(0)


# --- the basics -------------------------------------------------------------------------------------------------
async def test_a_second_read_is_a_near_hit(pair: tuple[Cache, Cache]) -> None:
    a, _ = pair
    await a.set("project:1:metadata", {"name": "Atlas"})
    assert (await a.lookup("project:1:metadata"))[1] == "hit"
    entry, status = await a.lookup("project:1:metadata")
    assert status == "hit-near" and entry.data == b'{"name":"Atlas"}'  # type: ignore[union-attr]
    assert await a.get("project:1:metadata") == {"name": "Atlas"}
    assert a.near_lookup("project:1:metadata") is not None
    assert a.near_lookup("project:1:nope") is None
    near = a.stats()["near"]
    assert near["hits"] == 3 and near["misses"] == 1 and near["entries"] == 1
    assert a.stats()["namespaces"]["project"]["hit"] == 4  # near hits are hits too
    text = generate_latest(a._registry).decode()  # type: ignore[arg-type]
    assert 'mobius_cache_near_requests_total{result="hit"} 3.0' in text
    assert "mobius_cache_near_tracking 1.0" in text
    assert "mobius_cache_near_max_bytes 6.7108864e+07" in text


async def test_get_many_serves_near_hits(pair: tuple[Cache, Cache]) -> None:
    a, _ = pair
    await a.set_many({"api:v1:x:1": 1, "api:v1:x:2": 2})
    await primed(a, "api:v1:x:1")
    hits_before = a.stats()["near"]["hits"]
    assert await a.get_many(["api:v1:x:1", "api:v1:x:2", "api:v1:x:3"]) == {"api:v1:x:1": 1, "api:v1:x:2": 2}
    assert a.stats()["near"]["hits"] == hits_before + 1


# --- writes through this instance: seen by it before the call returns -------------------------------------------------
async def _write_ops(c: Cache, key: str) -> list[tuple[str, Callable[[], Awaitable[Any]], Any]]:
    async def cas() -> None:
        assert await c.compare_and_set(key, "v0", "v-cas")

    async def add() -> None:
        await c.delete(key)
        await c.get(key)
        assert await c.add(key, "v-add")

    return [
        ("set", lambda: c.set(key, "v-set"), "v-set"),
        ("set_raw", lambda: c.set_raw(key, b"raw", "text/plain; charset=utf-8"), "raw"),
        ("set tagged", lambda: c.set(key, "v-tag", tags=["t"]), "v-tag"),
        ("compare_and_set", cas, "v-cas"),
        ("add", add, "v-add"),
        ("set_many", lambda: c.set_many([(key, "v-many")]), "v-many"),
        ("delete", lambda: c.delete(key), MISS),
        ("invalidate_keys", lambda: c.invalidate_keys([key]), MISS),
        ("invalidate_tags", lambda: c.invalidate_tags("t"), MISS),
        ("invalidate_pattern", lambda: c.invalidate_pattern("search:w*"), MISS),
        ("cascade", lambda: c.invalidate("project:9:metadata", cascade=True), MISS),
    ]


async def test_writes_through_this_instance_are_seen_before_they_return(
    shared_redis: RedisServer, prefix: str
) -> None:
    """``a``'s tracking connection is slowed down by 0.2 s, so ``a`` cannot rely on its own invalidations
    arriving in time: it must drop its copy (or wait for them) before each write returns."""
    with tcp_proxy(shared_redis.port) as proxy:
        a, b = await started(proxy.url, prefix), await started(shared_redis.url, prefix)
        try:
            assert proxy.slow_down(b"TRACKING", 0.2) == 1
            key = "search:w1:results:1"
            for name, op, want in await _write_ops(a, key):
                await a.set(key, "v0", tags=["t"], depends_on=["project:9:metadata"])
                await asyncio.sleep(0.25)  # the slowed invalidation of this set has arrived
                assert await primed(a, key) == "v0" and await primed(b, key) == "v0"
                await op()
                assert await a.get(key) == want, name  # at once: no waiting for anything
                waited = await eventually(lambda: b.get(key), want)  # the other instance, once delivered
                assert waited < 1.0, (name, waited)
            await a.incr("api:v1:rate:u1", ttl=60)
            await asyncio.sleep(0.25)
            assert await primed(a, "api:v1:rate:u1") == 1
            assert await a.incr("api:v1:rate:u1") == 2
            assert await a.get("api:v1:rate:u1") == 2
        finally:
            await a.close()
            await b.close()


async def test_a_read_overtaken_by_a_write_is_not_kept(shared_redis: RedisServer, prefix: str) -> None:
    """The fill guard: ``b`` reads while the read's reply is slowed down; meanwhile another client writes and
    its invalidation reaches ``b`` first. The old value the read returns must not be kept (nothing would
    ever invalidate it again)."""
    with tcp_proxy(shared_redis.port) as proxy:
        b = await started(proxy.url, prefix)
        try:
            await b.set("config:race", "old")
            await b.get("config:warm")  # loads the read script, so the read below is one round trip
            assert proxy.slow_down(b"TRACKING", 0.3, others=True) >= 1  # every pooled connection
            read = asyncio.ensure_future(b.get("config:race"))
            await asyncio.sleep(0.1)  # the read has been answered by Redis; its reply is on its way
            with shared_redis.client() as r:
                r.set(b.keys.full("config:race"), b"new")
            assert await read == "old"  # it was read before the write: a fair answer for that read
            proxy.slow_down(None, 0.0)
            await eventually(lambda: b.get("config:race"), b"new", timeout=1.0)
            await stays(lambda: b.get("config:race"), b"new")
        finally:
            await b.close()


# --- changes by anyone else ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "want"),
    [
        (("SET", "{k}", b"direct"), b"direct"),
        (("DEL", "{k}"), MISS),
        (("UNLINK", "{k}"), MISS),
        (("APPEND", "{k}", b"!"), "old!"),
        (("PEXPIRE", "{k}", 1), MISS),
        (("RENAME", "{k}", "{k}:moved"), MISS),
    ],
    ids=["set", "del", "unlink", "append", "pexpire", "rename"],
)
async def test_changes_by_a_plain_redis_client(
    pair: tuple[Cache, Cache], shared_redis: RedisServer, command: tuple[Any, ...], want: Any
) -> None:
    a, b = pair
    key = "config:features"
    await a.set(key, "old")
    assert await primed(a, key) == "old" and await primed(b, key) == "old"
    full = a.keys.full(key)
    with shared_redis.client() as r:
        r.execute_command(*[x.format(k=full) if isinstance(x, str) else x for x in command])
    for cache in (a, b):
        assert await eventually(lambda c=cache: c.get(key), want) < 1.0  # type: ignore[misc]
        await stays(lambda c=cache: c.get(key), want)  # type: ignore[misc]


@pytest.mark.parametrize("flush", ["FLUSHALL", "FLUSHDB"])
async def test_flushes_empty_every_near_cache(redis_server: RedisServer, prefix: str, flush: str) -> None:
    a, b = await started(redis_server.url, prefix), await started(redis_server.url, prefix)
    try:
        await a.set("config:x", 1)
        await primed(a, "config:x")
        await primed(b, "config:x")
        with redis_server.client() as r:
            r.execute_command(flush)
        for cache in (a, b):
            await eventually(lambda c=cache: c.get("config:x"), MISS)  # type: ignore[misc]
            assert cache.stats()["near"]["tracking"]["flushes_received"] == 1
    finally:
        await a.close()
        await b.close()


async def test_local_ttl_never_outlives_redis(prefix: str) -> None:
    """Redis's active expiry is switched off, so nothing would ever report the key's expiry: the local copy
    must expire by itself, no later than Redis's."""
    server = RedisServer(extra_args=["--enable-debug-command", "yes"]).start()
    try:
        with server.client() as r:
            r.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        a, b = await started(server.url, prefix), await started(server.url, prefix)
        try:
            await a.set("api:v1:short:1", "soon gone", ttl=1)
            t0 = time.monotonic()  # Redis set the TTL before set() returned
            assert await primed(b, "api:v1:short:1") == "soon gone"
            await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - t0)))
            assert (await b.lookup("api:v1:short:1"))[1] == "hit-near"
            await asyncio.sleep(max(0.0, 1.02 - (time.monotonic() - t0)))
            assert b.stats()["near"]["tracking"]["keys_received"] == 1  # only the set's: no expiry reported
            assert await b.get("api:v1:short:1") is MISS  # no polling, no invalidation: its own deadline
            assert b.stats()["near"]["expired"] == 1
        finally:
            await a.close()
            await b.close()
    finally:
        server.close()


async def test_eviction_under_maxmemory_reaches_every_near_cache(
    redis_server: RedisServer, prefix: str
) -> None:
    a = await started(redis_server.url, prefix)
    try:
        await a.set("document:1:embedding", b"x" * 1000)
        await primed(a, "document:1:embedding")
        full = a.keys.full("document:1:embedding")
        with redis_server.client() as r:
            r.config_set("maxmemory-policy", "allkeys-random")
            r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + 200_000)
            for i in range(0, 5000, 100):  # write until Redis evicts our key
                pipe = r.pipeline(transaction=False)
                for j in range(i, i + 100):
                    pipe.set(f"{prefix}filler:{j}", b"f" * 1000)
                pipe.execute()
                if not r.exists(full):
                    break
            assert not r.exists(full), "Redis never evicted the key"
            assert int(r.info("stats")["evicted_keys"]) > 0
        await eventually(lambda: a.get("document:1:embedding"), MISS)
    finally:
        await a.close()


async def test_redis_restart_flushes_and_tracking_comes_back(redis_server: RedisServer, prefix: str) -> None:
    a = await started(redis_server.url, prefix, breaker_reset_timeout=0.2)
    try:
        await a.set("config:r", "before")
        await primed(a, "config:r")
        redis_server.restart()  # no persistence: it comes back empty
        with redis_server.client() as r:
            r.set(a.keys.full("config:r"), b"after")
        await eventually(lambda: a.get("config:r"), b"after", timeout=5.0)
        assert await a.wait_near(5.0)
        assert await primed(a, "config:r") == b"after"
        assert a.stats()["near"]["tracking"]["losses"] == 1
    finally:
        await a.close()


# --- losing the tracking connection -------------------------------------------------------------------------------------
async def test_cut_tracking_connection_turns_the_near_cache_off_until_it_is_back(
    redis_server: RedisServer, prefix: str
) -> None:
    with tcp_proxy(redis_server.port) as proxy:
        a = await started(proxy.url, prefix)
        try:
            await a.set("config:c", "v1")
            await primed(a, "config:c")
            proxy.refuse = True
            assert proxy.cut(b"TRACKING") == 1  # the pool's connections stay up
            await eventually(lambda: _async(a.stats()["near"]["live"]), False, timeout=0.5)
            assert a.stats()["near"]["entries"] == 0
            with redis_server.client() as r:
                r.set(a.keys.full("config:c"), b"v2")
            # Off, so every read goes to Redis: the change is seen although nobody told this instance.
            assert await a.get("config:c") == b"v2"
            assert (await a.lookup("config:c"))[1] == "hit"
            await asyncio.sleep(0.5)
            assert not a.stats()["near"]["live"]  # stays off while tracking cannot be re-established
            assert (await a.lookup("config:c"))[1] == "hit"
            proxy.refuse = False
            assert await a.wait_near(5.0)
            assert await primed(a, "config:c") == b"v2"
            with redis_server.client() as r:
                r.set(a.keys.full("config:c"), b"v3")
            await eventually(lambda: a.get("config:c"), b"v3")
        finally:
            await a.close()


async def test_a_silent_tracking_connection_is_given_up_by_the_heartbeat(
    redis_server: RedisServer, prefix: str
) -> None:
    with tcp_proxy(redis_server.port) as proxy:
        a = await started(proxy.url, prefix)
        try:
            tracker = a._tracker
            assert tracker is not None
            await a.set("config:h", "v1")
            await primed(a, "config:h")
            proxy.refuse = True
            proxy.hold(b"TRACKING")  # open, but nothing gets through (a partition without a FIN)
            t0 = time.monotonic()
            limit = tracker.heartbeat + tracker.timeout + 1.0
            await eventually(lambda: _async(a.stats()["near"]["live"]), False, timeout=limit)
            assert time.monotonic() - t0 <= limit
            assert (await a.lookup("config:h"))[1] == "hit"
        finally:
            await a.close()


async def _async(value: Any) -> Any:
    return value


# --- bounds and opt-outs ---------------------------------------------------------------------------------------------
async def test_near_cache_bytes_stay_within_the_limit(shared_redis: RedisServer, prefix: str) -> None:
    limit = 64 * 1024
    a = await started(shared_redis.url, prefix, near_cache_max_bytes=limit)
    try:
        await a.set_many([(f"api:v1:big:{i}", b"x" * 1000) for i in range(640)])  # 10x the limit
        for round_ in range(3):
            for i in range(640):
                await a.get(f"api:v1:big:{(i * 7 + round_) % 640}")
                assert a.stats()["near"]["bytes"] <= limit
        near = a.stats()["near"]
        assert near["evictions"] > 0 and near["entries"] > 10 and near["max_bytes"] == limit
    finally:
        await a.close()


async def test_a_namespace_can_opt_out(shared_redis: RedisServer, prefix: str) -> None:
    a = await started(shared_redis.url, prefix, strategies={"live": {"ttl": 30, "near": False}})
    try:
        await a.set("live:1", "x")
        assert [(await a.lookup("live:1"))[1] for _ in range(3)] == ["hit", "hit", "hit"]
        assert a.stats()["near"]["misses"] == 0
    finally:
        await a.close()


async def test_sessions_are_never_near_cached(pair: tuple[Cache, Cache]) -> None:
    a, b = pair
    sessions = SessionStore(a, allow_eviction=True)
    await sessions.set("u1", {"user": 1})
    assert [(await a.lookup("user:u1:session"))[1] for _ in range(3)] == ["hit", "hit", "hit"]
    await SessionStore(b, allow_eviction=True).set("u1", {"user": 2})
    assert await sessions.get("u1") == {"user": 2}  # at once: it was never held locally
    assert a.stats()["near"]["entries"] == 0


async def test_the_near_cache_can_be_turned_off(shared_redis: RedisServer, prefix: str) -> None:
    async with Cache(
        make_config(shared_redis.url, prefix, near_cache=False), registry=CollectorRegistry()
    ) as a:
        await a.set("config:off", 1)
        assert [(await a.lookup("config:off"))[1] for _ in range(2)] == ["hit", "hit"]
        assert a.stats()["near"] == {"enabled": False, "reason": "turned off (MOBIUS_NEAR_CACHE=off)"}
        assert not await a.wait_near(0.1)


async def test_tracking_refused_by_an_acl_keeps_the_near_cache_off(
    redis_server: RedisServer, prefix: str
) -> None:
    with redis_server.client() as r:
        r.execute_command("ACL", "SETUSER", "notrack", "on", ">pw", "~*", "&*", "+@all", "-client|tracking")
    url = f"redis://notrack:pw@127.0.0.1:{redis_server.port}/0"
    async with Cache(make_config(url, prefix), registry=CollectorRegistry()) as a:
        await asyncio.sleep(0.3)
        tracking = a.stats()["near"]["tracking"]
        assert not tracking["established"] and "CLIENT TRACKING" in tracking["error"]
        await a.set("config:acl", 1)
        assert [(await a.lookup("config:acl"))[1] for _ in range(2)] == ["hit", "hit"]


async def test_a_new_prefix_is_tracked_after_a_policy_change(shared_redis: RedisServer, prefix: str) -> None:
    a = await started(shared_redis.url, prefix)
    try:
        await a.set("config:p", "old prefix")
        await primed(a, "config:p")
        a.update_config(a.config.model_copy(update={"cache_prefix": prefix + "v2:"}))
        assert a.stats()["near"]["entries"] == 0
        await asyncio.sleep(0.05)
        assert await a.wait_near(5.0)
        assert a.stats()["near"]["tracking"]["prefix"] == prefix + "v2:"
        await a.set("config:p", "new prefix")
        assert await primed(a, "config:p") == "new prefix"
        with shared_redis.client() as r:
            r.set(f"{prefix}v2:config:p", b"changed")
        await eventually(lambda: a.get("config:p"), b"changed")
    finally:
        await a.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
async def test_tracking_over_tls(prefix: str, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
    subject = ["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    subprocess.run(["openssl", *request, *subject], check=True, capture_output=True)
    port = free_port()
    args = ["--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
    args += ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert)]
    args += ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    proc = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        a = await started(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}", prefix)
        try:
            await a.set("config:tls", "v1")
            assert await primed(a, "config:tls") == "v1"
            with redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(cert)) as r:
                r.set(a.keys.full("config:tls"), b"v2")
            await eventually(lambda: a.get("config:tls"), b"v2")
        finally:
            await a.close()
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.mark.cluster
async def test_near_cache_is_off_on_a_cluster(redis_cluster: RedisCluster, prefix: str) -> None:
    async with Cache(make_config(redis_cluster.url, prefix), registry=CollectorRegistry()) as a:
        near = a.stats()["near"]
        assert near["enabled"] is False and "Cluster" in near["reason"]
        await a.set("config:cl", 1)
        assert [(await a.lookup("config:cl"))[1] for _ in range(2)] == ["hit", "hit"]


# --- under concurrency ----------------------------------------------------------------------------------------------
async def test_concurrent_reads_and_writes_converge(pair: tuple[Cache, Cache]) -> None:
    """Readers on ``b`` race writers on ``a`` (fills and invalidations in flight at once); after the last write
    is acknowledged and delivered, ``b`` answers the last value, from its near cache."""
    a, b = pair
    keys = [f"search:c{i}:results:1" for i in range(5)]
    stop = False

    async def reader() -> None:
        while not stop:
            await b.get_many(keys[:2])
            for key in keys:
                await b.get(key)

    readers = [asyncio.ensure_future(reader()) for _ in range(8)]
    try:
        for n in range(100):
            await asyncio.gather(*(a.set(k, n) for k in keys))
    finally:
        stop = True
        await asyncio.gather(*readers)
    for key in keys:
        await eventually(lambda k=key: b.get(k), 99)  # type: ignore[misc]
        await stays(lambda k=key: b.get(k), 99)  # type: ignore[misc]
    assert b.stats()["near"]["hits"] > 0
