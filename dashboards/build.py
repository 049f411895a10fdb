"""Generate the Grafana dashboards of mobius-cache from code (`make dashboards`).

The dashboards are written with Grafana's typed builders (grafana-foundation-sdk, pinned in pyproject.toml)
and the JSON they produce is committed next to this file, so Grafana provisioning and the Helm chart read
plain files.
A test regenerates them and fails when the committed JSON is stale.

Label conventions (see docs/observability.md):
- ``namespace`` and ``pod`` are the Kubernetes target labels that service discovery adds to every series.
- The sidecar's own ``namespace`` label (the cache namespace: ``document``, ``search``, ...) clashes with the
  target label, so Prometheus (``honor_labels: false``, the default) keeps it as ``exported_namespace``.

Usage: ``python dashboards/build.py [--out DIR]`` (default: the folder of this file).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    ReduceDataOptions,
    StackingConfig,
    VizLegendOptions,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

HERE = Path(__file__).resolve().parent

# Targets the operators agreed on; the alert rules use the same numbers.
HIT_RATIO_TARGET = 0.8
LATENCY_TARGET_SECONDS = 0.005
MEMORY_RATIO_LIMIT = 0.9

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
SIDECAR = 'namespace=~"$namespace", pod=~"$pod"'
REDIS = 'namespace=~"$namespace", pod=~"$pod"'
REQUESTS = "mobius_cache_requests_total"
READS = 'op=~"get|get_many"'
LOOKUPS = 'result=~"hit|miss|bypass|error"'


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel and the legend Grafana draws for its series."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Steps:
    """Threshold steps: a base colour, then (value, colour) pairs in increasing order."""

    base: str
    steps: Sequence[tuple[float, str]] = field(default_factory=tuple)

    def builder(self) -> dash.ThresholdsConfig:
        values = [model.Threshold(value=None, color=self.base)]
        values += [model.Threshold(value=value, color=colour) for value, colour in self.steps]
        return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(values)


NEUTRAL = Steps("green")


def targets(queries: Sequence[Query]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    return [
        prometheus.Dataquery().expr(q.expr).legend_format(q.legend or "__auto").ref_id(chr(ord("A") + i))
        for i, q in enumerate(queries)
    ]


def graph(
    title: str,
    description: str,
    queries: Sequence[Query],
    unit: str,
    *,
    thresholds: Steps = NEUTRAL,
    show_thresholds: bool = False,
    width: int = 12,
    min_value: float | None = 0,
    max_value: float | None = None,
) -> timeseries.Panel:
    """A time series panel; thresholds drawn as dashed lines when they mean something for this panel."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets(queries))
        .unit(unit)
        .thresholds(thresholds.builder())
        .thresholds_style(
            GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
                if show_thresholds
                else common.GraphThresholdsStyleMode.OFF
            )
        )
        .fill_opacity(10)
        .span(width)
        .height(8)
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def single(
    title: str,
    description: str,
    query: Query,
    unit: str,
    *,
    thresholds: Steps = NEUTRAL,
    mappings: Sequence[tuple[str, str, str]] = (),
    no_value: str | None = None,
    width: int = 6,
    height: int = 5,
) -> stat.Panel:
    """A stat panel showing the last value; ``mappings`` turns codes into words: (value, text, colour)."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets([query]))
        .unit(unit)
        .thresholds(thresholds.builder())
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
        .span(width)
        .height(height)
    )
    if mappings:
        options = {
            value: model.ValueMappingResult(text=text, color=colour) for value, text, colour in mappings
        }
        panel = panel.mappings([model.ValueMap(options=options)])
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def variables(metric: str, what: str) -> list[dash.DatasourceVariable | dash.QueryVariable]:
    """The datasource picker, then Kubernetes namespace and pod pickers fed by ``metric``'s target labels."""
    datasource = dash.DatasourceVariable("datasource").label("Data source").type("prometheus")

    def picker(name: str, label: str, query: str) -> dash.QueryVariable:
        return (
            dash.QueryVariable(name)
            .label(label)
            .datasource(DATASOURCE)
            .query({"query": query, "refId": f"{name}-values"})
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(model.VariableOption(selected=True, text="All", value="$__all"))
        )

    return [
        datasource,
        picker("namespace", "Namespace", f"label_values({metric}, namespace)"),
        picker("pod", f"Pod ({what})", f'label_values({metric}{{namespace=~"$namespace"}}, pod)'),
    ]


