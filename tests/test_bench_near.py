"""The near-cache benchmark's pure parts: the LRU baseline really is LRU with the same room, the Zipf request mix
of the open-loop generator, and the report rendering its verdicts from numbers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.near import LruNear
from benchmarks.openloop import zipf_paths
from benchmarks.report_near import near_section
from mobius_cache._envelope import Entry
from mobius_cache._near import SLOT_OVERHEAD, NearCache

HIT = ("x", "get", "hit")


def _put(store: NearCache, key: str) -> None:
    fill = store.begin(key)
    assert fill is not None
    store.finish(fill, Entry(b"v" * 100, "a", '"e"', 0), False, -1, HIT)


def test_lru_baseline_evicts_the_least_recently_used() -> None:
    size = 100 + 2 + SLOT_OVERHEAD
    lru = LruNear(NearCache(3 * size).fixed_bytes + 3 * size)
    lru.set_live(True)
    for key in ("k1", "k2", "k3"):
        _put(lru, key)
    assert lru.get("k1") is not None  # k2 is now the least recently used
    _put(lru, "k4")
    assert set(lru._slots) == {"k1", "k3", "k4"}
    assert lru.evictions == 1


def test_both_policies_get_the_same_room() -> None:
    limit = 1_000_000
    assert LruNear(limit)._main_max == limit - NearCache(limit).fixed_bytes
    tiny = NearCache(limit)
    assert tiny._window_max + tiny._main_max == limit - tiny.fixed_bytes


def test_zipf_paths_are_skewed_requests_over_the_keys() -> None:
    paths = zipf_paths("/v1/cache/z:", 100, 1.0, 5000)
    assert len(paths) == 5000
    assert all(p.startswith(b"GET /v1/cache/z:") and p.endswith(b"\r\n\r\n") for p in paths)
    counts = Counter(paths).most_common()
    assert counts[0][1] > 10 * counts[-1][1]  # the most popular key is requested far more than the least


def _results(ratio: float, peak: float, stale_p99: float, writes: int = 1500) -> dict[str, Any]:
    row = {"alpha": 1.0, "capacity": 0.05, "opt": 0.8, "us_per_request": 1.0, "us_per_hit": 0.5}
    summary = {"median": ratio, "min": ratio, "max": ratio}
    return {
        "near": {
            "quick": False,
            "when": "now",
            "seconds": 1.0,
            "data": {
                "policy": {
                    "keys": 100,
                    "requests": 1000,
                    "value_bytes": 1000,
                    "rows": [
                        {**row, "policy": "LRU", "hit_ratio": 0.6},
                        {**row, "policy": "W-TinyLFU", "hit_ratio": 0.7},
                    ],
                },
                "library": {
                    "rounds": 1,
                    "seconds": 1.0,
                    "ops": {"Cache.get (near off)": {"median": 10_000.0, "min": 1.0, "max": 1.0}},
                    "p50_us": {"Cache.get (near off)": {"median": 90.0, "min": 1.0, "max": 1.0}},
                    "near_vs_redis_py": summary,
                    "near_vs_cache_without_near": summary,
                },
                "staleness": {
                    "writes": writes,
                    "primed": writes,
                    "p50_ms": 0.3,
                    "p90_ms": 0.5,
                    "p99_ms": stale_p99,
                    "max_ms": 5.0,
                    "first_read_fresh": writes,
                    "mean_polls": 1.0,
                },
                "memory": {
                    "limit_bytes": 1000,
                    "peak_bytes": int(1000 * peak),
                    "peak_over_limit": peak,
                    "working_set_bytes": 10_000,
                    "keys": 10,
                    "reads": 100,
                    "entries": 1,
                    "evictions": 1,
                    "hit_ratio": 0.5,
                },
            },
        }
    }


def _verdicts(results: dict[str, Any], tmp_path: Path) -> dict[str, bool | None]:
    goals: list[tuple[str, str, bool | None]] = []
    near_section(results, tmp_path, goals)
    return {goal.split(":")[1].strip().split(" ")[0]: ok for goal, _, ok in goals}


def test_report_verdicts_follow_the_numbers(tmp_path: Path) -> None:
    good = _verdicts(_results(ratio=40.0, peak=0.99, stale_p99=0.8), tmp_path)
    assert good == {"eviction": True, "library": True, "staleness": True, "near": True}
    bad = _verdicts(_results(ratio=10.0, peak=1.01, stale_p99=3.0), tmp_path)
    assert bad == {"eviction": True, "library": False, "staleness": False, "near": False}
    few = _verdicts(_results(ratio=40.0, peak=0.99, stale_p99=0.8, writes=200), tmp_path)
    assert few["staleness"] is None  # fewer writes than the goal asks: no verdict either way
    assert (tmp_path / "bench-near-policy.png").exists()
