"""Metrics with the DESIGN.md names, counted in plain ints and exported at scrape time.

Why not prometheus-client's Counter/Histogram on the hot path: ``.labels(...)`` plus a locked ``inc`` and a
histogram ``observe`` cost ~2-3 µs per operation, which is 5% of a whole Redis round trip. Here an operation
costs two dict increments and one ``bisect``; prometheus-client still does the exposition (a custom
collector), so names, types and the text format are its own. Several ``Cache`` instances that share a
registry are summed by one collector per registry.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["BUCKETS", "Metrics"]

log = logging.getLogger("mobius_cache")

#: Latency buckets in seconds: 100 µs to 2.5 s (a Redis hit is ~100 µs; the brief's limit is 5 ms).
BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


_READ_OPS = frozenset({"get", "get_many"})


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0


class Metrics:
    """The counters of one ``Cache``. Gauges (pool, circuit, memory) are read from ``gauges()`` at scrape time."""

    def __init__(self, slow_threshold_s: float, gauges: Callable[[], dict[str, Any]] | None = None) -> None:
        self.requests: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.durations: defaultdict[str, _Histogram] = defaultdict(_Histogram)
        self.slow: defaultdict[str, int] = defaultdict(int)
        self.invalidations: defaultdict[str, int] = defaultdict(int)
        self.slow_threshold_s = slow_threshold_s
        self.gauges = gauges
        self.near: Callable[[], dict[str, Any]] | None = None  # the near cache's stats(), read at scrape time
        self._last_slow_log: dict[str, float] = {}
        self._slow_logged: dict[str, int] = {}

    def observe(self, op: str, seconds: float, key: str | None = None) -> None:
        hist = self.durations[op]
        hist.counts[bisect_left(BUCKETS, seconds)] += 1
        hist.total += seconds
        if seconds >= self.slow_threshold_s:
            self.slow[op] += 1
            # Every slow operation is counted; the log is rate-limited to one line per op per second (with
            # the number it stands for), so an overloaded service does not also flood its log.
            now = time.monotonic()
            if now - self._last_slow_log.get(op, -1.0) >= 1.0:
                suppressed = self.slow[op] - self._slow_logged.get(op, 0) - 1
                self._last_slow_log[op] = now
                self._slow_logged[op] = self.slow[op]
                log.warning(
                    "slow cache operation",
                    extra={
                        "op": op,
                        "key": key,
                        "duration_ms": round(seconds * 1000, 3),
                        "suppressed": suppressed,
                    },
                )

    def hits_misses(self) -> dict[str, dict[str, int]]:
        """Per namespace: hits, misses, errors and bypasses of reads."""
        out: dict[str, dict[str, int]] = {}
        for (ns, op, result), n in list(self.requests.items()):
            if op in _READ_OPS and result in ("hit", "miss", "bypass", "error"):
                row = out.setdefault(ns, {"hit": 0, "miss": 0, "bypass": 0, "error": 0})
                row[result] += n
        return out

    # --- registration ----------------------------------------------------------------------------------
    def register(self, registry: CollectorRegistry | None) -> None:
        _collector_for(registry or REGISTRY).members.add(self)

    def unregister(self, registry: CollectorRegistry | None) -> None:
        _collector_for(registry or REGISTRY).members.discard(self)


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _RegistryCollector] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _collector_for(registry: CollectorRegistry) -> _RegistryCollector:
    with _lock:
        collector = _collectors.get(registry)
        if collector is None:
            collector = _RegistryCollector()
            registry.register(collector)
            _collectors[registry] = collector
        return collector


class _RegistryCollector(Collector):
    """Sums the live ``Metrics`` registered on one registry."""

    def __init__(self) -> None:
        self.members: weakref.WeakSet[Metrics] = weakref.WeakSet()

    def describe(self) -> list[Metric]:
        return []  # names are only known at collect time; skips the registry's duplicate check

    def collect(self) -> Iterator[Metric]:
        members = list(self.members)
        requests = CounterMetricFamily(
            "mobius_cache_requests",
            "Cache requests by namespace, operation and result",
            labels=["namespace", "op", "result"],
        )
        slow = CounterMetricFamily(
            "mobius_cache_slow_operations", "Operations slower than the slow-op threshold", labels=["op"]
        )
        inval = CounterMetricFamily(
            "mobius_cache_invalidations",
            "Invalidations by kind (key, pattern, tag, cascade, event)",
            labels=["kind"],
        )
        durations = HistogramMetricFamily(
            "mobius_cache_operation_duration_seconds", "Cache operation latency, client side", labels=["op"]
        )
        req_sum: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        slow_sum: defaultdict[str, int] = defaultdict(int)
        inval_sum: defaultdict[str, int] = defaultdict(int)
        hist_sum: dict[str, tuple[list[int], float]] = {}
        gauge_rows: list[dict[str, Any]] = []
        near_rows: list[dict[str, Any]] = []
        for m in members:
            for k, v in list(m.requests.items()):
                req_sum[k] += v
            for op, v in list(m.slow.items()):
                slow_sum[op] += v
            for kind, v in list(m.invalidations.items()):
                inval_sum[kind] += v
            for op, h in list(m.durations.items()):
                counts, total = hist_sum.get(op, ([0] * (len(BUCKETS) + 1), 0.0))
                hist_sum[op] = ([a + b for a, b in zip(counts, h.counts, strict=True)], total + h.total)
            if m.gauges is not None:
                try:
                    gauge_rows.append(m.gauges())
                except Exception:  # a scrape must never fail because one cache is closing
                    log.exception("reading cache gauges failed")
            if m.near is not None:
                try:
                    near_rows.append(m.near())
                except Exception:
                    log.exception("reading near cache stats failed")
        # Zeros for the failure series of every (namespace, op) and op seen, so that error, bypass and slow-op
        # panels and alerts show 0 rather than "no data" while nothing has failed (a counter that appears only
        # at its first increment also loses that increment to rate()).
        for ns, op, _ in list(req_sum):
            req_sum.setdefault((ns, op, "error"), 0)
            if op in _READ_OPS:
                req_sum.setdefault((ns, op, "bypass"), 0)
        for op in hist_sum:
            slow_sum.setdefault(op, 0)
        for (ns, op, result), v in sorted(req_sum.items()):
            requests.add_metric([ns, op, result], v)
        for op, v in sorted(slow_sum.items()):
            slow.add_metric([op], v)
        for kind in ("key", "pattern", "tag", "cascade", "event"):
            inval_sum.setdefault(kind, 0)
        for kind, v in sorted(inval_sum.items()):
            inval.add_metric([kind], v)
        for op, (counts, total) in sorted(hist_sum.items()):
            cumulative, buckets = 0, []
            for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            durations.add_metric([op], buckets, total)
        yield requests
        yield durations
        yield slow
        yield inval
        yield from _gauges(gauge_rows)
        yield from _near(near_rows)


def _near(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    """The near cache (see docs/library.md): summed over the caches of this registry."""
    rows = [r for r in rows if r.get("enabled")]
    requests = CounterMetricFamily(
        "mobius_cache_near_requests", "Near cache lookups of near-cached namespaces", labels=["result"]
    )
    evictions = CounterMetricFamily("mobius_cache_near_evictions", "Near cache entries pushed out for room")
    invalidations = CounterMetricFamily(
        "mobius_cache_near_invalidations",
        "What Redis tracking told the near cache: keys invalidated, flushes (FLUSHALL), tracking lost",
        labels=["kind"],
    )
    size = GaugeMetricFamily("mobius_cache_near_bytes", "Bytes held by the near cache (as it accounts them)")
    limit = GaugeMetricFamily("mobius_cache_near_max_bytes", "The near cache's memory bound")
    entries = GaugeMetricFamily("mobius_cache_near_entries", "Entries held by the near cache")
    live = GaugeMetricFamily(
        "mobius_cache_near_tracking", "1 while Redis client tracking is established (the near cache serves)"
    )
    total: defaultdict[str, float] = defaultdict(float)
    for row in rows:
        tracking = row.get("tracking") or {}
        for name in ("hits", "misses", "evictions", "bytes", "max_bytes", "entries"):
            total[name] += row.get(name, 0)
        for name in ("keys_received", "flushes_received", "losses"):
            total[name] += tracking.get(name, 0)
        total["live"] += 1 if tracking.get("established") else 0
    requests.add_metric(["hit"], total["hits"])
    requests.add_metric(["miss"], total["misses"])
    evictions.add_metric([], total["evictions"])
    invalidations.add_metric(["key"], total["keys_received"])
    invalidations.add_metric(["flush"], total["flushes_received"])
    invalidations.add_metric(["lost"], total["losses"])
    size.add_metric([], total["bytes"])
    limit.add_metric([], total["max_bytes"])
    entries.add_metric([], total["entries"])
    live.add_metric([], total["live"])
    yield from (requests, evictions, invalidations, size, limit, entries, live)


def _gauges(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    pool = GaugeMetricFamily("mobius_cache_pool_connections", "Redis connections by state", labels=["state"])
    pool_max = GaugeMetricFamily("mobius_cache_pool_max_connections", "Configured maximum pool size")
    circuit = GaugeMetricFamily(
        "mobius_cache_circuit_state", "Circuit breaker: 0 closed, 1 half-open, 2 open"
    )
    queue = GaugeMetricFamily(
        "mobius_cache_invalidation_queue_length", "Invalidations waiting for Redis to come back"
    )
    used = GaugeMetricFamily("mobius_cache_redis_memory_used_bytes", "Redis used_memory at the last check")
    maxm = GaugeMetricFamily(
        "mobius_cache_redis_memory_max_bytes", "Redis maxmemory at the last check (0 = none)"
    )
    keys = GaugeMetricFamily("mobius_cache_keys", "Keys by namespace at the last count", labels=["namespace"])
    in_use = idle = pmax = qlen = 0
    state = 0
    mem_used: float | None = None
    mem_max: float | None = None
    ns_keys: defaultdict[str, int] = defaultdict(int)
    for row in rows:
        in_use += row.get("in_use", 0)
        idle += row.get("idle", 0)
        pmax += row.get("max", 0)
        qlen += row.get("queue", 0)
        state = max(state, row.get("circuit", 0))
        if row.get("used_memory") is not None:
            mem_used = max(mem_used or 0, row["used_memory"])
        if row.get("maxmemory") is not None:
            mem_max = max(mem_max or 0, row["maxmemory"])
        for ns, n in (row.get("keys") or {}).items():
            ns_keys[ns] = max(ns_keys[ns], n)
    pool.add_metric(["in_use"], in_use)
    pool.add_metric(["idle"], idle)
    pool_max.add_metric([], pmax)
    circuit.add_metric([], state)
    queue.add_metric([], qlen)
    yield from (pool, pool_max, circuit, queue)
    if mem_used is not None:
        used.add_metric([], mem_used)
        yield used
    if mem_max is not None:
        maxm.add_metric([], mem_max)
        yield maxm
    for ns, n in sorted(ns_keys.items()):
        keys.add_metric([ns], n)
    yield keys
