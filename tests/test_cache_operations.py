"""Operations of ``mobius_cache.Cache`` against a real redis-server: round trips, TTLs, bad input, patterns."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mobius_cache import (
    MISS,
    Cache,
    CacheConflictError,
    CacheUnavailableError,
    InvalidInputError,
    InvalidKeyError,
    InvalidTTLError,
    SerializationError,
    ValueTooLargeError,
)
from tests.conftest import make_config
from tests.servers import RedisServer


@pytest.mark.parametrize(
    "value",
    [
        "text ünïcode ✓",
        "",
        b"\x00\x01\xffbinary",
        b"",
        {"a": 1, "nested": {"list": [1, 2.5, None, True]}},
        [1, 2, 3],
        0,
        -17,
        3.25,
        True,
        None,
    ],
    ids=repr,
)
async def test_round_trip_keeps_type_and_value(cache: Cache, value: Any) -> None:
    await cache.set("project:1:metadata", value)
    got = await cache.get("project:1:metadata")
    assert got == value
    assert type(got) is type(value)


async def test_a_cached_none_is_a_hit_and_a_miss_is_the_sentinel(cache: Cache) -> None:
    await cache.set("project:2:metadata", None)
    assert await cache.get("project:2:metadata") is None
    assert await cache.get("project:404:metadata") is MISS
    assert await cache.get("project:404:metadata", default="d") == "d"
    assert not MISS and repr(MISS) == "MISS"


async def test_msgpack_and_float32_strategies(shared_redis: RedisServer, prefix: str, registry: Any) -> None:
    from mobius_cache import StrategyConfig

    strategies = {
        "mp": StrategyConfig(serializer="msgpack"),
        "document": StrategyConfig(serializer="float32"),
    }
    async with Cache(make_config(shared_redis.url, prefix, strategies=strategies), registry=registry) as c:
        await c.set("mp:1", {"b": b"raw", "n": [1, 2]})
        assert await c.get("mp:1") == {"b": b"raw", "n": [1, 2]}
        vector = [0.5, -1.25, 3.0, 0.0]
        await c.set("document:9:embedding", vector)
        assert await c.get("document:9:embedding") == vector
        stored = shared_redis.client().get(f"{prefix}document:9:embedding")
        assert len(stored) == 2 + 4 * len(vector)  # header + 4 bytes a dimension


async def test_values_are_stored_under_the_prefix(cache: Cache, shared_redis: RedisServer) -> None:
    await cache.set("api:v1:x", "v")
    assert shared_redis.client().exists(cache.config.cache_prefix + "api:v1:x") == 1


async def test_ttl_default_strategy_explicit_and_clamped(cache: Cache) -> None:
    assert await cache.set("other:1", "v") == cache.config.default_ttl
    assert await cache.set("search:abc:results:1", "v") == cache.config.strategies["search"].ttl
    assert await cache.set("other:2", "v", ttl=10) == 10
    clamped = await cache.set("other:3", "v", ttl=10 * cache.config.max_ttl)
    assert clamped == cache.config.max_ttl
    remaining = await cache.ttl("other:3")
    assert remaining is not None and cache.config.max_ttl - 2 <= remaining <= cache.config.max_ttl
    assert await cache.ttl("other:absent") is None


async def test_ttl_expiry(cache: Cache) -> None:
    await cache.set("other:short", "v", ttl=1)
    assert await cache.get("other:short") == "v"
    deadline = asyncio.get_running_loop().time() + 3
    while await cache.get("other:short") is not MISS:
        assert asyncio.get_running_loop().time() < deadline, "the key did not expire"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("ttl", [0, -1, 1.5, "10", True])
async def test_bad_ttls_are_refused(cache: Cache, ttl: Any) -> None:
    with pytest.raises(InvalidTTLError):
        await cache.set("other:x", "v", ttl=ttl)


@pytest.mark.parametrize(
    "key",
    ["", "a b", "tab\tkey", "new\nline", "ctl\x01", "k" * 513, "é" * 257, 42, None, b"bytes"],
    ids=repr,
)
async def test_bad_keys_are_refused(cache: Cache, key: Any) -> None:
    with pytest.raises(InvalidKeyError):
        await cache.set(key, "v")
    with pytest.raises(InvalidKeyError):
        await cache.get(key)


async def test_longest_allowed_key(cache: Cache) -> None:
    key = "k" * 512
    await cache.set(key, 1)
    assert await cache.get(key) == 1


async def test_value_too_large_and_unserializable(cache: Cache) -> None:
    limit = cache.config.max_value_bytes
    with pytest.raises(ValueTooLargeError) as info:
        await cache.set("other:big", b"x" * (limit + 1))
    assert info.value.limit == limit
    with pytest.raises(SerializationError):
        await cache.set("other:obj", object())
    assert isinstance(SerializationError("x"), InvalidInputError)


async def test_compression_above_threshold(shared_redis: RedisServer, prefix: str, registry: Any) -> None:
    async with Cache(make_config(shared_redis.url, prefix, compress_threshold=100), registry=registry) as c:
        text = "compressible " * 1000
        await c.set("other:z", text)
        assert await c.get("other:z") == text
        assert len(shared_redis.client().get(f"{prefix}other:z")) < len(text) // 5


async def test_delete_exists_add(cache: Cache) -> None:
    assert await cache.add("other:a", 1) is True
    assert await cache.add("other:a", 2) is False
    assert await cache.get("other:a") == 1
    assert await cache.exists("other:a")
    assert await cache.delete("other:a") == 1
    assert not await cache.exists("other:a")
    assert await cache.delete("other:a") == 0


async def test_compare_and_set(cache: Cache) -> None:
    await cache.set("config:flags", {"v": 1})
    assert await cache.compare_and_set("config:flags", {"v": 1}, {"v": 2}) is True
    assert await cache.compare_and_set("config:flags", {"v": 1}, {"v": 3}) is False
    assert await cache.get("config:flags") == {"v": 2}
    entry = await cache.get_entry("config:flags")
    assert entry is not MISS
    assert await cache.compare_and_set("config:flags", None, {"v": 4}, etag=entry.etag) is True
    assert await cache.get("config:flags") == {"v": 4}
    assert await cache.compare_and_set("config:absent", 1, 2) is False


async def test_incr_is_atomic_and_windowed(cache: Cache) -> None:
    results = await asyncio.gather(*(cache.incr("api:v1:hits") for _ in range(200)))
    assert sorted(results) == list(range(1, 201))
    assert await cache.incr("api:v1:hits", by=-50) == 150
    assert await cache.get("api:v1:hits") == 150
    await cache.incr("api:v1:window", ttl=30)
    ttl = await cache.ttl("api:v1:window")
    assert ttl is not None and 0 < ttl <= 30
    await cache.set("api:v1:text", "not a number")
    with pytest.raises(CacheConflictError, match="not an integer counter"):  # the stored value's fault: 409
        await cache.incr("api:v1:text")
    assert await cache.get("api:v1:text") == "not a number"
    with pytest.raises(InvalidInputError):
        await cache.incr("api:v1:hits", by=1.5)  # type: ignore[arg-type]


async def test_batch_get_and_set_in_one_round_trip(cache: Cache) -> None:
    items = {f"other:{i}": {"i": i} for i in range(100)}
    assert await cache.set_many(items) == 100
    got = await cache.get_many([*items, "other:missing"])
    assert got == items
    assert await cache.get_many([]) == {}
    assert await cache.set_many([("other:t1", 1, 5), ("other:t2", "two", None, ["tg"])]) == 2
    assert await cache.get_many(["other:t1", "other:t2"]) == {"other:t1": 1, "other:t2": "two"}
    with pytest.raises(InvalidKeyError):
        await cache.set_many({"ok:1": 1, "bad key": 2})
    assert await cache.get("ok:1") is MISS  # validated before anything was sent


async def test_get_or_set_single_flight(cache: Cache) -> None:
    calls = 0

    async def loader() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return {"loaded": 1}

    results = await asyncio.gather(*(cache.get_or_set("project:9:metadata", loader) for _ in range(100)))
    assert calls == 1
    assert all(r == {"loaded": 1} for r in results)
    assert await cache.get_or_set("project:9:metadata", loader) == {"loaded": 1}
    assert calls == 1


async def test_get_or_set_loader_error_reaches_every_waiter(cache: Cache) -> None:
    async def failing() -> int:
        await asyncio.sleep(0.01)
        raise LookupError("source down")

    results = await asyncio.gather(
        *(cache.get_or_set("other:f", failing) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, LookupError) for r in results)
    assert await cache.get("other:f") is MISS


async def test_get_or_set_sync_loader(cache: Cache) -> None:
    assert await cache.get_or_set("other:sync", lambda: 41 + 1) == 42
    assert await cache.get("other:sync") == 42


async def test_write_through_writes_source_first(cache: Cache) -> None:
    source: dict[str, Any] = {}

    async def writer(value: Any) -> None:
        source["project:3:metadata"] = value

    await cache.write_through("project:3:metadata", {"name": "p3"}, writer)
    assert source == {"project:3:metadata": {"name": "p3"}}
    assert await cache.get("project:3:metadata") == {"name": "p3"}


async def test_write_through_never_leaves_a_stale_value(
    redis_server: RedisServer, prefix: str, registry: Any
) -> None:
    async with Cache(make_config(redis_server.url, prefix, max_value_bytes=1000), registry=registry) as c:
        await c.set("project:4:metadata", "old")
        written: list[Any] = []
        with pytest.raises(CacheUnavailableError):
            # The source accepts it, the cache refuses it (too large): the old cached value must go.
            await c.write_through("project:4:metadata", "n" * 5000, written.append)
        assert written == ["n" * 5000]
        assert await c.get("project:4:metadata") is MISS


async def test_decorator_keys_from_arguments_and_skips_self(cache: Cache) -> None:
    calls: list[int] = []

    class Profiles:
        @cache.cached(ttl=60, key="user:{user_id}:profile")
        async def load(self, user_id: int, verbose: bool = False) -> dict[str, int]:
            calls.append(user_id)
            return {"id": user_id}

    svc = Profiles()
    assert await svc.load(7) == {"id": 7}
    assert await svc.load(user_id=7) == {"id": 7}
    assert calls == [7]
    assert await cache.get("user:7:profile") == {"id": 7}
    assert Profiles.load.key_for(svc, 7) == "user:7:profile"  # type: ignore[attr-defined]
    assert await Profiles.load.invalidate(svc, 7) == 1  # type: ignore[attr-defined]
    await svc.load(7)
    assert calls == [7, 7]


async def test_decorator_default_key_hashes_arguments(cache: Cache) -> None:
    calls = 0

    @cache.cached()
    async def compute(a: int, b: str = "x") -> str:
        nonlocal calls
        calls += 1
        return f"{a}{b}"

    assert await compute(1) == "1x"
    assert await compute(1, b="x") == "1x"
    assert await compute(2) == "2x"
    assert calls == 2
    with pytest.raises(TypeError):
        cache.cached()(lambda: 1)  # type: ignore[arg-type]


async def test_decorator_unknown_template_argument(cache: Cache) -> None:
    @cache.cached(key="user:{nope}:x")
    async def f(user_id: int) -> int:
        return user_id

    with pytest.raises(InvalidKeyError):
        await f(1)


async def test_sidecar_raw_entries_keep_content_type_and_etag(cache: Cache) -> None:
    res = await cache.set_raw("api:v1:img", b"\x89PNG", "image/png", ttl=30)
    assert res.stored and res.ttl == 30
    entry = await cache.get_entry("api:v1:img")
    assert entry is not MISS
    assert (entry.data, entry.content_type, entry.etag) == (b"\x89PNG", "image/png", res.etag)
    again = await cache.set_raw("api:v1:img", b"new", "image/png", if_absent=True)
    assert not again.stored
    wrong = await cache.set_raw("api:v1:img", b"new", "image/png", if_etag='"0000"')
    assert not wrong.stored
    right = await cache.set_raw("api:v1:img", b"new", "image/png", if_etag=res.etag)
    assert right.stored
    await cache.set_raw("api:v1:doc", b'{"a": 1}', "application/json")
    assert await cache.get("api:v1:doc") == {"a": 1}  # JSON from any language reads back as JSON


async def test_foreign_values_are_readable(cache: Cache, shared_redis: RedisServer) -> None:
    shared_redis.client().set(f"{cache.config.cache_prefix}other:foreign", b"\xfe\xfeno envelope")
    assert await cache.get("other:foreign") == b"\xfe\xfeno envelope"


async def test_operations_need_a_started_cache_for_nothing_but_connections(prefix: str) -> None:
    # Construction does no I/O, even with an unreachable Redis.
    Cache(make_config("redis://127.0.0.1:1/0", prefix))