def assemble(
    uid: str,
    title: str,
    description: str,
    tags: list[str],
    metric: str,
    what: str,
    rows: Sequence[tuple[str, list[dash.Panel | stat.Panel | timeseries.Panel]]],
) -> model.Dashboard:
    """Put rows of panels on the grid, number the panels (the SDK leaves ids null) and add the variables."""
    builder = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(tags)
        .editable()
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .variables(list(variables(metric, what)))
    )
    next_id = 1
    for row_title, panels in rows:
        builder = builder.with_row(dash.Row(row_title).id(next_id))
        next_id += 1
        for panel in panels:
            builder = builder.with_panel(panel.id(next_id))
            next_id += 1
    return builder.build()


def rate(metric: str, selector: str, by: str, window: str = "$__rate_interval") -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[{window}]))"


def hit_ratio(by: str, window: str, fn: str = "rate") -> str:
    """Hits over lookups, the same definition as the sidecar's ``/v1/stats``: a lookup is a read that ended
    in a hit, a miss, a bypass (circuit open) or an error, since the app got no value from the cache in all
    three last cases. Writes (``ok``, ``skipped``, their errors) are not lookups.

    ``or <lookups> * 0`` keeps a 0 when there were lookups but not one hit (then no hit series exists),
    and ``> 0`` leaves the panel empty, rather than NaN, when there were no lookups at all.
    """
    grouping = f"sum by ({by})" if by else "sum"

    def total(selector: str) -> str:
        return f"{grouping} ({fn}({REQUESTS}{{{SIDECAR}, {READS}, {selector}}}[{window}]))"

    hit, lookup = total('result="hit"'), total(LOOKUPS)
    return f"({hit}\nor\n{lookup} * 0)\n/\n({lookup} > 0)"


def latency_quantile(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (le) "
        f"(rate(mobius_cache_operation_duration_seconds_bucket{{{SIDECAR}}}[$__rate_interval])))"
    )


# --- the near cache (issue 14): a self-contained row of the overview ------------------------------------------
NEAR_REQUESTS = "mobius_cache_near_requests_total"


def near_cache_row() -> list[dash.Panel | stat.Panel | timeseries.Panel]:
    """Hot values served from each sidecar's own memory, kept coherent by Redis client tracking. The near
    cache's hits are also hits of the hit-ratio panels above; these panels show what stayed in the pod."""

    def near(result: str, fn: str, window: str, by: str = "") -> str:
        grouping = f"sum by ({by})" if by else "sum"
        return f'{grouping} ({fn}({NEAR_REQUESTS}{{{SIDECAR}, result=~"{result}"}}[{window}]))'

    tracking = Steps("red", [(1, "green")])
    return [
        single(
            "Near cache hit ratio (selected range)",
            "Lookups of near-cached namespaces answered from the sidecar's memory, without a Redis round "
            "trip (X-Cache: hit-near), over all lookups of those namespaces.",
            Query(
                f"{near('hit', 'increase', '$__range')}\n/\n({near('hit|miss', 'increase', '$__range')} > 0)",
                "near hit ratio",
            ),
            "percentunit",
            no_value="no near lookups",
            height=8,
        ),
        single(
            "Near cache tracking (worst pod)",
            "1: Redis client tracking is established and the near cache serves. 0: tracking is lost (Redis "
            "down, an ACL without client|tracking, ...): the near cache is flushed and every read goes to Redis.",
            Query(f"min(mobius_cache_near_tracking{{{SIDECAR}}})", "tracking"),
            "none",
            thresholds=tracking,
            mappings=[("0", "off", "red"), ("1", "on", "green")],
            no_value="near cache off",
            height=8,
        ),
        graph(
            "Near cache memory vs limit",
            "Bytes each sidecar's near cache holds (as it accounts them) against its limit "
            "(MOBIUS_NEAR_CACHE_MAX_BYTES). At the limit it evicts (W-TinyLFU).",
            [
                Query(f"sum by (pod) (mobius_cache_near_bytes{{{SIDECAR}}})", "{{pod}} held"),
                Query(f"max by (pod) (mobius_cache_near_max_bytes{{{SIDECAR}}})", "{{pod}} limit"),
            ],
            "bytes",
            width=6,
        ),
        graph(
            "Near cache hits, misses and evictions/s",
            "Per second over all pods: lookups answered from memory (hit), read from Redis (miss), and "
            "entries pushed out for room (evicted).",
            [
                Query(near("hit|miss", "rate", "$__rate_interval", "result"), "{{result}}"),
                Query(
                    f"sum(rate(mobius_cache_near_evictions_total{{{SIDECAR}}}[$__rate_interval]))", "evicted"
                ),
            ],
            "ops",
            width=6,
        ),
        graph(
            "Near cache invalidations received/s",
            "What Redis tracking told the sidecars: keys changed anywhere (key), FLUSHALL/FLUSHDB (flush), "
            "and tracking connections lost (lost: each one flushes that sidecar's near cache).",
            [Query(rate("mobius_cache_near_invalidations_total", SIDECAR, "kind"), "{{kind}}")],
            "ops",
            width=6,
        ),
    ]


