"""The key-group exporter exactly as the chart configures it, run on loopback by the tests and the benchmark.

The chart is the one source of its settings: ``chart_env`` renders the chart with the real helm and reads the
``key-groups`` container's environment (the Lua patterns, the group cap, the batch size), and ``scrape_job``
turns the ServiceMonitor's key-group endpoint into a plain Prometheus scrape job with the same relabelling.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.chart import helm
from tests.dashboards.stack import Proc, _exe
from tests.servers import HOST

MONITOR_API = ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"]
_SAMPLE = re.compile(
    r'^redis_key_group_(count|memory_usage_bytes)\{db="([^"]+)",key_group="([^"]+)"\} (\S+)$'
)


def helm_missing() -> str:
    """Why the chart cannot be rendered here ("" when it can)."""
    return "" if helm.HELM.exists() else f"no helm at {helm.HELM}: `make test` installs it"


def chart_env(values: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The plain ``value`` env entries of the rendered ``key-groups`` container (no Secret references)."""
    docs = helm.render(values or {}, *MONITOR_API)
    containers = helm.pod_spec(helm.one(docs, "StatefulSet"))["containers"]
    (container,) = [c for c in containers if c["name"] == "key-groups"]
    return {e["name"]: str(e["value"]) for e in container["env"] if "value" in e}


def scrape_job(
    name: str, port: int, labels: Mapping[str, str], values: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A Prometheus scrape job for the key-group exporter on ``port`` with the ServiceMonitor's relabelling
    (its interval and timeout are left to the caller's global settings: tests scrape every second)."""
    merged = {"monitoring.serviceMonitor.enabled": True, **(values or {})}
    monitor = helm.one(helm.render(merged, *MONITOR_API), "ServiceMonitor")
    (endpoint,) = [e for e in monitor["spec"]["endpoints"] if e["port"] == "key-groups"]
    relabel = [
        {"source_labels": r["sourceLabels"], "regex": r["regex"], "action": r["action"]}
        for r in endpoint["metricRelabelings"]
    ]
    return {
        "job_name": name,
        "metrics_path": endpoint["path"],
        "static_configs": [{"targets": [f"{HOST}:{port}"], "labels": dict(labels)}],
        "metric_relabel_configs": relabel,
    }


def exporter(
    redis_port: int, port: int, log: Path, env: Mapping[str, str], batch_size: int | None = None
) -> Proc:
    """The Debian prometheus-redis-exporter with the chart's key-group env, pointed at a loopback Redis."""
    settings = {
        **env,
        "REDIS_ADDR": f"redis://{HOST}:{redis_port}",
        "REDIS_EXPORTER_WEB_LISTEN_ADDRESS": f"{HOST}:{port}",
    }
    if batch_size is not None:
        settings["REDIS_EXPORTER_CHECK_KEYS_BATCH_SIZE"] = str(batch_size)
    return Proc("key-group exporter", [_exe("prometheus-redis-exporter")], log, env=settings)


@dataclass(frozen=True)
class Group:
    """One key group as the exporter reported it, summed over the databases."""

    keys: float
    memory: float


def parse_groups(exposition: str) -> dict[str, Group]:
    """The ``redis_key_group_*`` samples of one /metrics text, summed over databases, by group."""
    keys: dict[str, float] = {}
    memory: dict[str, float] = {}
    for line in exposition.splitlines():
        match = _SAMPLE.match(line)
        if match:
            kind, _db, group, value = match.groups()
            target = keys if kind == "count" else memory
            target[group] = target.get(group, 0.0) + float(value)
    return {group: Group(keys[group], memory.get(group, 0.0)) for group in keys}
