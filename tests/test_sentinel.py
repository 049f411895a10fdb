"""Redis Sentinel: the URL, following the master, and a failover under load — against real Sentinel groups
(one master, two replicas, three Sentinels on loopback; see tests/servers.py)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from mobius_cache import MISS, Cache, CacheConfig, CacheUnavailableError
from mobius_cache._pool import LeanExecutor, Pool, RedisPyExecutor, make_endpoint
from mobius_cache._sentinel import SentinelLocator, pick_master
from mobius_cache._sentinel_url import SentinelURL, parse_sentinel_url
from tests.conftest import make_config
from tests.failover import library_ops, run_failover
from tests.servers import (
    GROUP_PASSWORD,
    GROUP_SENTINEL_PASSWORD,
    HOST,
    RedisServer,
    SentinelGroup,
    TLSFiles,
    free_port,
)

PW, SENTINEL_PW = GROUP_PASSWORD, GROUP_SENTINEL_PASSWORD


# --- the URL (pure) ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://s1:26379,s2:26380/mymaster",
            SentinelURL(sentinels=(("s1", 26379), ("s2", 26380)), master_name="mymaster"),
        ),
        (
            "redis+sentinel://app:p%40ss@s1,10.0.0.2:5000/cache/3",
            SentinelURL(
                sentinels=(("s1", 26379), ("10.0.0.2", 5000)),
                master_name="cache",
                db=3,
                username="app",
                password="p@ss",
            ),
        ),
        (
            "rediss+sentinel://:pw@[::1]:26379/m/?ssl_cert_reqs=none",
            SentinelURL(
                sentinels=(("::1", 26379),),
                master_name="m",
                password="pw",
                tls=True,
                query="ssl_cert_reqs=none",
            ),
        ),
    ],
)
def test_sentinel_urls_parse(url: str, expected: SentinelURL) -> None:
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://s1:26379", "names no master"),
        ("redis+sentinel://s1:26379/", "names no master"),
        ("redis+sentinel:///mymaster", "invalid Sentinel address ''"),
        ("redis+sentinel://s1:26379,,s2/m", "invalid Sentinel address ''"),
        ("redis+sentinel://s1:0/m", "invalid Sentinel address"),
        ("redis+sentinel://s1:99999/m", "invalid Sentinel port"),
        ("redis+sentinel://s1:port/m", "invalid Sentinel address"),
        ("redis+sentinel://s1/m/zero", "database in a Sentinel URL is a number"),
        ("redis+sentinel://s1/m/0/extra", "path is /<master-name>"),
        ("redis+sentinel://s1/m%20x", "invalid master name"),
        ("redis+sentinel://s1/m#frag", "no #fragment"),
        ("redis://s1/m", "starts with redis+sentinel://"),
    ],
)
def test_bad_sentinel_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_sentinel_url(url)


def test_the_data_node_url_carries_credentials_db_and_options() -> None:
    spec = parse_sentinel_url("rediss+sentinel://u:p%2Fw@s1/m/2?ssl_ca_certs=/ca.pem")
    assert spec.data_node_url() == "rediss://u:p%2Fw@sentinel-managed/2?ssl_ca_certs=/ca.pem"
    assert parse_sentinel_url("redis+sentinel://s1/m").data_node_url() == "redis://sentinel-managed/0"
    assert parse_sentinel_url("redis+sentinel://S2:1,s1:2/m").key == "m@s1:2,s2:1"


def test_the_configuration_accepts_sentinel_urls_and_refuses_broken_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOBIUS_REDIS_URL", "redis+sentinel://s1:26379,s2:26379/mymaster/1")
    monkeypatch.setenv("MOBIUS_REDIS_PASSWORD", "data")
    monkeypatch.setenv("MOBIUS_REDIS_SENTINEL_USERNAME", "watcher")
    monkeypatch.setenv("MOBIUS_REDIS_SENTINEL_PASSWORD", "Zq9-sentinel-pw")
    config = CacheConfig()
    assert config.sentinel and not config.cluster
    assert (config.redis_password, config.redis_sentinel_username) == ("data", "watcher")
    assert "Zq9" not in repr(config) and config.redis_sentinel_password == "Zq9-sentinel-pw"
    with pytest.raises(ValueError, match="names no master"):
        CacheConfig(redis_url="redis+sentinel://s1:26379")


def test_the_healthiest_newest_master_wins() -> None:
    a, b, c = ("10.0.0.1", 6379), ("10.0.0.2", 6379), ("10.0.0.3", 6379)
    old = {"ip": a[0], "port": a[1], "is_master": True, "config-epoch": 1}
    new = {"ip": b[0], "port": b[1], "is_master": True, "config-epoch": 2}
    down = {**new, "config-epoch": 3, "is_sdown": True}
    assert pick_master([(old, a), (new, b)]) == b  # a Sentinel that missed the failover is outvoted
    assert pick_master([(old, a), (down, b)]) == a  # a master flagged down is not believed
    assert pick_master([(down, b), ({**old, "is_odown": True}, a)]) is None
    # the leader of a failover advertises the promoted replica while its master entry is still the old one
    failing_over = {**old, "is_sdown": True, "is_odown": True}
    assert pick_master([(failing_over, c), ({**old, "is_sdown": True}, a)]) == c
    assert pick_master([(old, a), ({**old, "is_sdown": True}, c)]) == c  # same epoch: the promotion wins
    assert pick_master([(old, None)]) is None
    assert pick_master([]) is None


# --- against a real group (shared; nothing here kills a node) ------------------------------------------------------
@pytest.fixture
def group(auth_sentinel_group: SentinelGroup) -> SentinelGroup:
    return auth_sentinel_group


def auth_config(group: SentinelGroup, prefix: str, **overrides: object) -> CacheConfig:
    values: dict[str, object] = {"redis_password": PW, "redis_sentinel_password": SENTINEL_PW}
    values.update(overrides)
    return make_config(group.url(), prefix, **values)


@pytest.fixture
async def scache(group: SentinelGroup, prefix: str, registry: CollectorRegistry) -> AsyncIterator[Cache]:
    async with Cache(auth_config(group, prefix), registry=registry) as c:
        yield c


async def test_set_get_and_health_go_to_the_master(scache: Cache, group: SentinelGroup, prefix: str) -> None:
    await scache.set("project:1:metadata", {"n": 1})
    assert await scache.get("project:1:metadata") == {"n": 1}
    health = await scache.health()
    master = group.master()
    assert health["ok"] and health["role"] == "master"
    sentinel = health["sentinel"]
    assert (sentinel["master_name"], sentinel["master"]) == ("mymaster", f"{HOST}:{master.port}")
    assert sentinel["switches"] == 0
    assert sentinel["lookups"] <= 2  # the pool's first connection, the switch watcher's start: not one each
    with group.node_client(master) as c:
        assert c.exists(f"{prefix}project:1:metadata") == 1


async def test_the_url_database_is_selected(group: SentinelGroup, prefix: str) -> None:
    config = auth_config(group, prefix, redis_url=group.url(db=3))
    async with Cache(config, registry=CollectorRegistry()) as cache:
        await cache.set("api:x", "in db 3")
    with group.node_client(group.master(), db=3) as c:
        assert c.get(f"{prefix}api:x") is not None
    with group.node_client(group.master(), db=0) as c:
        assert c.get(f"{prefix}api:x") is None


async def test_every_way_of_opening_a_connection_reaches_the_master(group: SentinelGroup) -> None:
    """redis-py's own Sentinel connection looks the master up in connect() only; ours, wherever it connects."""
    endpoint = make_endpoint(
        group.url(), password=PW, socket_timeout=1, connect_timeout=1, sentinel_password=SENTINEL_PW
    )
    master_port = group.master().port
    try:
        direct = endpoint.connection()
        await direct.connect()
        lazy = endpoint.connection()
        await lazy.send_packed_command(lazy.pack_command("PING"), check_health=False)
        assert await lazy.read_response() in (b"PONG", "PONG")
        client = endpoint.client()
        assert await client.ping()
        pool_client = (await client.connection_pool.get_connection()).port  # type: ignore[attr-defined]
        assert {direct.port, lazy.port, pool_client} == {master_port}  # type: ignore[attr-defined]
        for conn in (direct, lazy):
            await conn.disconnect()
        await client.aclose()
        executor = RedisPyExecutor(endpoint, 4, 1, 1.0)  # the instrumented (tracing) path
        await executor.execute("SET", "through-redis-py", "1")
        with group.node_client(group.master()) as c:
            assert c.get("through-redis-py") == b"1"
        await executor.redis.aclose(close_connection_pool=True)
    finally:
        await endpoint.close()