def overview() -> model.Dashboard:
    ratio_steps = Steps("red", [(HIT_RATIO_TARGET, "green")])
    latency_steps = Steps("green", [(LATENCY_TARGET_SECONDS, "red")])
    hit_ratio_row: list[dash.Panel | stat.Panel | timeseries.Panel] = [
        single(
            "Hit ratio (selected range)",
            "Hits / lookups (hit, miss, bypass, error of reads) over the whole time range, "
            f"all cache namespaces. Target {HIT_RATIO_TARGET}.",
            Query(hit_ratio("", "$__range", fn="increase"), "hit ratio"),
            "percentunit",
            thresholds=ratio_steps,
            no_value="no lookups",
            height=8,
        ),
        graph(
            "Hit ratio by cache namespace",
            "Hits / lookups per cache namespace (the key's first segment); the dashed line is the target.",
            [
                Query(hit_ratio("", "$__rate_interval"), "all namespaces"),
                Query(hit_ratio("exported_namespace", "$__rate_interval"), "{{exported_namespace}}"),
            ],
            "percentunit",
            thresholds=ratio_steps,
            show_thresholds=True,
            width=18,
            max_value=1,
        ),
    ]
    traffic_row: list[dash.Panel | stat.Panel | timeseries.Panel] = [
        graph(
            "Requests/s by op and result",
            "Cache operations per second, split by operation and outcome (hit, miss, error, bypass).",
            [Query(rate(REQUESTS, SIDECAR, "op, result"), "{{op}} {{result}}")],
            "reqps",
        ),
        graph(
            "Operation latency p50 / p95 / p99",
            "From the operation histogram, all operations. "
            f"The dashed line is the {LATENCY_TARGET_SECONDS * 1000:g} ms target.",
            [Query(latency_quantile(q), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)],
            "s",
            thresholds=latency_steps,
            show_thresholds=True,
        ),
        graph(
            "Errors and bypasses/s",
            "Errors: Redis answered with an error or timed out. Bypass: Redis unreachable or circuit open; "
            "reads fail open (served as misses).",
            [Query(rate(REQUESTS, f'{SIDECAR}, result=~"error|bypass"', "op, result"), "{{op}} {{result}}")],
            "reqps",
            thresholds=Steps("green", [(1, "red")]),
        ),
        graph(
            "Slow operations/s",
            "Operations slower than the configured slow-operation threshold, by operation.",
            [Query(rate("mobius_cache_slow_operations_total", SIDECAR, "op"), "{{op}}")],
            "ops",
        ),
    ]
    health_row: list[dash.Panel | stat.Panel | timeseries.Panel] = [
        single(
            "Circuit breaker (worst pod)",
            "0 closed (Redis in use), 1 half-open (probing), 2 open (Redis bypassed, reads are misses).",
            Query(f"max(mobius_cache_circuit_state{{{SIDECAR}}})", "state"),
            "none",
            thresholds=Steps("green", [(1, "orange"), (2, "red")]),
            mappings=[("0", "closed", "green"), ("1", "half-open", "orange"), ("2", "open", "red")],
            height=8,
        ),
        graph(
            "Circuit breaker state by pod",
            "0 closed, 1 half-open, 2 open.",
            [Query(f"max by (pod) (mobius_cache_circuit_state{{{SIDECAR}}})", "{{pod}}")],
            "none",
            thresholds=Steps("green", [(1, "orange"), (2, "red")]),
            show_thresholds=True,
            width=6,
            max_value=2,
        ),
        graph(
            "Pool connections in use vs max",
            "Redis connections checked out of each pod's pool, against the pool's maximum. "
            "At the maximum, callers wait (bounded) and then get a pool-exhausted error.",
            [
                Query(
                    f'sum by (pod) (mobius_cache_pool_connections{{{SIDECAR}, state="in_use"}})',
                    "{{pod}} in use",
                ),
                Query(
                    f'sum by (pod) (mobius_cache_pool_connections{{{SIDECAR}, state="idle"}})', "{{pod}} idle"
                ),
                Query(f"max by (pod) (mobius_cache_pool_max_connections{{{SIDECAR}}})", "{{pod}} max"),
            ],
            "short",
        ),
        graph(
            "Invalidations/s by kind",
            "Keys invalidated per second: by key, glob pattern, tag, cascade (dependents) "
            "and event (from other instances).",
            [Query(rate("mobius_cache_invalidations_total", SIDECAR, "kind"), "{{kind}}")],
            "ops",
        ),
        graph(
            "Invalidation retry queue",
            "Invalidations that could not reach Redis and wait to be retried (never dropped). "
            "Should stay at 0.",
            [Query(f"sum by (pod) (mobius_cache_invalidation_queue_length{{{SIDECAR}}})", "{{pod}}")],
            "short",
            thresholds=Steps("green", [(1, "orange")]),
            show_thresholds=True,
        ),
        graph(
            "Sidecar HTTP requests/s by route and status",
            "Requests the apps send to the localhost sidecar.",
            [
                Query(
                    rate("mobius_sidecar_http_requests_total", SIDECAR, "route, status"),
                    "{{route}} {{status}}",
                )
            ],
            "reqps",
        ),
    ]
    return assemble(
        "mobius-cache-overview",
        "Mobius cache — overview",
        "Cache effectiveness, latency, errors and pool health, from the sidecars' mobius_cache metrics.",
        ["mobius-cache", "redis", "cache"],
        REQUESTS,
        "sidecar",
        [
            ("Hit ratio", hit_ratio_row),
            ("Traffic and latency", traffic_row),
            ("Health", health_row),
            ("Near cache", near_cache_row()),
        ],
    )


