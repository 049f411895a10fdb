"""The near cache's pure logic (no Redis): byte bound, W-TinyLFU, TTLs, guarded fills; and its configuration."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from mobius_cache import CacheConfig, StrategyConfig
from mobius_cache._envelope import Entry
from mobius_cache._near import SLOT_OVERHEAD, FrequencySketch, NearCache

HIT = ("x", "get", "hit")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def entry(size: int = 10, tag: str = "v") -> Entry:
    return Entry((tag * size).encode()[:size], "application/octet-stream", f'"{tag}"', 0)


def fill(near: NearCache, key: str, size: int = 10, ttl_ms: int = -1, tag: str = "v") -> bool:
    f = near.begin(key)
    assert f is not None
    return near.finish(f, entry(size, tag), False, ttl_ms, HIT)


def live(max_bytes: int = 100_000, clock: Clock | None = None) -> NearCache:
    near = NearCache(max_bytes, clock=clock or Clock())
    near.set_live(True)
    return near


def test_a_filled_key_is_served_and_counted() -> None:
    near = live()
    assert near.get("k") is None
    assert fill(near, "k")
    slot = near.get("k")
    assert slot is not None and slot.entry.data == b"v" * 10
    assert (near.hits, near.misses) == (1, 1)
    assert near.bytes == near.fixed_bytes + 10 + len("k") + SLOT_OVERHEAD


def test_nothing_is_stored_or_served_while_not_live() -> None:
    near = NearCache(100_000)
    assert near.begin("k") is None  # not live yet: tracking is not established
    near.set_live(True)
    assert fill(near, "k")
    near.set_live(False)  # tracking lost: flushed at once
    assert near.get("k") is None and len(near) == 0 and near.bytes == near.fixed_bytes
    assert near.begin("k") is None


def test_an_invalidation_during_a_read_spoils_its_fill() -> None:
    near = live()
    f = near.begin("k")
    assert f is not None
    near.invalidate(["k"])  # a write Redis may have applied after answering the read
    assert not near.finish(f, entry(), False, -1, HIT)
    assert near.get("k") is None


def test_a_flush_or_a_tracking_restart_during_a_read_spoils_its_fill() -> None:
    near = live()
    first, second = near.begin("a"), near.begin("b")
    assert first is not None and second is not None
    near.flush()
    assert not near.finish(first, entry(), False, -1, HIT)
    near.set_live(False)
    near.set_live(True)
    assert not near.finish(second, entry(), False, -1, HIT)
    assert len(near) == 0


def test_concurrent_fills_of_one_key_are_all_spoiled_by_its_invalidation() -> None:
    near = live()
    fills = [near.begin("k") for _ in range(3)]
    near.invalidate(["k"])
    assert not any(near.finish(f, entry(), False, -1, HIT) for f in fills if f is not None)
    assert near._pending == {}


def test_other_keys_invalidations_do_not_spoil_a_fill() -> None:
    near = live()
    f = near.begin("k")
    assert f is not None
    near.invalidate(["other"])
    assert near.finish(f, entry(), False, -1, HIT)


def test_local_ttl_counts_from_when_the_read_was_sent() -> None:
    clock = Clock()
    near = live(clock=clock)
    f = near.begin("k")
    assert f is not None
    clock.now += 0.4  # the reply took 0.4 s; Redis said 1000 ms were left when it ran the read
    assert near.finish(f, entry(), False, 1000, HIT)
    clock.now += 0.59
    assert near.get("k") is not None
    clock.now += 0.02  # 1.01 s after the read was sent: Redis's copy may be gone, so ours is
    assert near.get("k") is None
    assert near.expired == 1 and near.bytes == near.fixed_bytes


@pytest.mark.parametrize("pttl", [-2, 0])
def test_a_key_gone_or_expiring_is_not_stored(pttl: int) -> None:
    near = live()
    assert not fill(near, "k", ttl_ms=pttl)
    assert len(near) == 0


def test_bytes_never_exceed_the_limit() -> None:
    limit = 50 * (100 + SLOT_OVERHEAD)  # the sketch's table counts too
    near = live(limit)
    for i in range(2000):
        fill(near, f"k{i}", size=100 + i % 200)
        near.get(f"k{i // 3}")
        assert near.bytes <= limit
    assert near.evictions > 0
    assert near.bytes == near.fixed_bytes + sum(s.size for s in near._slots.values())


def test_a_value_larger_than_the_store_is_not_kept() -> None:
    near = live(10_000)
    assert not fill(near, "big", size=20_000)
    assert near.rejected == 1 and len(near) == 0


def test_a_hot_key_survives_a_scan_of_one_hit_wonders() -> None:
    """W-TinyLFU's point: a burst of keys read once does not push out a key read often (LRU would)."""
    size = 100 + 3 + SLOT_OVERHEAD
    near = live(20 * size)
    fill(near, "hot")
    for _ in range(10):
        assert near.get("hot") is not None
    for i in range(1000):
        if near.get(f"cold{i}") is None:
            fill(near, f"cold{i}")
    assert near.get("hot") is not None


