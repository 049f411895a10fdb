"""The dashboards and alerts against a live stack: a real sidecar and a real Redis (with the redis_exporter),
scraped every second by a real Prometheus, under a workload whose hit ratio the test counts itself.

Every panel query must return data, the hit-ratio panels must agree with the workload within 0.02, the
sidecar's /metrics must pass `promtool check metrics`, and the alert rules must load and evaluate in
Prometheus (the circuit-open and Redis-down alerts go pending during the fault). The previews are drawn from
the same Prometheus (into $MOBIUS_PREVIEW_DIR when set, e.g. docs/img, else a temporary folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboards import preview
from dashboards.preview import Prometheus
from tests.dashboards.keygroups import helm_missing
from tests.dashboards.panels import PanelQuery, queries, substitute
from tests.dashboards.stack import KEYSPACE, Run, Stack, drive

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(
            shutil.which(t) for t in ("prometheus", "promtool", "prometheus-redis-exporter", "redis-server")
        ),
        reason="needs prometheus, promtool, prometheus-redis-exporter and redis-server (`make test`)",
    ),
    pytest.mark.skipif(bool(helm_missing()), reason=helm_missing() or "helm present"),
]


@dataclass
class Live:
    stack: Stack
    prom: Prometheus
    run: Run
    seconds: float


@pytest.fixture
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    began = time.monotonic()
    stack = Stack(tmp_path_factory.mktemp("live")).start()
    prom = Prometheus(stack.prom_url)
    try:
        run = drive(stack, prom)
        yield Live(stack, prom, run, time.monotonic() - began)
    finally:
        prom.close()
        stack.close()


def _range(live: Live, q: PanelQuery) -> list[dict[str, Any]]:
    run = live.run
    expr = substitute(q.expr, rate_interval="4s", time_range=f"{int(run.end - run.start) + 1}s")
    return live.prom.query_range(expr, run.start, run.end, 1.0)


def check_the_stack_came_up_and_the_workload_ran_quickly(live: Live) -> None:
    assert live.run.circuit_opened, "MobiusCacheCircuitOpen never went pending while Redis was frozen"
    assert live.run.redis_down_seen, "MobiusRedisDown never went pending while Redis was frozen"
    assert live.seconds < 60, f"the live stack and workload took {live.seconds:.1f}s"


def check_every_panel_query_returns_data(live: Live) -> None:
    empty = []
    for q in queries():
        rows = _range(live, q)
        values = [v for row in rows for _, v in row["values"]]
        if not any(v not in ("NaN", "+Inf", "-Inf") for v in values):
            empty.append(q.name)
    assert not empty, f"panels without data: {empty}"


def _one(rows: list[dict[str, Any]]) -> float:
    assert len(rows) == 1, rows
    return float(rows[0]["value"][1])


def check_hit_ratio_panels_agree_with_the_workload(live: Live) -> None:
    run = live.run
    window = f"{int((run.measured_to - run.measured_from) * 1000)}ms"
    panels = {q.title + "/" + q.ref_id: q for q in queries(("mobius-cache-overview.json",))}
    stat = substitute(panels["Hit ratio (selected range)/A"].expr, time_range=window)
    overall = _one(live.prom.query(stat, at=run.measured_to))
    assert abs(overall - run.tally.ratio()) <= 0.02, (overall, run.tally.ratio(), dict(run.tally.lookups))
    per_namespace = substitute(panels["Hit ratio by cache namespace/B"].expr, rate_interval=window)
    rows = live.prom.query(per_namespace, at=run.measured_to)
    seen = {row["metric"]["exported_namespace"]: float(row["value"][1]) for row in rows}
    assert set(seen) >= set(KEYSPACE), seen
    for namespace in KEYSPACE:
        assert abs(seen[namespace] - run.tally.ratio(namespace)) <= 0.02, (namespace, seen, run.tally)
    # The two namespaces were built to differ (about 0.6 and 0.9): a panel mixing them up would fail here.
    assert abs(run.tally.ratio("search") - run.tally.ratio("document")) > 0.1


def check_sidecar_metrics_pass_promtool_check_metrics(live: Live) -> None:
    text = httpx.get(f"{live.stack.sidecar_url}/metrics", timeout=5).text
    for family in (
        "mobius_cache_requests_total",
        "mobius_cache_operation_duration_seconds_bucket",
        "mobius_cache_pool_connections",
        "mobius_cache_pool_max_connections",
        "mobius_cache_circuit_state",
        "mobius_cache_invalidations_total",
        "mobius_cache_slow_operations_total",
        "mobius_sidecar_http_requests_total",
    ):
        assert f"\n{family}" in text, f"{family} missing from the sidecar's /metrics"
    promtool = shutil.which("promtool")
    assert promtool is not None
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def check_alert_rules_load_and_go_pending_on_the_fault(live: Live) -> None:
    groups = live.prom._get("/api/v1/rules", {"type": "alert"})["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert len(rules) >= 7, sorted(rules)
    bad = {name: rule.get("lastError") for name, rule in rules.items() if rule["health"] != "ok"}
    assert not bad, bad
    run = live.run
    span = f"{int(run.end - run.start) + 2}s"
    for alert in ("MobiusCacheCircuitOpen", "MobiusRedisDown"):
        rows = live.prom.query(f'count_over_time(ALERTS{{alertname="{alert}"}}[{span}])', at=run.end)
        assert rows, f"{alert} never went pending or firing during the fault"
    for alert in ("MobiusCacheHitRatioLow", "MobiusCacheLatencyHigh", "MobiusRedisEvictionsSustained"):
        rows = live.prom.query(f'ALERTS{{alertname="{alert}", alertstate="firing"}}', at=run.end)
        assert not rows, f"{alert} fired within a one-minute test: its `for` is missing or too short"


def check_previews_are_drawn_from_the_live_prometheus(live: Live, tmp_path: Path) -> None:
    out = Path(os.environ.get("MOBIUS_PREVIEW_DIR") or tmp_path)
    paths = preview.render(live.stack.prom_url, live.run.start, live.run.end, out)
    assert [p.name for p in paths] == ["mobius-cache-overview.png", "mobius-cache-redis.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 20_000, f"{path} looks empty"


def test_dashboards_and_alerts_on_a_live_stack(live: Live, tmp_path: Path) -> None:
    """One test for the whole live run: the stack is started and driven once (~15-30 s), and every check
    runs against it. (Separate tests sharing a fixture would each start their own stack under xdist, which
    splits them across workers.) All checks run; the failures are reported together."""
    checks: list[Callable[[], None]] = [
        lambda: check_the_stack_came_up_and_the_workload_ran_quickly(live),
        lambda: check_hit_ratio_panels_agree_with_the_workload(live),
        lambda: check_every_panel_query_returns_data(live),
        lambda: check_sidecar_metrics_pass_promtool_check_metrics(live),
        lambda: check_alert_rules_load_and_go_pending_on_the_fault(live),
        lambda: check_previews_are_drawn_from_the_live_prometheus(live, tmp_path),
    ]
    failures = []
    for check in checks:
        try:
            check()
        except AssertionError as exc:
            failures.append(f"{exc}")
    assert not failures, "\n\n".join(failures)