def redis() -> model.Dashboard:
    memory_steps = Steps("green", [(0.8, "orange"), (MEMORY_RATIO_LIMIT, "red")])
    status_row: list[dash.Panel | stat.Panel | timeseries.Panel] = [
        single(
            "Redis up",
            "Whether the exporter could reach Redis at its last scrape (the lowest over the selected pods).",
            Query(f"min(redis_up{{{REDIS}}})", "up"),
            "none",
            thresholds=Steps("red", [(1, "green")]),
            mappings=[("0", "down", "red"), ("1", "up", "green")],
        ),
        single(
            "Memory used % of maxmemory",
            "The fullest selected Redis. Empty ('no maxmemory') when maxmemory is 0 (no limit), "
            "instead of dividing by 0.",
            Query(
                f"max(redis_memory_used_bytes{{{REDIS}}} / (redis_memory_max_bytes{{{REDIS}}} > 0))", "used"
            ),
            "percentunit",
            thresholds=memory_steps,
            no_value="no maxmemory",
        ),
        single(
            "Server-side hit ratio",
            "keyspace_hits / (hits + misses) over the selected range, as Redis counts it "
            "(all clients, all commands).",
            Query(
                f"sum(increase(redis_keyspace_hits_total{{{REDIS}}}[$__range]))\n/\n"
                f"((sum(increase(redis_keyspace_hits_total{{{REDIS}}}[$__range])) + "
                f"sum(increase(redis_keyspace_misses_total{{{REDIS}}}[$__range]))) > 0)",
                "hit ratio",
            ),
            "percentunit",
            thresholds=Steps("red", [(HIT_RATIO_TARGET, "green")]),
            no_value="no lookups",
        ),
        single(
            "Keys",
            "Keys stored, all databases of the selected Redis servers.",
            Query(f"sum(redis_db_keys{{{REDIS}}})", "keys"),
            "short",
        ),
    ]
    memory_row: list[dash.Panel | stat.Panel | timeseries.Panel] = [
        graph(
            "Memory used vs maxmemory",
            "used_memory against the maxmemory limit; at the limit Redis evicts by its policy "
            "(or refuses writes).",
            [
                Query(f"redis_memory_used_bytes{{{REDIS}}}", "{{pod}} used"),
                Query(f"redis_memory_max_bytes{{{REDIS}}} > 0", "{{pod}} maxmemory"),
            ],
            "bytes",
        ),
        graph(
            "Memory used % of maxmemory",
            f"The dashed line is the {MEMORY_RATIO_LIMIT:.0%} alert threshold. No line when maxmemory is 0.",
            [
                Query(
                    f"redis_memory_used_bytes{{{REDIS}}} / (redis_memory_max_bytes{{{REDIS}}} > 0)", "{{pod}}"
                )
            ],
            "percentunit",
            thresholds=memory_steps,
            show_thresholds=True,
            max_value=1,
        ),
        graph(
            "Evictions/s",
            "Keys evicted to stay under maxmemory. "
            "Sustained evictions mean the cache is too small for its working set.",
            [Query(rate("redis_evicted_keys_total", REDIS, "pod"), "{{pod}}")],
            "ops",
        ),
        graph(
            "Expirations/s",
            "Keys removed because their TTL ran out.",
            [Query(rate("redis_expired_keys_total", REDIS, "pod"), "{{pod}}")],
            "ops",
        ),
    ]
    load_row: list[dash.Panel | stat.Panel | timeseries.Panel] = [
        graph(
            "Commands/s",
            "Commands processed by Redis per second.",
            [Query(rate("redis_commands_processed_total", REDIS, "pod"), "{{pod}}")],
            "ops",
        ),
        graph(
            "Keys by pod",
            "Keys stored (all databases).",
            [Query(f"sum by (pod) (redis_db_keys{{{REDIS}}})", "{{pod}}")],
            "short",
        ),
        graph(
            "Connected and blocked clients",
            "Client connections (every sidecar pool, the operator, the exporter) "
            "and clients blocked in a command.",
            [
                Query(f"sum by (pod) (redis_connected_clients{{{REDIS}}})", "{{pod}} connected"),
                Query(f"sum by (pod) (redis_blocked_clients{{{REDIS}}})", "{{pod}} blocked"),
            ],
            "short",
        ),
        graph(
            "Rejected connections/s",
            "Connections refused because maxclients was reached. Should be 0.",
            [Query(rate("redis_rejected_connections_total", REDIS, "pod"), "{{pod}}")],
            "ops",
            thresholds=Steps("green", [(0.001, "red")]),
        ),
        graph(
            "Server-side hit ratio",
            "keyspace_hits / (hits + misses) per Redis, as the server counts it.",
            [
                Query(
                    f"{rate('redis_keyspace_hits_total', REDIS, 'pod')}\n/\n("
                    f"{rate('redis_keyspace_hits_total', REDIS, 'pod')} + "
                    f"{rate('redis_keyspace_misses_total', REDIS, 'pod')} > 0)",
                    "{{pod}}",
                )
            ],
            "percentunit",
            thresholds=Steps("red", [(HIT_RATIO_TARGET, "green")]),
            show_thresholds=True,
            max_value=1,
        ),
        graph(
            "Redis up by pod",
            "1 when the exporter reached Redis, 0 when it could not.",
            [Query(f"redis_up{{{REDIS}}}", "{{pod}}")],
            "none",
            thresholds=Steps("red", [(1, "green")]),
            max_value=1,
        ),
    ]
    return assemble(
        "mobius-cache-redis",
        "Mobius cache — Redis",
        "Redis server health from redis_exporter: memory against maxmemory, evictions, clients, commands.",
        ["mobius-cache", "redis"],
        "redis_up",
        "Redis",
        [
            ("Status", status_row),
            ("Memory and keys", memory_row),
            ("Load and clients", load_row),
            ("Keys and memory by cache namespace", key_groups_row()),
        ],
    )


