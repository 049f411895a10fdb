"""The committed dashboards and alert rules, checked without any server: fresh, parseable, complete.

promtool (Debian `prometheus`) parses every PromQL expression and runs the alert rules' unit tests; the edge
cases of the panel queries (no maxmemory, no hit at all, no traffic) are evaluated by promtool's own engine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboards.panels import (
    DASHBOARD_FILES,
    DASHBOARDS,
    ROOT,
    RULES_FILE,
    RULES_TESTS,
    alert_rules,
    load,
    panels,
    queries,
    substitute,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: `make test` installs prometheus"
)


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_committed_json_is_what_build_py_generates(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(DASHBOARDS / "build.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    for name in DASHBOARD_FILES:
        fresh = (tmp_path / name).read_text(encoding="utf-8")
        committed = (DASHBOARDS / name).read_text(encoding="utf-8")
        assert fresh == committed, f"dashboards/{name} is stale: run `make dashboards` and commit the result"


@needs_promtool
def test_every_panel_query_parses(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, becomes a recording rule for `promtool check rules`."""
    found = queries()
    rules = [
        {
            "record": f"dashboard:{q.dashboard.replace('-', '_')}_{q.panel_id}_{q.ref_id}",
            "expr": substitute(q.expr),
        }
        for q in found
    ]
    rules_file = tmp_path / "panels.rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}), encoding="utf-8")
    result = promtool("check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_substitute_refuses_unknown_variables() -> None:
    with pytest.raises(ValueError, match=r"\$cluster"):
        substitute('up{cluster="$cluster"}')


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_variables_datasource_and_filters(name: str) -> None:
    board = load(name)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for picker in ("namespace", "pod"):
        assert variables[picker]["type"] == "query"
        assert variables[picker]["datasource"]["uid"] == "${datasource}"
        assert variables[picker]["includeAll"] is True
    assert "$namespace" in variables["pod"]["query"]["query"], "the pod list must follow the namespace choice"
    for panel in panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    for q in queries((name,)):
        selectors = re.findall(r"\{([^}]*)\}", q.expr)
        assert selectors, q.name
        for selector in selectors:
            assert 'namespace=~"$namespace"' in selector and 'pod=~"$pod"' in selector, (q.name, selector)


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_panel_has_unit_description_id_and_a_place(name: str) -> None:
    board = load(name)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and None not in ids
    occupied: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
    for panel in panels(board):
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{panel['title']} has no unit"
        assert panel.get("description"), f"{panel['title']} has no description"
        assert panel["targets"], panel["title"]


def _steps(panel: dict[str, Any]) -> list[float]:
    return [
        s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["value"] is not None
    ]


def _by_title(name: str) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in panels(load(name))}