async def test_a_cached_master_is_forgotten_only_for_its_own_address(group: SentinelGroup) -> None:
    spec = parse_sentinel_url(group.url())
    locator = SentinelLocator(spec, password=SENTINEL_PW, timeout=1)
    try:
        address = await locator.master_address()
        assert address == (HOST, group.master().port) and locator.lookups == 1
        await locator.master_address()
        locator.invalidate(("10.9.9.9", 1))  # a late error of an older connection
        assert locator.current == address and locator.lookups == 1
        locator.invalidate(address)
        assert locator.current is None
        await asyncio.gather(*(locator.master_address() for _ in range(20)))  # single-flight
        assert locator.lookups == 2
        nodes = await locator.topology()
        assert [n.role for n in nodes] == ["master", "replica", "replica"]
        assert {n.port for n in nodes} == {n.port for n in group.nodes} and not any(n.down for n in nodes)
    finally:
        await locator.close()


async def test_wrong_sentinel_password_or_master_name_fails_fast_and_clearly(
    group: SentinelGroup, prefix: str
) -> None:
    cases = [
        (auth_config(group, prefix, redis_sentinel_password="wrong"), "invalid username-password|WRONGPASS"),
        (
            auth_config(group, prefix, redis_sentinel_password=None),
            "NOAUTH|Authentication required|already authenticated",
        ),
        (auth_config(group, prefix, redis_url=group.url().replace("mymaster", "nope")), "No such master"),
    ]
    for config, message in cases:
        async with Cache(config, registry=CollectorRegistry()) as cache:
            started = time.monotonic()
            with pytest.raises(CacheUnavailableError, match=message):
                await cache.set("api:k", 1)
            assert await cache.get("api:k") is MISS  # reads fail open
            assert time.monotonic() - started < 1.0


