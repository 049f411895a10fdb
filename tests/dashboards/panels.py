"""Read the committed dashboards and alert rules as the tests and the preview see them: lists of PromQL.

Grafana fills in template variables before it sends a query; ``substitute`` does the same, so a query can be
checked by promtool or evaluated by a real Prometheus exactly as a Grafana panel would send it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dashboards import preview

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
DASHBOARD_FILES = ("mobius-cache-overview.json", "mobius-cache-redis.json")
RULES_FILE = DASHBOARDS / "alerts.rules.yaml"
RULES_TESTS = DASHBOARDS / "tests" / "alerts.test.yaml"


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel."""

    dashboard: str
    panel_id: int
    title: str
    unit: str
    ref_id: str
    legend: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.dashboard}#{self.panel_id} {self.title} [{self.ref_id}]"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that draws data (rows are only headings)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") != "row":
            yield panel


def queries(names: tuple[str, ...] = DASHBOARD_FILES) -> list[PanelQuery]:
    found = []
    for name in names:
        board = load(name)
        for panel in panels(board):
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            for target in panel.get("targets", []):
                found.append(
                    PanelQuery(
                        dashboard=board["uid"],
                        panel_id=panel["id"],
                        title=panel["title"],
                        unit=unit,
                        ref_id=target["refId"],
                        legend=target.get("legendFormat", ""),
                        expr=target["expr"],
                    )
                )
    return found


def substitute(expr: str, *, rate_interval: str = "1m", time_range: str = "1h") -> str:
    """The preview's substitution (Grafana's variables filled in), with defaults for parse checks."""
    return preview.substitute(expr, rate_interval=rate_interval, time_range=time_range)


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]