def test_overview_has_the_panels_operators_asked_for_with_thresholds() -> None:
    overview = _by_title("mobius-cache-overview.json")
    for title in (
        "Hit ratio (selected range)",
        "Hit ratio by cache namespace",
        "Requests/s by op and result",
        "Operation latency p50 / p95 / p99",
        "Errors and bypasses/s",
        "Circuit breaker (worst pod)",
        "Pool connections in use vs max",
        "Slow operations/s",
        "Invalidations/s by kind",
    ):
        assert title in overview, title
    assert 0.8 in _steps(overview["Hit ratio (selected range)"])
    assert 0.8 in _steps(overview["Hit ratio by cache namespace"])
    assert 0.005 in _steps(overview["Operation latency p50 / p95 / p99"])
    assert overview["Operation latency p50 / p95 / p99"]["fieldConfig"]["defaults"]["unit"] == "s"
    legends = [t["legendFormat"] for t in overview["Operation latency p50 / p95 / p99"]["targets"]]
    assert legends == ["p50", "p95", "p99"]
    states = overview["Circuit breaker (worst pod)"]["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {k: v["text"] for k, v in states.items()} == {"0": "closed", "1": "half-open", "2": "open"}


def test_redis_dashboard_has_the_panels_operators_asked_for_with_thresholds() -> None:
    redis = _by_title("mobius-cache-redis.json")
    for title in (
        "Redis up",
        "Memory used vs maxmemory",
        "Memory used % of maxmemory",
        "Evictions/s",
        "Expirations/s",
        "Keys",
        "Connected and blocked clients",
        "Rejected connections/s",
        "Commands/s",
        "Server-side hit ratio",
    ):
        assert title in redis, title
    assert 0.9 in _steps(redis["Memory used % of maxmemory"])
    assert redis["Memory used vs maxmemory"]["fieldConfig"]["defaults"]["unit"] == "bytes"


def _expr(name: str, title: str, ref: str = "A") -> str:
    return next(q.expr for q in queries((name,)) if q.title == title and q.ref_id == ref)


@needs_promtool
def test_panel_queries_on_edge_cases(tmp_path: Path) -> None:
    """promtool evaluates the real panel queries: maxmemory 0 gives no value (not +Inf), no hit at all
    gives 0, no lookups gives no value (not NaN), and a plain 3:1 workload gives 0.75."""
    memory = substitute(_expr("mobius-cache-redis.json", "Memory used % of maxmemory"))
    ratio = substitute(
        _expr("mobius-cache-overview.json", "Hit ratio by cache namespace", "B"), rate_interval="5m"
    )
    overall = substitute(_expr("mobius-cache-overview.json", "Hit ratio (selected range)"), time_range="10m")
    req = (
        'mobius_cache_requests_total{namespace="shop", pod="app-1", op="get", '
        'exported_namespace="%s", result="%s"}'
    )
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'redis_memory_used_bytes{namespace="a", pod="unlimited"}', "values": "500x10"},
                    {"series": 'redis_memory_max_bytes{namespace="a", pod="unlimited"}', "values": "0x10"},
                    {"series": 'redis_memory_used_bytes{namespace="a", pod="limited"}', "values": "50x10"},
                    {"series": 'redis_memory_max_bytes{namespace="a", pod="limited"}', "values": "100x10"},
                    {"series": req % ("search", "hit"), "values": "0+180x10"},
                    {"series": req % ("search", "miss"), "values": "0+60x10"},
                    {"series": req % ("document", "miss"), "values": "0+60x10"},
                    {"series": req % ("idle", "miss"), "values": "0x10"},
                ],
                "promql_expr_test": [
                    {"expr": memory, "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": 0.5}]},
                    {
                        "expr": ratio,
                        "eval_time": "10m",
                        "exp_samples": [
                            {"labels": '{exported_namespace="search"}', "value": 0.75},
                            {"labels": '{exported_namespace="document"}', "value": 0},
                        ],
                    },
                    {"expr": overall, "eval_time": "10m", "exp_samples": [{"labels": "{}", "value": 0.6}]},
                ],
            }
        ],
    }
    test_file = tmp_path / "panels.test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_parse_and_pass_their_unit_tests() -> None:
    checked = promtool("check", "rules", RULES_FILE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULES_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_alert_rules_cover_the_agreed_alerts_and_are_documented() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) >= {
        "MobiusRedisDown",
        "MobiusRedisMemoryHigh",
        "MobiusRedisEvictionsSustained",
        "MobiusCacheHitRatioLow",
        "MobiusCacheErrorRateHigh",
        "MobiusCacheCircuitOpen",
        "MobiusCacheLatencyHigh",
    }
    tested = RULES_TESTS.read_text(encoding="utf-8")
    docs = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule.get("for"), f"{name} would fire on a single bad scrape"
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert re.search(rf"^#+ .*{name}", docs, re.MULTILINE | re.IGNORECASE), (
            f"{name} not explained in docs"
        )
        assert anchor == name.lower()
        assert f"alertname: {name}" in tested, f"{name} has no promtool unit test"


KEY_GROUP_PANELS = (
    "Keys by namespace",
    "Memory by namespace",
    "Namespace share of maxmemory",
    "Index keys share",
    "Key-group scan duration",
)


