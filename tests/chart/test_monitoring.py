"""Dashboards and alert rules come from dashboards/ unchanged; monitoring objects only where APIs exist."""

from __future__ import annotations

import json

import yaml

from tests.chart import helm
from tests.chart.admitted import admitted, sidecar_of
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


POD_MONITOR_API = ["--api-versions", "monitoring.coreos.com/v1/PodMonitor"]


def test_pod_monitor_scrapes_the_sidecars_metrics_port() -> None:
    values = {
        "monitoring.podMonitor.enabled": True,
        "monitoring.podMonitor.labels": {"release": "kube-prometheus"},
        "example.enabled": True,
    }
    docs = render(values, *POD_MONITOR_API)
    monitor = one(docs, "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["cache"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    # The dashboards read the cache namespace from `exported_namespace`: Prometheus must rename the label.
    assert endpoint["honorLabels"] is False
    assert endpoint["path"] == "/metrics"
    # It selects the example pod (as injected), whose sidecar has a container port of that name.
    pod = admitted(docs, "mc-mobius-cache-example")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    containers = [*pod["spec"].get("initContainers", ()), *pod["spec"]["containers"]]
    ports = [p["name"] for c in containers for p in c.get("ports", ())]
    assert ports == [endpoint["port"]]


def test_pod_monitor_needs_the_api_and_the_metrics_port() -> None:
    on = {"monitoring.podMonitor.enabled": True}
    assert not find(render(on), "PodMonitor"), "no PodMonitor API in the cluster"
    assert not find(render({}, *POD_MONITOR_API), "PodMonitor"), "off by default"
    refused = helm.template({**on, "sidecar.metricsPort": 0}, *POD_MONITOR_API)
    assert refused.returncode != 0
    assert "monitoring.podMonitor.enabled needs sidecar.metricsPort" in refused.stderr
    clash = helm.template({"sidecar.metricsPort": 8787})
    assert clash.returncode != 0 and "must differ from sidecar.port" in clash.stderr


def test_metrics_port_off_leaves_the_sidecar_loopback_only() -> None:
    docs = render({"example.enabled": True, "sidecar.metricsPort": 0})
    sidecar = sidecar_of(admitted(docs, "mc-mobius-cache-example"))
    assert "ports" not in sidecar
    assert "MOBIUS_SIDECAR_METRICS_PORT" not in {e["name"] for e in sidecar["env"]}
