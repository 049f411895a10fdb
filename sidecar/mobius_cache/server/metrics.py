"""HTTP metrics of the sidecar: request count and latency by route template and status.

Labels use the route template (``/v1/cache/{key}``), never the raw path, so keys do not explode cardinality.
Counted in plain ints and exported by a collector at scrape time, as the library's metrics are: prometheus-client's
``Counter.inc`` and ``Histogram.observe`` take a lock each, ~2 µs per request, which on a near-cache hit (~10 µs of
Python in all) was the largest single cost after the HTTP server itself. One event loop updates these counters;
a scrape reads them in the same loop (``/metrics``) or copies them first (``list(...)``) from another thread.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["BUCKETS", "HttpMetrics"]

# Sub-millisecond buckets: the sidecar's answers take tens to hundreds of microseconds.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class HttpMetrics(Collector):
    """``mobius_sidecar_http_requests_total{method,route,status}`` and
    ``mobius_sidecar_http_request_duration_seconds{method,route}``, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        # Per (method, route): bucket counts (the last one is +Inf) and the sum of seconds.
        self.durations: dict[tuple[str, str], list[float]] = {}
        registry.register(self)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        row = self.durations.get((method, route))
        if row is None:
            row = self.durations[(method, route)] = [0.0] * (len(BUCKETS) + 2)
        row[bisect_left(BUCKETS, seconds)] += 1
        row[-1] += seconds

    def describe(self) -> list[Metric]:
        return []  # names are fixed, but the registry's duplicate check is not needed for a private registry

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "mobius_sidecar_http_requests",
            "HTTP requests answered by the sidecar, by method, route template and status code.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), n in sorted(list(self.requests.items())):
            requests.add_metric([method, route, str(status)], n)
        durations = HistogramMetricFamily(
            "mobius_sidecar_http_request_duration_seconds",
            "Time from request start to the last response byte handed to the server, by route template.",
            labels=["method", "route"],
        )
        for (method, route), row in sorted(list(self.durations.items())):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip((*BUCKETS, float("inf")), row[:-1], strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            durations.add_metric([method, route], buckets, row[-1])
        yield requests
        yield durations
