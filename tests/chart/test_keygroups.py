"""The key-group exporter as rendered: a container of its own in the Redis pod, configured from the cache's key
layout, scraped on its own interval with only its own series kept, and the alert threshold set from values.

What the patterns do to real keys is checked against the real exporter in tests/dashboards/test_keygroups.py.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart import helm
from tests.chart.helm import find, one, pod_spec, render

MONITORING = [
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
]
ON = {"monitoring.serviceMonitor.enabled": True, "monitoring.prometheusRule.enabled": True}


def _container(docs: list[dict[str, Any]], name: str = "key-groups") -> dict[str, Any]:
    (found,) = [c for c in pod_spec(one(docs, "StatefulSet"))["containers"] if c["name"] == name]
    return found


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _patterns(env: dict[str, Any]) -> list[str]:
    """The exporter reads REDIS_EXPORTER_CHECK_KEY_GROUPS as one CSV record (Go's encoding/csv)."""
    (record,) = list(csv.reader([env["REDIS_EXPORTER_CHECK_KEY_GROUPS"]]))
    return record


def test_default_key_groups_are_prefix_plus_namespace() -> None:
    docs = render({})
    container = _container(docs)
    env = _env(container)
    assert _patterns(env) == ["^(mobius%:[^:]+):"]
    assert env["REDIS_EXPORTER_MAX_DISTINCT_KEY_GROUPS"] == "20"
    assert env["REDIS_EXPORTER_CHECK_KEYS_BATCH_SIZE"] == "100"
    assert env["REDIS_EXPORTER_REDIS_ONLY_METRICS"] == "true"
    assert env["REDIS_ADDR"] == "redis://localhost:6379"
    assert env["REDIS_EXPORTER_WEB_LISTEN_ADDRESS"] == ":9122"
    # As the exporter's ACL user (charts/mobius-cache/files/redis/users.acl), with no CONFIG.
    assert env["REDIS_USER"] == "mobius-exporter" and env["REDIS_EXPORTER_CONFIG_COMMAND"] == "-"
    assert env["REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "mc-mobius-cache-redis", "key": "mobius-exporter"}
    }
    # Same image as the main exporter; no readiness probe (it would take the Redis pod out of its Service).
    assert container["image"] == _container(docs, "exporter")["image"] == "oliver006/redis_exporter:v1.45.0"
    assert "readinessProbe" not in container
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "key-groups"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["memory"] == "64Mi"


def test_the_main_exporter_does_not_scan_keys() -> None:
    env = _env(_container(render({}), "exporter"))
    assert not {k for k in env if "CHECK_KEY" in k or "COUNT_KEYS" in k}


def test_prefixes_follow_the_cache_prefix_or_the_list() -> None:
    env = _env(_container(render({"cacheConfig.keyPrefix": "shop:"})))
    assert _patterns(env) == ["^(shop%:[^:]+):"]
    env = _env(_container(render({"exporter.keyGroups.prefixes": ["a.b-c:", 'q"x,y|', ""]})))
    # Every non-alphanumeric character is escaped for Lua; the CSV quoting keeps the comma and the quote.
    assert _patterns(env) == ["^(a%.b%-c%:[^:]+):", '^(q%"x%,y%|[^:]+):', "^([^:]+):"]


def test_values_reach_the_container() -> None:
    values = {
        "exporter.keyGroups.maxGroups": 7,
        "exporter.keyGroups.batchSize": 500,
        "exporter.keyGroups.port": 9300,
    }
    docs = render(values)
    container = _container(docs)
    env = _env(container)
    assert env["REDIS_EXPORTER_MAX_DISTINCT_KEY_GROUPS"] == "7"
    assert env["REDIS_EXPORTER_CHECK_KEYS_BATCH_SIZE"] == "500"
    assert env["REDIS_EXPORTER_WEB_LISTEN_ADDRESS"] == ":9300"
    assert container["ports"] == [{"name": "key-groups", "containerPort": 9300}]
    service = one(docs, "Service", "mc-mobius-cache-redis")
    assert {"name": "key-groups", "port": 9300, "targetPort": "key-groups"} in service["spec"]["ports"]


@pytest.mark.parametrize("off", [{"exporter.keyGroups.enabled": False}, {"exporter.enabled": False}])
def test_off_removes_container_port_endpoint_and_policy_port(off: dict[str, Any]) -> None:
    docs = render({**ON, **off}, *MONITORING)
    names = [c["name"] for c in pod_spec(one(docs, "StatefulSet"))["containers"]]
    assert "key-groups" not in names
    service = one(docs, "Service", "mc-mobius-cache-redis")
    assert "key-groups" not in {p["name"] for p in service["spec"]["ports"]}
    for monitor in find(docs, "ServiceMonitor"):
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    policy = one(docs, "NetworkPolicy", "mc-mobius-cache-redis")
    assert "key-groups" not in yaml.safe_dump(policy)


def test_service_monitor_scrapes_key_groups_on_their_own_interval_and_keeps_only_their_series() -> None:
    docs = render(
        {**ON, "exporter.keyGroups.interval": "3m", "exporter.keyGroups.scrapeTimeout": "2m"}, *MONITORING
    )
    endpoints = {e["port"]: e for e in one(docs, "ServiceMonitor")["spec"]["endpoints"]}
    assert endpoints["metrics"]["interval"] == "30s"
    key_groups = endpoints["key-groups"]
    assert (key_groups["interval"], key_groups["scrapeTimeout"]) == ("3m", "2m")
    (keep,) = key_groups["metricRelabelings"]
    assert keep["action"] == "keep" and keep["sourceLabels"] == ["__name__"]
    kept = re.compile(f"^(?:{keep['regex']})$")  # Prometheus anchors relabel regexes
    for name in (
        "redis_key_group_count",
        "redis_key_group_memory_usage_bytes",
        "redis_number_of_distinct_key_groups",
        "redis_last_key_groups_scrape_duration_milliseconds",
    ):
        assert kept.match(name), name
    for name in ("redis_up", "redis_memory_used_bytes", "redis_db_keys", "redis_exporter_build_info"):
        assert not kept.match(name), f"{name} would be scraped twice"


def test_network_policy_admits_prometheus_to_the_key_group_port() -> None:
    policy = one(render({}), "NetworkPolicy", "mc-mobius-cache-redis")
    metrics_rule = next(r for r in policy["spec"]["ingress"] if {"port": "metrics"} in r["ports"])
    assert {"port": "key-groups"} in metrics_rule["ports"]


def test_a_scrape_timeout_longer_than_the_interval_is_refused() -> None:
    result = helm.template({"exporter.keyGroups.interval": "1m", "exporter.keyGroups.scrapeTimeout": "90s"})
    assert result.returncode != 0
    assert (
        "exporter.keyGroups.scrapeTimeout (90s) must not exceed exporter.keyGroups.interval (1m)"
        in result.stderr
    )
    assert (
        helm.template(
            {"exporter.keyGroups.interval": "90s", "exporter.keyGroups.scrapeTimeout": "90s"}
        ).returncode
        == 0
    )


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"exporter.keyGroups.batchSize": 0}, "/exporter/keyGroups/batchSize"),
        ({"exporter.keyGroups.maxGroups": 0}, "/exporter/keyGroups/maxGroups"),
        ({"exporter.keyGroups.interval": "2 minutes"}, "/exporter/keyGroups/interval"),
        ({"exporter.keyGroups.prefixes": ["my prefix:"]}, "/exporter/keyGroups/prefixes/0"),
        ({"exporter.keyGroups.prefixes": "mobius:"}, "/exporter/keyGroups/prefixes"),
        ({"exporter.keyGroups.groups": 3}, "additional properties 'groups' not allowed"),
        (
            {"monitoring.prometheusRule.keyGroupMemoryShare": 0},
            "/monitoring/prometheusRule/keyGroupMemoryShare",
        ),
        (
            {"monitoring.prometheusRule.keyGroupMemoryShare": 1.5},
            "/monitoring/prometheusRule/keyGroupMemoryShare",
        ),
    ],
)
def test_bad_key_group_values_are_refused(values: dict[str, Any], path: str) -> None:
    result = helm.template(values)
    assert result.returncode != 0, f"{values} was accepted"
    assert path in result.stderr, result.stderr


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: `make test` installs prometheus")
def test_alert_threshold_comes_from_values(tmp_path: Path) -> None:
    """The rendered PrometheusRule with a 0.3 share is a valid rules file whose alert fires at 0.4."""
    assert PROMTOOL is not None
    rule = one(
        render({**ON, "monitoring.prometheusRule.keyGroupMemoryShare": 0.3}, *MONITORING), "PrometheusRule"
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    (alert,) = [
        r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert", "").endswith("ShareHigh")
    ]
    assert alert["expr"] == "mobius_cache:key_group_memory:share_of_maxmemory > 0.3"
    annotations = {
        **alert["annotations"],
        "summary": "mobius:user holds 40% of maxmemory in Redis shop/redis-0",
    }
    pod = 'namespace="shop", pod="redis-0"'
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'redis_instance_info{{{pod}, role="master"}}', "values": "1x30"},
                    {"series": f"redis_memory_max_bytes{{{pod}}}", "values": "100x30"},
                    {
                        "series": f'redis_key_group_memory_usage_bytes{{{pod}, db="db0", key_group="mobius:user"}}',
                        "values": "40x30",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "MobiusCacheNamespaceMemoryShareHigh",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "component": "redis",
                                    "namespace": "shop",
                                    "pod": "redis-0",
                                    "key_group": "mobius:user",
                                },
                                "exp_annotations": annotations,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "rules.test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