# --- Keys and memory by cache namespace ------------------------------------------------------------------------
# From the chart's key-group exporter (redis_exporter -check-key-groups, a container of its own that scans the
# keyspace every exporter.keyGroups.interval): one group per key prefix + cache namespace (`mobius:search`), the
# tag and dependency indexes as `mobius:~tag` and `mobius:~deps`, keys outside the prefixes as `unclassified`,
# and the groups beyond exporter.keyGroups.maxGroups summed as `overflow`. See docs/observability.md.

#: The share of maxmemory one group may hold: the default of MobiusCacheNamespaceMemoryShareHigh's threshold.
KEY_GROUP_SHARE_LIMIT = 0.5
INDEX_GROUPS = 'key_group=~".*~(tag|deps)"'


def primaries(metric: str, selector: str = REDIS) -> str:
    """``metric`` without the replicas' series: a replica holds its primary's keys again, so summing over
    every pod would count them twice (standalone and cluster primaries report role master)."""
    return f'{metric}{{{selector}}} unless on (namespace, pod) redis_instance_info{{{REDIS}, role="slave"}}'


def by_group(metric: str) -> str:
    return f"sum by (key_group) ({primaries(metric)})"


def index_share(metric: str) -> str:
    """Index keys' part of ``metric``; 0 (not "no data") when there are keys but no index key at all."""
    total = f"sum({primaries(metric)})"
    return f"(sum({primaries(metric, f'{REDIS}, {INDEX_GROUPS}')})\nor\n{total} * 0)\n/\n({total} > 0)"