def test_redis_dashboard_has_the_key_group_panels() -> None:
    redis = _by_title("mobius-cache-redis.json")
    for title in KEY_GROUP_PANELS:
        assert title in redis, title
    for title in ("Keys by namespace", "Memory by namespace"):
        assert redis[title]["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal", title
        legend = redis[title]["options"]["legend"]
        # The legend is the list of top consumers: a table sorted by the last value, largest first.
        assert (legend["displayMode"], legend["sortBy"], legend["sortDesc"]) == ("table", "Last *", True)
    assert redis["Memory by namespace"]["fieldConfig"]["defaults"]["unit"] == "bytes"
    share = redis["Namespace share of maxmemory"]
    alert = next(r for r in alert_rules() if r["alert"] == "MobiusCacheNamespaceMemoryShareHigh")
    threshold = float(alert["expr"].rsplit(">", 1)[1])
    assert _steps(share) == [threshold], "the dashed line is the alert's default threshold"
    legends = [t["legendFormat"] for t in redis["Index keys share"]["targets"]]
    assert legends == ["keys", "memory"]


@needs_promtool
def test_key_group_queries_on_edge_cases(tmp_path: Path) -> None:
    """promtool evaluates the real key-group panel queries: groups are summed over databases and primaries
    only (a replica's copy is not counted twice), the index share is 0 (not empty) without any index key,
    and the share of maxmemory leaves out a server without a limit."""
    redis = "mobius-cache-redis.json"
    keys = substitute(_expr(redis, "Keys by namespace"))
    share = substitute(_expr(redis, "Namespace share of maxmemory"))
    index_keys = substitute(_expr(redis, "Index keys share", "A"))
    index_memory = substitute(_expr(redis, "Index keys share", "B"))

    def series(metric: str, pod: str, value: str, **labels: str) -> dict[str, str]:
        extra = "".join(f', {k}="{v}"' for k, v in labels.items())
        return {"series": f'{metric}{{namespace="shop", pod="{pod}"{extra}}}', "values": value}

    count, memory = "redis_key_group_count", "redis_key_group_memory_usage_bytes"
    primary = [
        series("redis_instance_info", "redis-0", "1x10", role="master"),
        series("redis_memory_max_bytes", "redis-0", "1000x10"),
        series(count, "redis-0", "6x10", db="db0", key_group="mobius:search"),
        series(count, "redis-0", "2x10", db="db1", key_group="mobius:search"),
        series(count, "redis-0", "2x10", db="db0", key_group="mobius:~tag"),
        series(memory, "redis-0", "400x10", db="db0", key_group="mobius:search"),
        series(memory, "redis-0", "100x10", db="db0", key_group="mobius:~tag"),
        # its replica holds the same keys again
        series("redis_instance_info", "redis-1", "1x10", role="slave"),
        series("redis_memory_max_bytes", "redis-1", "1000x10"),
        series(count, "redis-1", "8x10", db="db0", key_group="mobius:search"),
        series(memory, "redis-1", "400x10", db="db0", key_group="mobius:search"),
    ]
    unlimited = [
        series("redis_instance_info", "redis-2", "1x10", role="master"),
        series("redis_memory_max_bytes", "redis-2", "0x10"),
        series(count, "redis-2", "5x10", db="db0", key_group="mobius:user"),
        series(memory, "redis-2", "300x10", db="db0", key_group="mobius:user"),
    ]

    def case(
        inputs: list[dict[str, str]], checks: list[tuple[str, list[tuple[str, float]]]]
    ) -> dict[str, object]:
        return {
            "interval": "1m",
            "input_series": inputs,
            "promql_expr_test": [
                {
                    "expr": expr,
                    "eval_time": "5m",
                    "exp_samples": [{"labels": labels, "value": value} for labels, value in samples],
                }
                for expr, samples in checks
            ],
        }

    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            case(
                primary,
                [
                    (keys, [('{key_group="mobius:search"}', 8), ('{key_group="mobius:~tag"}', 2)]),
                    (share, [('{key_group="mobius:search"}', 0.4), ('{key_group="mobius:~tag"}', 0.1)]),
                    (index_keys, [("{}", 0.2)]),
                    (index_memory, [("{}", 0.2)]),
                ],
            ),
            case(
                unlimited,
                [
                    (keys, [('{key_group="mobius:user"}', 5)]),
                    (share, []),
                    (index_keys, [("{}", 0)]),
                    (index_memory, [("{}", 0)]),
                ],
            ),
        ],
    }
    test_file = tmp_path / "keygroups.test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr
