"""No partial writes, and honest errors, when Redis refuses part of a command (issue 16).

Every refusal that can be produced on purpose, with real redis-server processes: an ACL user without TIME or
ZADD, a full ``noeviction`` Redis, a wrong-type key where an index should be, a replica as target, a replica
without its primary, a busy Redis, a loading Redis, SCRIPT FLUSH between calls. For each, a tagged, dependent
or compare-and-set write stores the value and every index entry, or nothing; the exception says what
happened; and a following tag or cascade invalidation leaves nothing stale. The cluster path (index entries
first, then the value) is checked on the local cluster against the refusals that can hit it half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from mobius_cache import (
    MISS,
    Cache,
    CacheConflictError,
    CacheUnavailableError,
    CircuitOpenError,
    IndexCorruptedError,
    InvalidationQueuedError,
    InvalidKeyError,
    RedisBusyError,
    RedisLoadingError,
    RedisMasterDownError,
    RedisNoPermissionError,
    RedisOutOfMemoryError,
    RedisReadOnlyError,
    RedisRefusedError,
)
from mobius_cache._exceptions import translate
from mobius_cache._refusals import RefusalLog
from tests.conftest import make_config
from tests.servers import HOST, RedisCluster, RedisServer, free_port, wait_for_port

PASSWORD = "pw-partial"


@dataclass
class Backend:
    """A cache (the unrestricted default user) on standalone Redis or the local cluster, with the nodes behind
    it, so that a test can create ACL users, flush scripts and look at what was really stored."""

    cache: Cache
    nodes: list[RedisServer]
    cluster: bool
    users: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.cache.keys.prefix

    def raw(self) -> Any:
        if self.cluster:
            return redis.RedisCluster(host=HOST, port=self.nodes[0].port)
        return self.nodes[0].client()

    def user(self, *rules: str) -> Cache:
        """A cache logged in as a new ACL user (``+@all`` plus ``rules``) on every node."""
        name = f"app{uuid.uuid4().hex[:6]}"
        for node in self.nodes:
            with node.client() as c:
                c.execute_command("ACL", "SETUSER", name, "on", f">{PASSWORD}", "&*", "+@all", *rules)
        self.users.append(name)
        scheme = "redis+cluster" if self.cluster else "redis"
        url = f"{scheme}://{name}:{PASSWORD}@{HOST}:{self.nodes[0].port}/0"
        return Cache(make_config(url, self.prefix, redis_min_connections=0), registry=CollectorRegistry())

    def grant(self, *rules: str) -> None:
        for node in self.nodes:
            for name in self.users:
                with node.client() as c:
                    c.execute_command("ACL", "SETUSER", name, *rules)

    def flush_scripts(self) -> None:
        for node in self.nodes:
            with node.client() as c:
                c.script_flush()

    def drop_users(self) -> None:
        for node in self.nodes:
            with node.client() as c:
                for name in self.users:
                    c.execute_command("ACL", "DELUSER", name)


@pytest.fixture(params=["standalone", "cluster"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    prefix = f"p{uuid.uuid4().hex[:6]}:"
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        nodes, url = cluster.nodes, cluster.url
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        nodes, url = [server], server.url
    cfg = make_config(url, prefix, redis_min_connections=0)
    async with Cache(cfg, registry=CollectorRegistry()) as cache:
        b = Backend(cache, nodes, request.param == "cluster")
        try:
            yield b
        finally:
            b.drop_users()


def all_or_nothing(
    raw: Any, prefix: str, key: str, tags: Sequence[str] = (), parents: Sequence[str] = ()
) -> bool:
    """Assert the value and each of its index entries are all there or all absent; True when there."""
    fk = prefix + key
    indexes = [f"{prefix}~tag:{t}" for t in tags] + [f"{prefix}~deps:{prefix}{p}" for p in parents]
    stored = raw.exists(fk) == 1
    listed = {ik: raw.type(ik) == b"zset" and raw.zscore(ik, fk) is not None for ik in indexes}
    assert all(v == stored for v in listed.values()), f"{fk} {'stored' if stored else 'absent'}: {listed}"
    return stored


def score(raw: Any, prefix: str, tag: str, key: str) -> float | None:
    value: float | None = raw.zscore(f"{prefix}~tag:{tag}", prefix + key)
    return value


# --- ACL: a user without a command the index needs ----------------------------------------------------------


@pytest.mark.parametrize(("rule", "command"), [("-time", "TIME"), ("-zadd", "ZADD")])
async def test_a_user_without_a_command_the_index_needs_writes_nothing(
    backend: Backend, rule: str, command: str
) -> None:
    admin, pre, raw = backend.cache, backend.prefix, backend.raw()
    await admin.set("project:1:metadata", "p")
    await admin.set("document:1:embedding", "d", depends_on=["project:1:metadata"])
    await admin.set("search:old:results:1", "v1", tags=["t"])
    before = score(raw, pre, "t", "search:old:results:1")
    old = await admin.get_entry("search:old:results:1")
    assert old is not MISS
    async with backend.user(f"{rule}", "~*") as app:
        with pytest.raises(RedisNoPermissionError, match=f"may not run {command}") as refused:
            await app.set("search:q:results:1", "v", tags=["t"])
        assert refused.value.redis_code == "NOPERM" and refused.value.retry_after is None
        assert refused.value.command and refused.value.command.endswith(("set_indexed", "index_add"))
        with pytest.raises(RedisNoPermissionError):
            await app.set("search:d:results:1", "v", depends_on=["project:1:metadata"])
        with pytest.raises(RedisNoPermissionError):  # compare-and-set with a tag
            await app.set_raw("search:old:results:1", b"v2", "text/plain", tags=["t"], if_etag=old.etag)
        with pytest.raises(RedisNoPermissionError):
            await app.add("search:n:results:1", "v", tags=["t"])
        assert not all_or_nothing(raw, pre, "search:q:results:1", ["t"])
        assert not all_or_nothing(raw, pre, "search:d:results:1", parents=["project:1:metadata"])
        assert not all_or_nothing(raw, pre, "search:n:results:1", ["t"])
        assert all_or_nothing(raw, pre, "search:old:results:1", ["t"])
        assert await app.get("search:old:results:1") == "v1"
        assert score(raw, pre, "t", "search:old:results:1") == before

        await app.set("search:plain:results:1", "v")  # no index, no need for the command
        assert app.circuit_state == "closed"  # a missing permission is not an outage: reads go on
        health = await app.health()
        assert health["ok"] and health["refused"]["code"] == "NOPERM"
        assert app.stats()["refusals"]["NOPERM"] == 4

        # The same user's invalidations need neither command, and leave nothing stale.
        assert await app.invalidate_tags("t") == 1
        assert await app.invalidate("project:1:metadata", cascade=True) == 2
        for key in ("search:old:results:1", "project:1:metadata", "document:1:embedding"):
            assert await admin.get(key) is MISS
        assert raw.exists(f"{pre}~tag:t", f"{pre}~deps:{pre}project:1:metadata") == 0
    raw.close()


# --- a wrong-type key where an index should be ------------------------------------------------------------------


async def test_a_wrong_type_index_refuses_the_write_and_invalidation_clears_it(backend: Backend) -> None:
    c, pre, raw = backend.cache, backend.prefix, backend.raw()
    await c.set("search:k:results:1", "v0", tags=["good"])
    before = score(raw, pre, "good", "search:k:results:1")
    raw.set(f"{pre}~tag:bad", "junk")
    raw.set(f"{pre}~deps:{pre}project:1:metadata", "junk")

    with pytest.raises(IndexCorruptedError, match="~tag:bad holds a string") as refused:
        await c.set("search:k:results:1", "v1", tags=["good", "bad"])
    assert refused.value.redis_code == "BADINDEX"
    with pytest.raises(IndexCorruptedError):
        await c.set("search:n:results:1", "v", tags=["good", "bad"])
    with pytest.raises(IndexCorruptedError):
        await c.set("document:1:embedding", "d", depends_on=["project:1:metadata"])
    # Nothing written beside the bad index either: the earlier value keeps its entry, unchanged.
    assert await c.get("search:k:results:1") == "v0"
    assert score(raw, pre, "good", "search:k:results:1") == before
    assert not all_or_nothing(raw, pre, "search:n:results:1", ["good"])
    assert raw.exists(f"{pre}document:1:embedding") == 0

    # Invalidating the tag (or the parent) removes what is not an index; then writes work again.
    assert await c.invalidate_tags("bad") == 0
    assert await c.invalidate("project:1:metadata", cascade=True) == 0
    await c.set("search:n:results:1", "v", tags=["good", "bad"])
    await c.set("document:1:embedding", "d", depends_on=["project:1:metadata"])
    assert all_or_nothing(raw, pre, "search:n:results:1", ["good", "bad"])
    assert all_or_nothing(raw, pre, "document:1:embedding", parents=["project:1:metadata"])
    assert await c.invalidate_tags("good") == 2
    assert await c.invalidate("project:1:metadata", cascade=True) == 1
    assert await c.get_many(["search:k:results:1", "search:n:results:1", "document:1:embedding"]) == {}
    raw.close()


async def test_a_failed_condition_leaves_the_index_as_it_was(backend: Backend) -> None:
    """On a cluster the entries are written before the value's condition is checked: they are taken back."""
    c, pre, raw = backend.cache, backend.prefix, backend.raw()
    await c.set("search:k:results:1", "v0", ttl=100, tags=["t"])
    before = score(raw, pre, "t", "search:k:results:1")
    assert not await c.add("search:k:results:1", "v1", ttl=900, tags=["t", "u"])
    res = await c.set_raw("search:k:results:1", b"v1", "text/plain", ttl=900, tags=["t", "u"], if_etag='"0"')
    assert not res.stored
    assert score(raw, pre, "t", "search:k:results:1") == before
    assert raw.exists(f"{pre}~tag:u") == 0
    assert await c.get("search:k:results:1") == "v0"
    raw.close()


# --- SCRIPT FLUSH between calls ------------------------------------------------------------------------------


async def test_script_flush_between_calls_is_invisible(backend: Backend) -> None:
    c, pre, raw = backend.cache, backend.prefix, backend.raw()
    steps: list[Callable[[], Any]] = [
        lambda: c.set("project:1:metadata", "p", tags=["t"]),
        lambda: c.set("document:1:embedding", "d", tags=["t"], depends_on=["project:1:metadata"]),
        lambda: c.add("search:a:results:1", "a", tags=["t"]),
        lambda: c.compare_and_set("search:a:results:1", "a", "b"),
        lambda: c.incr("api:v1:n", 2, ttl=60),
        lambda: c.invalidate("project:1:metadata", cascade=True),
        lambda: c.set("search:b:results:1", "b", tags=["t"]),
        lambda: c.invalidate_tags("t"),
    ]
    results = []
    for step in steps:
        backend.flush_scripts()
        results.append(await step())
    assert results[2:] == [True, True, 2, 2, results[6], 2]
    assert await c.get_many(["project:1:metadata", "document:1:embedding", "search:a:results:1"]) == {}
    assert raw.exists(f"{pre}~tag:t") == 0
    assert "NOSCRIPT" not in c.stats()["refusals"]
    raw.close()


# --- invalidations refused half-way --------------------------------------------------------------------------


async def test_a_cascade_refused_half_way_is_replayed_to_the_end(backend: Backend) -> None:
    admin, pre, raw = backend.cache, backend.prefix, backend.raw()
    chain = ["project:1:metadata", "document:1:embedding", "search:a:results:1", "api:v1:x"]
    await admin.set(chain[0], 0)
    for parent, child in itertools.pairwise(chain):
        await admin.set(child, 1, depends_on=[parent])
    # This user may delete projects and documents, and use the indexes, but not search results.
    async with backend.user(f"~{pre}project:*", f"~{pre}document:*", f"~{pre}~*") as app:
        with pytest.raises(InvalidationQueuedError, match=r"NOPERM|permission"):
            await app.invalidate(chain[0], cascade=True)
        assert await admin.get_many(chain) == {chain[2]: 1, chain[3]: 1}
        backend.grant("allkeys")  # the deployment is fixed: the queued cascade finishes from its root
        assert await app.invalidator.drain(10)
        assert await admin.get_many(chain) == {}
    for parent in chain:
        assert raw.exists(f"{pre}~deps:{pre}{parent}") == 0
    raw.close()


async def test_a_tag_invalidation_refused_half_way_is_replayed_to_the_end(backend: Backend) -> None:
    admin, pre, raw = backend.cache, backend.prefix, backend.raw()
    # 500 search results expire first (the first UNLINK batch), 20 api responses later (the second).
    await admin.set_many([(f"search:s{i}:results:1", i, 100, ["t"]) for i in range(500)])
    await admin.set_many([(f"api:v1:a{i}", i, 200, ["t"]) for i in range(20)])
    async with backend.user(f"~{pre}search:*", f"~{pre}~*") as app:
        with pytest.raises(InvalidationQueuedError):
            await app.invalidate_tags("t")
        left = await admin.get_many([f"api:v1:a{i}" for i in range(20)])
        assert len(left) == 20  # refused: still cached, and still listed under the tag
        assert all(all_or_nothing(raw, pre, f"api:v1:a{i}", ["t"]) for i in range(20))
        backend.grant("allkeys")
        assert await app.invalidator.drain(10)
    assert await admin.get_many([f"api:v1:a{i}" for i in range(20)]) == {}
    assert raw.exists(f"{pre}~tag:t") == 0
    raw.close()


async def test_an_entry_rewritten_during_an_invalidation_stays(backend: Backend) -> None:
    """Between reading an index and forgetting what it deleted, a writer may store the key again: its new
    entry (a new score) must survive, or the new value would be out of reach of the next invalidation."""
    c, pre, raw = backend.cache, backend.prefix, backend.raw()
    await c.set("search:a:results:1", 1, ttl=100, tags=["t", "u"])
    await c.set("search:b:results:1", 1, ttl=100, tags=["t"])
    tags = [c.keys.tag_key("t"), c.keys.tag_key("u")]
    index, corrupted = await c.invalidator._read_indexes(tags)
    assert corrupted == [] and sorted(len(found) for found in index.values()) == [1, 2]
    await c.set("search:a:results:1", 2, ttl=900, tags=["t", "u"])
    await c.invalidator._forget(index)
    assert raw.zrange(tags[0], 0, -1) == [f"{pre}search:a:results:1".encode()]
    assert raw.zrange(tags[1], 0, -1) == [f"{pre}search:a:results:1".encode()]
    assert await c.invalidate_tags("u") == 1
    raw.close()


# --- a full noeviction Redis ---------------------------------------------------------------------------------


def make_full(client: redis.Redis) -> None:
    """Turn a Redis into a full ``noeviction`` one: maxmemory below what it already uses."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) // 2)


async def test_a_full_noeviction_redis_writes_nothing_and_still_invalidates() -> None:
    server = RedisServer().start()
    raw = server.client()
    try:
        async with Cache(make_config(server.url, "p:"), registry=CollectorRegistry()) as c:
            await c.set("project:1:metadata", "p")
            await c.set("document:1:embedding", "d", depends_on=["project:1:metadata"])
            await c.set("search:old:results:1", "v1", tags=["t"])
            old = await c.get_entry("search:old:results:1")
            assert old is not MISS
            make_full(raw)
            writes: list[Callable[[], Awaitable[Any]]] = [
                lambda: c.set("search:q:results:1", "v", tags=["t"]),
                lambda: c.set("search:d:results:1", "v", depends_on=["project:1:metadata"]),
                lambda: c.set_raw("search:old:results:1", b"v2", "text/plain", tags=["t"], if_etag=old.etag),
                lambda: c.add("search:n:results:1", "v", tags=["t"]),
                lambda: c.set("search:plain:results:1", "v"),
                lambda: c.incr("api:v1:n"),
            ]
            for write in writes:
                with pytest.raises(RedisOutOfMemoryError, match="out of memory") as refused:
                    await write()
                assert refused.value.retry_after == 1 and not refused.value.outage
            for key in ("search:q:results:1", "search:n:results:1", "search:plain:results:1"):
                assert not all_or_nothing(raw, "p:", key, ["t"])
            assert not all_or_nothing(raw, "p:", "search:d:results:1", parents=["project:1:metadata"])
            # Reads and invalidations still work: the circuit stays closed, nothing stays stale.
            assert c.circuit_state == "closed"
            assert await c.get("search:old:results:1") == "v1"
            assert await c.invalidate_tags("t") == 1
            assert await c.invalidate("project:1:metadata", cascade=True) == 2
            assert await c.get_many(["search:old:results:1", "document:1:embedding"]) == {}
            assert raw.exists("p:~tag:t", "p:~deps:p:project:1:metadata") == 0
            assert (await c.health())["refused"]["code"] == "OOM"
    finally:
        raw.close()
        server.close()


async def test_cluster_value_refused_after_its_index_entries_takes_them_back(
    redis_cluster: RedisCluster,
) -> None:
    """The cluster writes the index entries first; a value refused afterwards (its node is full) must not
    leave them behind, nor lower an earlier value's entry."""
    prefix = f"p{uuid.uuid4().hex[:6]}:"
    raw = redis.RedisCluster(host=HOST, port=redis_cluster.nodes[0].port)
    tag = "t"
    index_node = raw.get_node_from_key(f"{prefix}~tag:{tag}")
    key = next(
        k
        for k in (f"search:q{i}:results:1" for i in range(1000))
        if raw.get_node_from_key(prefix + k).port != index_node.port
    )
    value_port = raw.get_node_from_key(prefix + key).port
    value_node = next(n for n in redis_cluster.nodes if n.port == value_port)
    new_key = next(
        k
        for k in (f"search:n{i}:results:1" for i in range(1000))
        if raw.get_node_from_key(prefix + k).port == value_port
    )
    cfg = make_config(redis_cluster.url, prefix, redis_min_connections=0)
    async with Cache(cfg, registry=CollectorRegistry()) as c:
        await c.set(key, "v0", ttl=100, tags=[tag])
        before = score(raw, prefix, tag, key)
        with value_node.client() as full:
            full.config_set("maxmemory-policy", "noeviction")
            full.config_set("maxmemory", 1)
            try:
                with pytest.raises(RedisOutOfMemoryError):
                    await c.set(key, "v1", ttl=900, tags=[tag])
                with pytest.raises(RedisOutOfMemoryError):
                    await c.set(new_key, "v", tags=[tag])
            finally:
                full.config_set("maxmemory", "64mb")
                full.config_set("maxmemory-policy", "allkeys-lru")
        assert score(raw, prefix, tag, key) == before
        assert await c.get(key) == "v0"
        assert not all_or_nothing(raw, prefix, new_key, [tag])
        assert await c.invalidate_tags(tag) == 1
        assert await c.get(key) is MISS
    raw.close()


