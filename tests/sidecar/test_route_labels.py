"""HTTP metrics: every method on one route shares one ``route`` label (the dashboards group by it), never a key."""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.sidecar.procs import SidecarProcess

REQUESTS = "mobius_sidecar_http_requests"  # the parser drops the _total suffix of a counter family


def _routes(http: httpx.Client, marker: str) -> dict[str, set[tuple[str, str]]]:
    """route label -> {(method, status)} of the request counter."""
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for family in text_string_to_metric_families(http.get("/metrics").text):
        if family.name == REQUESTS:
            for sample in family.samples:
                assert marker not in sample.labels["route"], f"a key leaked into a label: {sample.labels}"
                seen[sample.labels["route"]].add((sample.labels["method"], sample.labels["status"]))
    return seen


def test_cache_route_label_is_one_template_for_every_method(sidecar: SidecarProcess, ns: str) -> None:
    key = f"/v1/cache/{ns}:labels"
    with sidecar.http() as http:
        calls = [
            ("PUT", key, {"content": b"1"}),  # 204
            ("GET", key, {}),  # 200, answered by the front door
            ("HEAD", key, {}),  # 200, front door
            ("GET", f"/v1/cache/{ns}:absent", {}),  # 404 miss
            ("PUT", key, {"content": b"1", "headers": {"if-match": '"stale"'}}),  # 412
            ("PUT", f"{key}?ttl=-1", {"content": b"1"}),  # 400/422 from validation
            ("PUT", key, {"content": b"x" * (2 * 1024 * 1024)}),  # 413 before FastAPI sees it
            ("DELETE", key, {}),  # 200
            ("PATCH", key, {}),  # 405
            ("POST", f"{key}/incr", {"json": {"by": 1}}),  # the counter route has its own template
        ]
        for method, path, kwargs in calls:
            http.request(method, path, **kwargs)
        routes = _routes(http, ns)
    cache_methods = {method for method, _ in routes["/v1/cache/{key}"]}
    assert cache_methods >= {"GET", "HEAD", "PUT", "DELETE", "PATCH"}, routes
    statuses = {status for _, status in routes["/v1/cache/{key}"]}
    assert statuses >= {"200", "204", "404", "412", "413", "405"}, routes
    assert ("POST", "200") in routes["/v1/cache/{key}/incr"]  # the sidecar is shared: other tests add more
    # No other spelling of the cache route (e.g. FastAPI's "{key:path}" or the raw path) appears.
    odd = [
        r
        for r in routes
        if r.startswith("/v1/cache") and r not in ("/v1/cache/{key}", "/v1/cache/{key}/incr")
    ]
    assert not odd, odd