def stacked(panel: timeseries.Panel) -> timeseries.Panel:
    """Stack the series, with a legend table sorted by the last value: the top consumers first."""
    legend = (
        VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.RIGHT)
        .calcs(["lastNotNull", "max"])
        .sort_by("Last *")
        .sort_desc(True)
    )
    return panel.stacking(StackingConfig().mode(common.StackingMode.NORMAL)).fill_opacity(50).legend(legend)


def key_groups_row() -> list[dash.Panel | stat.Panel | timeseries.Panel]:
    max_memory = f"sum(({primaries('redis_memory_max_bytes')}) > 0)"
    share = f"{by_group('redis_key_group_memory_usage_bytes')}\n/ on () group_left ()\n{max_memory}"
    return [
        stacked(
            graph(
                "Keys by namespace",
                "Keys per cache namespace (prefix + first key segment), the tag and dependency indexes "
                "(~tag, ~deps), keys outside the prefix (unclassified) and the smallest groups beyond the cap "
                "(overflow). Counted by a full scan every exporter.keyGroups.interval.",
                [Query(by_group("redis_key_group_count"), "{{key_group}}")],
                "short",
            )
        ),
        stacked(
            graph(
                "Memory by namespace",
                "Bytes per cache namespace (MEMORY USAGE of every key, summed; exact for strings, sampled for "
                "large sets). The legend lists the top consumers first. The groups add up to about 94% of "
                "used_memory: the keyspace's own hash tables are not in any group.",
                [Query(by_group("redis_key_group_memory_usage_bytes"), "{{key_group}}")],
                "bytes",
            )
        ),
        graph(
            "Namespace share of maxmemory",
            "Each group's memory over maxmemory. The dashed line is the "
            f"{KEY_GROUP_SHARE_LIMIT:.0%} default of MobiusCacheNamespaceMemoryShareHigh: one namespace "
            "above it crowds the others out. No line when maxmemory is 0.",
            [Query(share, "{{key_group}}")],
            "percentunit",
            thresholds=Steps("green", [(KEY_GROUP_SHARE_LIMIT, "red")]),
            show_thresholds=True,
            width=8,
            max_value=1,
        ),
        graph(
            "Index keys share",
            "Share of keys and of memory held by the tag and dependency indexes (sorted sets written "
            "with tagged or dependent values). A growing memory share means large or stale indexes.",
            [
                Query(index_share("redis_key_group_count"), "keys"),
                Query(index_share("redis_key_group_memory_usage_bytes"), "memory"),
            ],
            "percentunit",
            width=8,
            max_value=1,
        ),
        graph(
            "Key-group scan duration",
            "How long the last key-group scan took per Redis. Redis is busy for most of it, in steps of "
            "exporter.keyGroups.batchSize keys: seconds per million keys (docs/observability.md).",
            [
                Query(
                    f"max by (pod) (redis_last_key_groups_scrape_duration_milliseconds{{{REDIS}}})", "{{pod}}"
                )
            ],
            "ms",
            width=8,
        ),
    ]


DASHBOARDS = {"mobius-cache-overview.json": overview, "mobius-cache-redis.json": redis}


def render(board: model.Dashboard) -> str:
    """Stable JSON text: sorted keys, two-space indent, trailing newline (so diffs stay readable)."""
    data = json.loads(json.dumps(board, cls=JSONEncoder))
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write the dashboards to")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in DASHBOARDS.items():
        (args.out / name).write_text(render(make()), encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