# --- replicas, a busy or loading Redis: "this Redis cannot serve us" ------------------------------------------


async def test_a_replica_as_target_refuses_writes_and_says_so(redis_server: RedisServer) -> None:
    replica = RedisServer(extra_args=["--replicaof", HOST, str(redis_server.port)]).start()
    master = redis_server.client()
    try:
        async with Cache(make_config(redis_server.url, "p:"), registry=CollectorRegistry()) as primary:
            await primary.set("search:old:results:1", "v1", tags=["t"])
        cfg = make_config(replica.url, "p:", breaker_reset_timeout=30)
        async with Cache(cfg, registry=CollectorRegistry()) as c:
            health = await c.health()
            assert not health["ok"] and "read-only replica" in health["error"]
            with pytest.raises(RedisReadOnlyError, match="read-only replica") as refused:
                await c.set("search:q:results:1", "v", tags=["t"])
            assert refused.value.outage and refused.value.retry_after == 1
            assert c.circuit_state == "open"  # counted like a lost connection
            assert (await c.health())["refused"]["code"] == "READONLY"
            # The invalidation is owed, not dropped.
            with pytest.raises(InvalidationQueuedError):
                await c.invalidate_tags("t")
            assert len(c.invalidator.queue) == 1
        assert not all_or_nothing(master, "p:", "search:q:results:1", ["t"])
        assert all_or_nothing(master, "p:", "search:old:results:1", ["t"])
    finally:
        master.close()
        replica.close()


async def test_a_replica_without_its_primary_is_an_outage() -> None:
    nowhere = str(free_port())
    replica = RedisServer(
        extra_args=["--replicaof", HOST, nowhere, "--replica-serve-stale-data", "no"]
    ).start()
    try:
        async with Cache(make_config(replica.url, "p:"), registry=CollectorRegistry()) as c:
            with pytest.raises(RedisMasterDownError) as refused:
                await c.exists("search:q:results:1")
            assert refused.value.outage and refused.value.redis_code == "MASTERDOWN"
            assert c.circuit_state == "open"
            assert await c.get("search:q:results:1") is MISS
            health = await c.health()
            assert not health["ok"] and health["refused"]["code"] == "MASTERDOWN"
    finally:
        replica.close()