async def test_no_sentinel_reachable_is_a_fast_outage(prefix: str) -> None:
    url = f"redis+sentinel://{HOST}:{free_port()},{HOST}:{free_port()}/mymaster"
    async with Cache(make_config(url, prefix), registry=CollectorRegistry()) as cache:
        started = time.monotonic()
        with pytest.raises(CacheUnavailableError, match="no healthy master 'mymaster'"):
            await cache.set("api:k", 1)
        assert await cache.get("api:k") is MISS
        assert time.monotonic() - started < 1.0
        assert (await cache.health())["sentinel"]["master"] is None


async def test_events_are_delivered_through_the_sentinel_master(group: SentinelGroup, prefix: str) -> None:
    async with (
        Cache(auth_config(group, prefix), registry=CollectorRegistry()) as a,
        Cache(auth_config(group, prefix), registry=CollectorRegistry()) as b,
    ):
        seen: list[dict[str, object]] = []
        b.on_invalidate(seen.append)
        await b.invalidator.wait_subscribed()
        await a.set("config:x", 1)
        await a.invalidate("config:x")
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
        assert seen and seen[0]["items"] == ["config:x"]


# --- READONLY: a demoted master (plain servers, no Sentinel needed) -------------------------------------------------
async def test_a_readonly_reply_drops_the_pools_connections(redis_server: RedisServer) -> None:
    """A master demoted under our feet answers writes with READONLY: the pool drops its (idle) connections
    and reports it (Sentinel: the locator asks for the new master), and the write fails as unavailable."""
    other = RedisServer().start()
    broken: list[object] = []
    endpoint = make_endpoint(redis_server.url, password=None, socket_timeout=1, connect_timeout=1)
    pool = Pool(endpoint.connection, 4, 2, 1.0, on_broken=broken.append)
    executor = LeanExecutor(endpoint, pool, autopipeline=True)
    try:
        await executor.start()
        assert pool.stats()["idle"] == 2
        with redis_server.client() as c:
            c.replicaof(HOST, other.port)
        with pytest.raises(redis.exceptions.ReadOnlyError):
            await executor.execute("SET", "k", "v")
        assert pool.stats() == {"max": 4, "in_use": 0, "idle": 0} and len(broken) == 1
        results = await asyncio.gather(
            *(executor.execute("SET", f"k{i}", "v") for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, redis.exceptions.ReadOnlyError) for r in results)  # pipelined too
        assert pool.stats()["idle"] == 0
    finally:
        await executor.close()
        other.close()


async def test_readonly_is_an_unavailable_write_for_the_cache(redis_server: RedisServer, prefix: str) -> None:
    other = RedisServer().start()
    try:
        async with Cache(make_config(redis_server.url, prefix), registry=CollectorRegistry()) as cache:
            await cache.set("api:k", 1)
            with redis_server.client() as c:
                c.replicaof(HOST, other.port)
            with pytest.raises(CacheUnavailableError, match="read-only"):
                await cache.set("api:k", 2)
    finally:
        other.close()


# --- failovers (each on a group of its own) ----------------------------------------------------------------------
@pytest.fixture
def fresh_group() -> Iterator[SentinelGroup]:
    g = SentinelGroup().start()
    try:
        yield g
    finally:
        g.close()


