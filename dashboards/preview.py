"""Static previews of the dashboards: the main panels' real queries, run by a real Prometheus, drawn as PNG.

No Grafana runs on the build machines, so this is how docs/observability.md shows what the panels look like.
It reads the committed dashboard JSON, fills in the template variables the way Grafana does ("All" for
namespace and pod, ``$__rate_interval``, ``$__range``), runs each query as a range query and draws one grid of
panels per dashboard, with the panel's unit and its threshold lines.

The live test (tests/dashboards/test_live.py) calls ``render`` against the Prometheus it starts; to refresh
the committed images run
``MOBIUS_PREVIEW_DIR=docs/img .venv/bin/python -m pytest tests/dashboards/test_live.py``.
Against any other Prometheus: ``python dashboards/preview.py --prometheus URL --start UNIX --end UNIX``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "docs" / "img"

#: The panels drawn, per dashboard file: the ones an operator looks at first.
MAIN_PANELS: dict[str, tuple[str, ...]] = {
    "mobius-cache-overview.json": (
        "Hit ratio by cache namespace",
        "Requests/s by op and result",
        "Operation latency p50 / p95 / p99",
        "Errors and bypasses/s",
        "Circuit breaker state by pod",
        "Pool connections in use vs max",
        "Slow operations/s",
        "Invalidations/s by kind",
        "Sidecar HTTP requests/s by route and status",
    ),
    "mobius-cache-redis.json": (
        "Memory used vs maxmemory",
        "Memory used % of maxmemory",
        "Evictions/s",
        "Commands/s",
        "Connected and blocked clients",
        "Keys by pod",
        "Server-side hit ratio",
        "Expirations/s",
        "Redis up by pod",
        "Keys by namespace",
        "Memory by namespace",
        "Namespace share of maxmemory",
        "Index keys share",
        "Key-group scan duration",
    ),
}


def substitute(expr: str, *, rate_interval: str, time_range: str, selection: str = ".*") -> str:
    """Fill in Grafana's variables: $namespace and $pod (``selection``; "All" is ``.*``), $__rate_interval
    and $__range. Any other variable is an error, so a new one cannot slip through untested."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__range", time_range)
    expr = re.sub(r"\$\{?(namespace|pod)\}?", selection, expr)
    leftover = re.search(r"\$\{?\w+", expr)
    if leftover:
        raise ValueError(f"unknown variable {leftover.group(0)} in {expr!r}")
    return expr


@dataclass(frozen=True)
class Series:
    label: str
    times: list[float]
    values: list[float]


class Prometheus:
    """The two calls of Prometheus's HTTP API the previews and the live test need."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def _get(self, path: str, params: dict[str, str]) -> Any:
        response = self.http.get(path, params=params)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path} failed: {body.get('error', response.text)} for {params}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        result: list[dict[str, Any]] = self._get("/api/v1/query", params)["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        result: list[dict[str, Any]] = self._get("/api/v1/query_range", params)["result"]
        return result

    def close(self) -> None:
        self.http.close()


def legend(template: str, labels: dict[str, str]) -> str:
    if not template or template == "__auto":
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def panel_series(
    prom: Prometheus, panel: dict[str, Any], start: float, end: float, step: float
) -> list[Series]:
    rate_interval = f"{max(4 * step, 4):g}s"
    time_range = f"{math.ceil(end - start)}s"
    out = []
    for target in panel.get("targets", []):
        expr = substitute(target["expr"], rate_interval=rate_interval, time_range=time_range)
        for row in prom.query_range(expr, start, end, step):
            times = [float(t) - start for t, _ in row["values"]]
            values = [float(v) for _, v in row["values"]]
            out.append(Series(legend(target.get("legendFormat", ""), row["metric"]), times, values))
    return out


def _scale(unit: str) -> tuple[float, str]:
    """Multiplier and axis label for a Grafana unit."""
    return {
        "percentunit": (100.0, "%"),
        "s": (1000.0, "ms"),
        "bytes": (1 / 2**20, "MiB"),
        "reqps": (1.0, "req/s"),
        "ops": (1.0, "ops/s"),
        "ms": (1.0, "ms"),
    }.get(unit, (1.0, ""))


def stacked(series: Sequence[Series]) -> tuple[list[float], list[list[float]]]:
    """The series on one common time axis (a missing point counts 0), as Grafana stacks them."""
    times = sorted({t for s in series for t in s.times})
    return times, [[dict(zip(s.times, s.values, strict=True)).get(t, 0.0) for t in times] for s in series]


def draw(
    prom: Prometheus, board_file: str, out_dir: Path, start: float, end: float, step: float = 1.0
) -> Path:
    """One PNG with the main panels of one dashboard, three to a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = json.loads((HERE / board_file).read_text(encoding="utf-8"))
    by_title = {p["title"]: p for p in board["panels"] if p.get("type") != "row"}
    titles = MAIN_PANELS[board_file]
    cols = 3
    rows = math.ceil(len(titles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.4 * rows), squeeze=False)
    fig.suptitle(f"{board['title']} (preview: live Prometheus, test workload)", fontsize=14)
    for ax, title in zip(axes.flat, titles, strict=False):
        panel = by_title[title]
        defaults = panel["fieldConfig"]["defaults"]
        factor, unit_label = _scale(defaults.get("unit", ""))
        drawn = panel_series(prom, panel, start, end, step)
        if defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal" and drawn:
            times, values = stacked(drawn)
            scaled = [[v * factor for v in row] for row in values]
            ax.stackplot(times, scaled, labels=[s.label for s in drawn], alpha=0.7)
        else:
            for series in drawn:
                ax.plot(series.times, [v * factor for v in series.values], label=series.label, linewidth=1.4)
        for step_ in defaults.get("thresholds", {}).get("steps", []):
            if (
                step_["value"] is not None
                and panel["fieldConfig"]["defaults"]
                .get("custom", {})
                .get("thresholdsStyle", {})
                .get("mode", "off")
                != "off"
            ):
                ax.axhline(step_["value"] * factor, color=step_["color"], linestyle="--", linewidth=1)
        ax.set_xlim(0, end - start)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit_label)
        ax.set_xlabel("seconds into the test")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(titles) :]:
        ax.set_visible(False)
    # Fixed margins: tight_layout would draw the whole figure once more (seconds on a busy 2-core machine).
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.07, top=0.92, hspace=0.45, wspace=0.18)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / board_file.replace(".json", ".png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def render(
    prom_url: str, start: float, end: float, out_dir: Path = DEFAULT_OUT, step: float = 1.0
) -> list[Path]:
    prom = Prometheus(prom_url)
    try:
        return [draw(prom, board_file, out_dir, start, end, step) for board_file in MAIN_PANELS]
    finally:
        prom.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--start", type=float, required=True, help="unix time")
    parser.add_argument("--end", type=float, required=True, help="unix time")
    parser.add_argument("--step", type=float, default=1.0, help="seconds between points")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for path in render(args.prometheus, args.start, args.end, args.out, args.step):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