@pytest.fixture
def busy_redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """A Redis running an endless (killable: it writes nothing) script, answering BUSY after 50 ms."""
    with redis_server.client() as c:
        c.config_set("busy-reply-threshold", 50)

    def endless() -> None:
        with redis_server.client() as runner, pytest.raises(redis.exceptions.ResponseError):
            runner.eval("local i = 0 while true do i = i + 1 end", 0)

    thread = threading.Thread(target=endless)
    thread.start()
    try:
        yield redis_server
    finally:
        deadline = time.monotonic() + 5
        while thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(redis.exceptions.RedisError), redis_server.client() as killer:
                killer.script_kill()  # NOTBUSY once the script is gone
            thread.join(0.1)


async def test_a_busy_redis_is_an_outage_that_passes(busy_redis: RedisServer) -> None:
    cfg = make_config(busy_redis.url, "p:", redis_min_connections=0)
    async with Cache(cfg, registry=CollectorRegistry()) as c:
        deadline = time.monotonic() + 5
        while True:  # the script starts answering BUSY after the threshold
            try:
                await c.set("search:q:results:1", "v", tags=["t"])
            except RedisBusyError as exc:
                assert exc.outage and exc.retry_after == 1 and "busy running a script" in str(exc)
                break
            assert time.monotonic() < deadline, "Redis never answered BUSY"
        assert (await c.health())["refused"]["code"] == "BUSY"
        with busy_redis.client() as killer:
            killer.script_kill()
        deadline = time.monotonic() + 5
        while True:  # the killed script stops at its next check
            try:
                await c.set("search:q:results:1", "v", tags=["t"])
                break
            except (RedisBusyError, CircuitOpenError):  # BUSY counts toward the breaker
                assert time.monotonic() < deadline, "still BUSY after SCRIPT KILL"
                await asyncio.sleep(0.05)
        with busy_redis.client() as raw:
            assert all_or_nothing(raw, "p:", "search:q:results:1", ["t"])


async def test_a_loading_redis_is_an_outage(redis_server: RedisServer) -> None:
    with redis_server.client() as raw:
        pipe = raw.pipeline(transaction=False)
        for i in range(3000):
            pipe.set(f"old:{i}", i)
        pipe.execute()
        raw.save()
    # Restart, loading the keys at 1 ms each and answering clients meanwhile (LOADING). start() waits until
    # the loading is over, so it runs beside the test.
    redis_server.stop()
    redis_server.extra_args += ["--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024"]
    starting = threading.Thread(target=redis_server.start)
    starting.start()
    try:
        wait_for_port(redis_server.port)
        cfg = make_config(redis_server.url, "p:", redis_min_connections=0)
        async with Cache(cfg, registry=CollectorRegistry()) as c:
            with pytest.raises(RedisLoadingError, match="loading its dataset") as refused:
                await c.set("search:q:results:1", "v", tags=["t"])
            assert refused.value.outage and refused.value.retry_after == 1
            assert await c.get("old:1") is MISS  # reads fail open
            health = await c.health()
            assert not health["ok"] and health["refused"]["code"] == "LOADING"
    finally:
        starting.join(30)
    with redis_server.client() as raw:
        assert raw.dbsize() == 3000  # and nothing of ours
        assert not all_or_nothing(raw, "p:", "search:q:results:1", ["t"])


async def test_other_refusals_keep_their_redis_code(redis_server: RedisServer) -> None:
    with redis_server.client() as raw:
        raw.config_set("min-replicas-to-write", 1)
        async with Cache(make_config(redis_server.url, "p:"), registry=CollectorRegistry()) as c:
            with pytest.raises(RedisRefusedError, match="too few replicas") as refused:
                await c.set("search:q:results:1", "v", tags=["t"])
            err = refused.value
            assert (err.redis_code, err.retry_after, err.outage) == ("NOREPLICAS", 1, False)
            assert not all_or_nothing(raw, "p:", "search:q:results:1", ["t"])


