"""Key streams and the offline optimum: Zipf traces and Belady's OPT (pure logic, no I/O).

Belady's MIN evicts the cached key whose next request lies farthest in the future. With *bypass* (a miss
need not be stored when its next request is farther away than every cached key's), it is the optimum for
any cache that may decline to store, which is what the admission experiment does, so it is the fair bound.
All keys have the same size, so "capacity" is a number of keys and OPT is exact.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["belady_hits", "hot_set", "next_use", "zipf_trace"]


def zipf_trace(n_keys: int, length: int, alpha: float, seed: int = 1) -> NDArray[np.int64]:
    """``length`` requests over keys 0..n_keys-1 with P(rank r) ∝ 1/r^alpha, ranks shuffled over key ids
    (so popularity has nothing to do with key order). Bounded, so alpha <= 1 is fine."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_keys + 1, dtype=np.float64) ** alpha
    ranks = rng.choice(n_keys, size=length, p=weights / weights.sum())
    key_of_rank = rng.permutation(n_keys)
    return key_of_rank[ranks].astype(np.int64)


def hot_set(trace: NDArray[np.int64], fraction: float = 0.01) -> set[int]:
    """The most requested ``fraction`` of the distinct keys: the brief's "frequently accessed data"."""
    keys, counts = np.unique(trace, return_counts=True)
    k = max(1, int(len(keys) * fraction))
    return {int(x) for x in keys[np.argsort(-counts, kind="stable")[:k]]}


def next_use(trace: NDArray[np.int64]) -> NDArray[np.int64]:
    """For each position, the position of the same key's next request (len(trace) when there is none)."""
    n = len(trace)
    out = np.full(n, n, dtype=np.int64)
    last: dict[int, int] = {}
    for i in range(n - 1, -1, -1):
        key = int(trace[i])
        out[i] = last.get(key, n)
        last[key] = i
    return out


def belady_hits(trace: Sequence[int] | NDArray[np.int64], capacity: int) -> NDArray[np.bool_]:
    """Per request: was it a hit under Belady's OPT with bypass, for a cache of ``capacity`` keys?"""
    arr = np.asarray(trace, dtype=np.int64)
    nxt = next_use(arr)
    n = len(arr)
    hits = np.zeros(n, dtype=np.bool_)
    if capacity <= 0:
        return hits
    cached: dict[int, int] = {}  # key -> the position of its next request
    heap: list[tuple[int, int]] = []  # (-next request, key); an entry is stale once the key moved on
    for i in range(n):
        key = int(arr[i])
        upcoming = int(nxt[i])
        if key in cached:
            hits[i] = True
        elif upcoming >= n:
            continue  # a miss never requested again: storing it helps nobody
        elif len(cached) >= capacity:
            while cached.get(heap[0][1]) != -heap[0][0]:
                heapq.heappop(heap)
            if upcoming >= -heap[0][0]:
                continue  # bypass: every cached key is needed sooner than this one
            del cached[heapq.heappop(heap)[1]]
        if upcoming >= n:
            del cached[key]  # its last request: free the room
        else:
            cached[key] = upcoming
            heapq.heappush(heap, (-upcoming, key))
    return hits
