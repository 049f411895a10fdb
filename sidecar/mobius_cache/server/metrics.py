"""HTTP metrics of the sidecar: request count and latency by route template and status.

Labels use the route template (``/v1/cache/{key}``), never the raw path, so keys do not explode cardinality.
Label children are cached: ``.labels()`` on every request would cost more than the rest of the hot path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["HttpMetrics"]

# Sub-millisecond buckets: the sidecar's answers take tens to hundreds of microseconds.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "mobius_sidecar_http_requests_total",
            "HTTP requests answered by the sidecar, by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "mobius_sidecar_http_request_duration_seconds",
            "Time from request start to the last response byte handed to the server, by route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(method, route, str(status))
        counter.inc()
        hkey = (method, route)
        histogram = self._histograms.get(hkey)
        if histogram is None:
            histogram = self._histograms[hkey] = self.duration.labels(method, route)
        histogram.observe(seconds)