# --- the translation table and the refusal log (pure) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "cls", "code", "outage"),
    [
        (
            redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
            "RedisOutOfMemoryError",
            "OOM",
            False,
        ),
        (
            redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
            "RedisReadOnlyError",
            "READONLY",
            True,
        ),
        (
            redis.exceptions.NoPermissionError("this user has no permissions to run the 'time' command"),
            "RedisNoPermissionError",
            "NOPERM",
            False,
        ),
        (
            redis.exceptions.NoScriptError("No matching script. Please use EVAL."),
            "RedisScriptMissingError",
            "NOSCRIPT",
            False,
        ),
        (
            redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
            "RedisLoadingError",
            "LOADING",
            True,
        ),
        (
            redis.exceptions.MasterDownError("Link with MASTER is down"),
            "RedisMasterDownError",
            "MASTERDOWN",
            True,
        ),
        (
            redis.exceptions.ResponseError("BUSY Redis is busy running a script."),
            "RedisBusyError",
            "BUSY",
            True,
        ),
        (
            redis.exceptions.ResponseError("BADINDEX the index key k holds a string"),
            "IndexCorruptedError",
            "BADINDEX",
            False,
        ),
        (
            redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots"),
            "RedisRefusedError",
            "MISCONF",
            False,
        ),
        (
            # Redis 7 inside a script: an ACL denial is a bare ERR, with the script's location appended.
            redis.exceptions.ResponseError(
                "The user executing the script can't run this command or subcommand script: "
                + "a" * 40
                + ", on @user_script:3."
            ),
            "RedisNoPermissionError",
            "NOPERM",
            False,
        ),
        (redis.exceptions.ResponseError("unknown command 'GETEX'"), "RedisRefusedError", "ERR", False),
    ],
)
def test_each_redis_refusal_has_its_class(reply: Exception, cls: str, code: str, outage: bool) -> None:
    err = translate(reply, "EVALSHA set_indexed")
    assert type(err).__name__ == cls and isinstance(err, RedisRefusedError)
    assert (err.redis_code, err.outage, err.command) == (code, outage, "EVALSHA set_indexed")
    assert err.__cause__ is reply and "@user_script" not in str(err) and "EVALSHA set_indexed" in str(err)


@pytest.mark.parametrize(
    "reply",
    [
        redis.exceptions.ResponseError("value is not an integer or out of range"),
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        redis.exceptions.ResponseError("increment or decrement would overflow"),
    ],
)
def test_what_the_client_caused_is_a_conflict(reply: Exception) -> None:
    err = translate(reply, "INCRBY")
    assert isinstance(err, CacheConflictError) and not isinstance(err, CacheUnavailableError)


def test_the_refusal_log_says_each_kind_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    refusals = RefusalLog(clock=lambda: now[0])
    oom = translate(redis.exceptions.OutOfMemoryError("full"), "SET")
    with caplog.at_level("WARNING", logger="mobius_cache"):
        for _ in range(5):
            refusals.note(oom)
        refusals.note(
            translate(redis.exceptions.NoScriptError("gone"), "EVALSHA set_indexed")
        )  # not a refusal
        refusals.note(translate(redis.exceptions.OutOfMemoryError("full"), "EVAL set_indexed"))
        refusals.note(translate(redis.exceptions.OutOfMemoryError("full"), "EVALSHA set_indexed"))
        now[0] += 11
        refusals.note(oom)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[0].startswith("Redis refused SET: Redis is out of memory")
    assert "set_indexed" in lines[1] and "(4 more since the last report)" in lines[2]
    assert refusals.counts == {"OOM": 8}
    report = refusals.report()
    assert report is not None and report["code"] == "OOM" and report["command"] == "SET"
    now[0] += 61
    assert refusals.report() is None


async def test_no_key_can_take_the_place_of_an_index(cache: Cache) -> None:
    """Through the layer, nothing can be stored where an index lives: keys starting with '~' are refused."""
    for key in ("~tag:t", "~deps:x", "~anything"):
        with pytest.raises(InvalidKeyError, match="reserved"):
            await cache.set(key, "v")
    await cache.set("a~tag:t", "v")  # a '~' inside a key is fine
    await cache.set("search:q:results:1", "v", tags=["~t"])  # and in a tag
    assert await cache.invalidate_tags("~t") == 1
