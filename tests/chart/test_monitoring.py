"""Dashboards and alert rules come from dashboards/ unchanged; monitoring objects only where APIs exist."""

from __future__ import annotations

import json

import yaml

from tests.chart import helm
from tests.chart.helm import find, one, render

DASHBOARDS = helm.ROOT / "dashboards"
RULES = DASHBOARDS / "alerts.rules.yaml"
APIS = [
    "--api-versions",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "--api-versions",
    "monitoring.coreos.com/v1/PrometheusRule",
]
ON = {"monitoring.serviceMonitor.enabled": True, "monitoring.prometheusRule.enabled": True}


def test_dashboard_configmaps_equal_the_dashboards() -> None:
    sources = sorted(DASHBOARDS.glob("*.json"))
    assert sources, "dashboards/*.json missing"
    maps = [
        d for d in render({}) if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]
    ]
    assert len(maps) == len(sources)
    rendered = {}
    for configmap in maps:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, text),) = configmap["data"].items()
        rendered[name] = text
    for source in sources:
        assert rendered[source.name].rstrip("\n") == source.read_text().rstrip("\n"), source.name
        json.loads(rendered[source.name])


def test_dashboards_can_go_to_grafanas_namespace() -> None:
    docs = render({"monitoring.dashboards.namespace": "grafana"})
    maps = [d for d in docs if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]]
    assert maps and {m["metadata"]["namespace"] for m in maps} == {"grafana"}
    assert not [
        d for d in render({"monitoring.dashboards.enabled": False}) if "dashboard" in d["metadata"]["name"]
    ]


def test_monitoring_objects_need_the_cluster_apis() -> None:
    docs = render(ON)
    assert not find(docs, "ServiceMonitor") and not find(docs, "PrometheusRule")
    docs = render(ON, *APIS)
    assert find(docs, "ServiceMonitor") and find(docs, "PrometheusRule")
    assert not find(render({}, *APIS), "ServiceMonitor"), "enabled is false by default"


def test_prometheus_rule_spec_is_the_rules_file() -> None:
    rule = one(render(ON, *APIS), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert rule["spec"]["groups"]


def test_service_monitor_scrapes_the_exporter_port() -> None:
    docs = render({**ON, "monitoring.serviceMonitor.labels": {"release": "kube-prometheus"}}, *APIS)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    service = one(docs, "Service", "mc-mobius-cache-redis")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert not find(render({**ON, "exporter.enabled": False}, *APIS), "ServiceMonitor")
