"""The namespace strategies, domain events and warming, against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mobius_cache import MISS, Cache, CacheUnavailableError, InvalidInputError
from mobius_cache.strategies import (
    ApiResponseCache,
    ConfigCache,
    EmbeddingCache,
    SearchCache,
    SessionStore,
    SessionStoreUnsafeError,
    bytes_saved,
    handle_event,
    params_hash,
    plan_for,
    query_hash,
    warm,
)
from tests.conftest import make_config
from tests.servers import RedisServer


def test_key_builders_follow_the_seed_patterns() -> None:
    assert EmbeddingCache.key(42) == "document:42:embedding"
    assert SearchCache.key("hello", 2).startswith("search:") and SearchCache.key("hello", 2).endswith(
        ":results:2"
    )
    assert SessionStore.key(7) == "user:7:session"
    assert ConfigCache.key("flags") == "config:flags"
    api = ApiResponseCache.__new__(ApiResponseCache)
    api.version = "v1"
    assert api.key("documents/list", {"b": 2, "a": 1}).startswith("api:v1:documents.list:")
    with pytest.raises(ValueError):
        SearchCache.key("q", 0)
    with pytest.raises(ValueError):
        api.key("bad endpoint!")


def test_hashes_are_deterministic_and_normalized() -> None:
    assert query_hash("  Café   LATTE ") == query_hash("café latte")
    assert query_hash("a", {"x": 1, "y": 2}) == query_hash("a", {"y": 2, "x": 1})
    assert query_hash("a") != query_hash("b")
    assert (
        params_hash({"a": 1, "b": 2})
        == params_hash({"b": 2, "a": 1})
        == params_hash({"a": 1, "b": 2, "c": None})
    )
    assert params_hash({"ids": [1, 2]}) != params_hash({"ids": [2, 1]})
    assert len(query_hash("x")) == 24
    # A fixed value: the same in every process and every run (no hash randomization).
    assert query_hash("hello world") == query_hash("HELLO   world")


def test_float32_saves_bytes_against_json() -> None:
    vector = [0.123456789 * i for i in range(768)]
    sizes = bytes_saved(vector)
    assert sizes["float32"] == 2 + 4 * 768
    assert sizes["json"] > 2.5 * sizes["float32"]


async def test_embeddings_round_trip_and_project_cascade(cache: Cache) -> None:
    emb = EmbeddingCache(cache)
    await cache.set("project:5:metadata", {"name": "five"})
    await emb.set(1, [0.5, 0.25], project_id=5)
    await emb.set(2, [1.0, -1.0], project_id=5)
    assert await emb.get(1) == [0.5, 0.25]
    assert await emb.get_many([1, 2, 3]) == {"1": [0.5, 0.25], "2": [1.0, -1.0]}
    assert await handle_event(cache, "project_updated", project_id=5) == 3  # metadata + 2 embeddings
    assert await emb.get(1) is MISS


async def test_search_results_tagged_by_project_and_index(cache: Cache) -> None:
    search = SearchCache(cache)
    await search.set("red shoes", [{"id": 1}], project_id=3, index_version="v1")
    await search.set("red shoes", [{"id": 2}], project_id=3, page=2, index_version="v1")
    await search.set("blue", [{"id": 3}], project_id=4)
    assert await search.get("RED  shoes") == [{"id": 1}]
    assert await search.invalidate_index(3, "v1") == 2
    assert await search.get("red shoes") is MISS
    assert await search.get("blue") == [{"id": 3}]
    ttl = await cache.ttl(SearchCache.key("blue"))
    assert ttl is not None and ttl <= 300


async def test_document_update_event_reaches_embedding_search_and_api(cache: Cache) -> None:
    emb, search, api = EmbeddingCache(cache), SearchCache(cache), ApiResponseCache(cache)
    await emb.set(9, [1.0], project_id=2)
    await search.set("q", ["hit"], project_id=2)
    await api.set("documents/get", {"id": 9}, {"doc": 9}, resources=[("document", 9)])
    await api.set("documents/get", {"id": 10}, {"doc": 10}, resources=[("document", 10)])
    deleted = await handle_event(cache, "document_updated", document_id=9, project_id=2)
    assert deleted == 3
    assert await emb.get(9) is MISS and await search.get("q") is MISS
    assert await api.get("documents/get", {"id": 9}) is MISS
    assert await api.get("documents/get", {"id": 10}) == {"doc": 10}


def test_unknown_events_and_bad_payloads_are_errors() -> None:
    with pytest.raises(InvalidInputError, match="unknown domain event"):
        plan_for("document_exploded", document_id=1)
    with pytest.raises(InvalidInputError, match="bad payload"):
        plan_for("document_updated", document_id=1)
    assert plan_for("user_logged_out", user_id=3).keys == ("user:3:session",)


async def test_sessions_slide_on_read(cache: Cache, registry: CollectorRegistry) -> None:
    store = SessionStore(cache, allow_eviction=True)
    await store.set(1, {"user": 1}, ttl=100)
    key = SessionStore.key(1)
    # shorten, then read: the read extends it back to the strategy TTL (sliding expiry)
    await cache._exec("EXPIRE", cache.keys.full(key), 5)
    assert await store.get(1) == {"user": 1}
    ttl = await cache.ttl(key)
    assert ttl is not None and ttl > 5
    assert await handle_event(cache, "user_logged_out", user_id=1) == 1
    assert await store.get(1) is MISS


async def test_session_store_refuses_an_evicting_redis(cache: Cache) -> None:
    store = SessionStore(cache)  # the shared test Redis runs allkeys-lru
    with pytest.raises(SessionStoreUnsafeError, match="noeviction"):
        await store.set(1, {"u": 1})


async def test_sessions_are_never_silently_evicted_under_pressure() -> None:
    """A noeviction store refuses new writes loudly when full; every stored session stays readable.
    The same load on an allkeys-lru Redis loses sessions without a word — the reason for the rule."""
    value = {"blob": "s" * 2000}
    for policy, expect_loss in (("noeviction", False), ("allkeys-lru", True)):
        server = RedisServer(maxmemory="4mb", policy=policy).start()
        try:
            async with Cache(make_config(server.url), registry=CollectorRegistry()) as c:
                store = SessionStore(c, allow_eviction=expect_loss)
                stored: list[int] = []
                refused = 0
                for uid in range(4000):  # ~8 MB into 4 MB
                    try:
                        await store.set(uid, value)
                        stored.append(uid)
                    except CacheUnavailableError as exc:
                        assert "out of memory" in str(exc)
                        refused += 1
                present = await c.get_many([SessionStore.key(u) for u in stored])
                lost = len(stored) - len(present)
                if expect_loss:
                    assert refused == 0 and lost > 0
                else:
                    assert refused > 0 and lost == 0
        finally:
            server.close()


async def test_config_cache_warms_and_is_invalidated_by_event(cache: Cache) -> None:
    loads: list[str] = []

    async def load(name: str) -> dict[str, str]:
        loads.append(name)
        return {"name": name}

    cfg = ConfigCache(cache, load)
    report = await cfg.warm(["flags", "limits", "flags"])
    assert (report.total, report.loaded, report.failed) == (2, 2, 0)
    assert await cfg.get("flags") == {"name": "flags"}
    assert loads == ["flags", "limits"]  # served from the warm cache
    await handle_event(cache, "config_changed", name="flags")
    await cfg.get("flags")
    assert loads == ["flags", "limits", "flags"]
    ttl = await cache.ttl("config:limits")
    assert ttl is not None and ttl > 3600


async def test_warming_is_bounded_reports_progress_and_survives_failures(cache: Cache) -> None:
    running = peak = 0
    progress: list[tuple[int, int]] = []

    async def loader(key: str) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        if key.endswith(":13"):
            raise RuntimeError("source error")
        return key

    await cache.set("other:0", "already")
    report = await warm(
        cache,
        [f"other:{i}" for i in range(40)],
        loader,
        concurrency=4,
        on_progress=lambda d, t: progress.append((d, t)),
    )
    assert peak <= 4
    assert (report.total, report.loaded, report.skipped, report.failed) == (40, 38, 1, 1)
    assert "other:13" in report.errors
    assert progress[-1] == (40, 40) and len(progress) == 40
    assert await cache.get("other:5") == "other:5"


async def test_hot_search_queries_are_warmed_with_tags(cache: Cache) -> None:
    search = SearchCache(cache)

    async def run_search(query: str, page: int) -> list[Any]:
        return [query, page]

    report = await search.warm([("popular", 1), ("trending", 2)], run_search, pages=2)
    assert report.loaded == 4
    assert await search.get("popular", 2) == ["popular", 2]
    assert await search.invalidate_project(2) == 2