def test_invalidate_and_flush_free_the_bytes() -> None:
    near = live()
    for i in range(10):
        fill(near, f"k{i}")
    assert near.invalidate(["k1", "k2", "nope"]) == 2
    assert len(near) == 8 and near.invalidated == 2
    near.flush()
    assert near.bytes == near.fixed_bytes and len(near) == 0


def test_slot_values_are_fresh_objects() -> None:
    near = live()
    f = near.begin("k")
    assert f is not None
    near.finish(f, Entry(b'{"a": [1]}', "application/json", '"e"', 2), False, -1, HIT)
    slot = near.get("k")
    assert slot is not None
    first = slot.value()
    first["a"].append(2)  # a caller mutating what it got must not change the cached copy
    assert slot.value() == {"a": [1]}


def test_foreign_values_decode_as_get_decodes_them() -> None:
    near = live()
    f = near.begin("k")
    assert f is not None
    near.finish(f, Entry(b"42", "text/plain; charset=utf-8", '"e"', 0), True, -1, HIT)
    slot = near.get("k")
    assert slot is not None and slot.value() == 42


def test_frequency_sketch_counts_and_ages() -> None:
    sketch = FrequencySketch(
        1024
    )  # int keys hash to themselves: no per-process hash salt, no flaky collision
    for _ in range(5):
        sketch.record(1)
    assert sketch.estimate(1) == 5
    assert sketch.estimate(3) == 0
    for _ in range(sketch.sample - 5):  # one other key until the sample period ends
        sketch.record(2)
    assert sketch.estimate(1) == 2  # halved
    assert sketch.estimate(2) == 7  # saturated at 15, halved


def test_frequency_sketch_rejects_bad_widths() -> None:
    with pytest.raises(ValueError, match="power of two"):
        FrequencySketch(1000)


# --- configuration ------------------------------------------------------------------------------------------
def test_near_defaults() -> None:
    cfg = CacheConfig()
    assert cfg.near_cache is True and cfg.near_cache_bytes == 64 * 1024 * 1024
    near = {ns: s.near for ns, s in cfg.strategies.items()}
    assert near == {
        "document": True,
        "search": True,
        "user": False,
        "api": True,
        "config": True,
        "project": True,
    }


def test_sliding_namespaces_are_not_near_cached_and_cannot_be() -> None:
    assert StrategyConfig(sliding=True).near is False
    with pytest.raises(ValidationError, match="sliding namespace cannot be near-cached"):
        StrategyConfig(sliding=True, near=True)
    with pytest.raises(ValidationError, match="sliding namespace cannot be near-cached"):
        CacheConfig(strategies={"user": {"near": True}})


def test_strategies_merge_field_by_field_from_every_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBIUS_STRATEGIES", json.dumps({"user": {"ttl": 60}, "api": {"near": False}}))
    from_env = CacheConfig()
    from_spec = CacheConfig.from_spec({"strategies": {"user": {"ttl": 60}, "api": {"near": False}}})
    for cfg in (from_env, from_spec):
        user = cfg.strategies["user"]
        assert (user.ttl, user.sliding, user.evictable, user.near) == (60, True, False, False)
        assert cfg.strategies["api"].near is False and cfg.strategies["api"].ttl == 60
        assert cfg.strategies["search"].ttl == 300  # not named: unchanged
    assert CacheConfig.from_spec(from_spec.to_spec()).strategies == from_spec.strategies


def test_a_namespace_that_stops_sliding_may_be_near_cached() -> None:
    assert CacheConfig(strategies={"user": {"sliding": False}}).strategies["user"].near is True


@pytest.mark.parametrize(
    ("strategies", "named"),
    [
        ({"search": {"neer": True}}, "strategies.search.neer"),
        ({"search": {"near": "sometimes"}}, "strategies.search.near"),
        ({"search": 5}, "strategies.search"),
    ],
)
def test_bad_strategy_fields_are_errors_that_name_them(strategies: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError) as err:
        CacheConfig(strategies=strategies)
    assert named in str(err.value)


@pytest.mark.parametrize(
    ("env", "on", "size"), [("off", False, None), ("on", True, None), ("0", False, None)]
)
def test_near_cache_switch_from_env(
    monkeypatch: pytest.MonkeyPatch, env: str, on: bool, size: int | None
) -> None:
    monkeypatch.setenv("MOBIUS_NEAR_CACHE", env)
    assert CacheConfig().near_cache is on


@pytest.mark.parametrize(("value", "size"), [("1mb", 1024 * 1024), ("500kb", 500 * 1024), (4096, 4096)])
def test_near_cache_max_bytes(value: str | int, size: int) -> None:
    assert CacheConfig(near_cache_max_bytes=value).near_cache_bytes == size


@pytest.mark.parametrize("value", ["0", 0, "lots", "-1mb"])
def test_bad_near_cache_max_bytes(value: str | int) -> None:
    with pytest.raises(ValidationError, match="near_cache_max_bytes"):
        CacheConfig(near_cache_max_bytes=value)