@pytest.mark.slow
async def test_a_manual_failover_moves_writes_to_the_new_master(
    fresh_group: SentinelGroup, prefix: str
) -> None:
    """SENTINEL FAILOVER leaves the old master up, taking writes until the Sentinels demote it (those writes
    are lost when it resyncs): the cache moves on as soon as a Sentinel announces the new master."""
    async with Cache(make_config(fresh_group.url(), prefix), registry=CollectorRegistry()) as cache:
        await cache.set("api:before", 1)
        old = fresh_group.master()
        with fresh_group.sentinel_client() as s:
            s.execute_command("SENTINEL", "FAILOVER", "mymaster")
        new = await asyncio.to_thread(fresh_group.wait_failover, old.port)
        deadline = time.monotonic() + 5
        while (await cache.health())["sentinel"]["master"] != f"{HOST}:{new.port}":
            assert time.monotonic() < deadline, "the cache never heard of the new master"
            await asyncio.sleep(0.02)
        assert (await cache.health())["sentinel"]["switches"] == 1
        await cache.set("api:after", 2)  # the pool reopened its connections: no error, no retry needed
        with fresh_group.node_client(old) as c:
            assert c.exists(f"{prefix}api:after") == 0  # not on the old master, which still answers
    with fresh_group.node_client(new) as c:
        assert c.exists(f"{prefix}api:after", f"{prefix}api:before") == 2


@pytest.mark.slow
async def test_sigkill_of_the_master_under_load(fresh_group: SentinelGroup, prefix: str) -> None:
    """The issue's scenario through the library: a write gap of a few seconds, reads only ever miss, nothing
    hangs, every invalidation (queued ones replayed) holds on the new master, later writes land there, and
    another instance's event subscription follows the master."""
    config = make_config(fresh_group.url(), prefix, breaker_reset_timeout=1.0)
    async with (
        Cache(config, registry=CollectorRegistry()) as cache,
        Cache(config, registry=CollectorRegistry()) as listener,
    ):
        events: list[dict[str, object]] = []
        listener.on_invalidate(events.append)
        await listener.invalidator.wait_subscribed()
        run = await run_failover(fresh_group, library_ops(cache))
        summary = run.summary()
        print("library failover:", summary)
        assert run.write_gap_s is not None and run.write_gap_s <= 10.0, summary
        assert run.read_failures == [], run.read_failures[:5]
        assert (
            summary["reads"].get("hit", 0) > 0
            and summary["reads"].get("miss", 0)
            + summary["reads"].get("bypass", 0)
            + summary["reads"].get("error", 0)
            > 0
        )
        assert run.hangs == [], run.hangs[:5]
        assert summary["writes"].keys() <= {"ok", "unavailable"}, summary["writes"]
        assert summary["invalidations"].keys() <= {"ok", "queued"}, summary["invalidations"]
        assert summary["invalidations"].get("queued", 0) > 0  # some met the outage and were replayed
        assert run.drained and run.lost_invalidations == []
        assert run.kept_checked > 0 and run.kept_missing == 0
        assert summary["writes_checked_on_new_master"] > 0 and run.lost_writes == []
        assert (await cache.health())["sentinel"]["master"] == f"{HOST}:{run.new_port}"
        await listener.invalidator.wait_subscribed(10)
        events.clear()
        await cache.invalidate("api:after-failover")
        for _ in range(100):
            if any(e["items"] == ["api:after-failover"] for e in events):
                break
            await asyncio.sleep(0.02)
        assert any(e["items"] == ["api:after-failover"] for e in events)


# --- TLS (rediss+sentinel://): the Sentinels and the data nodes listen for TLS only ---------------------------------
async def test_rediss_sentinel_talks_tls_to_the_sentinels_and_the_master(tmp_path: Path, prefix: str) -> None:
    group = SentinelGroup(tls=TLSFiles.make(tmp_path / "tls")).start()
    try:
        assert group.url().startswith("rediss+sentinel://") and "ssl_ca_certs=" in group.url()
        async with Cache(make_config(group.url(), prefix), registry=CollectorRegistry()) as cache:
            await cache.set("api:tls", {"ok": True})
            assert await cache.get("api:tls") == {"ok": True}
            assert (await cache.health())["sentinel"]["master"] == f"{HOST}:{group.master().port}"
        plain = group.url().replace("rediss+", "redis+").split("?")[0]
        async with Cache(make_config(plain, prefix), registry=CollectorRegistry()) as cache:
            with pytest.raises(CacheUnavailableError, match="no healthy master"):
                await cache.set("api:plain", 1)  # plain TCP to a TLS-only Sentinel is refused
    finally:
        group.close()
