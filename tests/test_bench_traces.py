"""The benchmark's pure logic: Zipf traces and Belady's OPT (checked against brute force on small traces)."""

from __future__ import annotations

import itertools
from collections import OrderedDict

import numpy as np

from benchmarks.traces import belady_hits, hot_set, next_use, zipf_trace


def _best_possible(trace: list[int], capacity: int) -> int:
    """Exhaustive search over every store/evict decision: the true optimum, for tiny traces only."""
    best: dict[frozenset[int], int] = {frozenset(): 0}
    for key in trace:
        nxt: dict[frozenset[int], int] = {}
        for cache, hits in best.items():
            if key in cache:
                options = [(cache, hits + 1)]
            else:
                options = [(cache, hits)]  # bypass
                if len(cache) < capacity:
                    options.append((cache | {key}, hits))
                else:
                    options += [((cache - {out}) | {key}, hits) for out in cache]
            for state, h in options:
                if nxt.get(state, -1) < h:
                    nxt[state] = h
        best = nxt
    return max(best.values())


def test_belady_matches_exhaustive_search() -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        trace = [int(x) for x in rng.integers(0, 6, size=14)]
        for capacity in (1, 2, 3):
            assert int(belady_hits(trace, capacity).sum()) == _best_possible(trace, capacity), (
                trace,
                capacity,
            )


def test_belady_beats_lru_on_a_zipf_trace() -> None:
    trace = zipf_trace(2000, 30_000, 1.0, seed=3)
    opt = belady_hits(trace, 100).mean()
    lru: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for key in map(int, trace):
        if key in lru:
            hits += 1
            lru.move_to_end(key)
        else:
            lru[key] = None
            if len(lru) > 100:
                lru.popitem(last=False)
    assert opt > hits / len(trace) + 0.05
    assert belady_hits(trace, 0).sum() == 0
    assert belady_hits(trace, 2000).mean() == 1 - len(set(trace.tolist())) / len(trace)  # only cold misses


def test_zipf_trace_is_skewed_reproducible_and_in_range() -> None:
    a = zipf_trace(1000, 50_000, 1.2, seed=5)
    assert (a == zipf_trace(1000, 50_000, 1.2, seed=5)).all()
    assert a.min() >= 0 and a.max() < 1000
    _, counts = np.unique(a, return_counts=True)
    top = np.sort(counts)[::-1]
    assert top[:10].sum() > 0.4 * len(a)  # alpha 1.2: the top 1% of keys take a large share
    flatter = np.sort(np.unique(zipf_trace(1000, 50_000, 0.9, seed=5), return_counts=True)[1])[::-1]
    assert flatter[:10].sum() < top[:10].sum()


def test_hot_set_and_next_use() -> None:
    trace = np.array([3, 1, 3, 2, 3, 1], dtype=np.int64)
    assert hot_set(trace, 0.34) == {3}
    assert next_use(trace).tolist() == [2, 5, 4, 6, 6, 6]
    assert list(itertools.islice(belady_hits(trace, 1), 6)) == [False, False, True, False, True, False]
