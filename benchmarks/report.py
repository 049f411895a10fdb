"""Render docs/benchmarks.md and docs/img/bench-*.png from the results of ``python -m benchmarks``.

Pure rendering: it reads the results dict (also saved as docs/benchmarks.json) and never measures. The
verdicts on the goals are computed from the numbers, so a re-run on another machine rewrites them honestly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write"]


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return [*out, ""]


def _mr(s: dict[str, float], digits: int = 2, scale: float = 1.0) -> str:
    """median (min-max)"""
    return (
        f"{s['median'] * scale:,.{digits}f} ({s['min'] * scale:,.{digits}f}-{s['max'] * scale:,.{digits}f})"
    )


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("**met**" if ok else "**not met**")


def _section_head(results: dict[str, Any], name: str, title: str) -> list[str]:
    sec = results[name]
    mode = "quick" if sec.get("quick") else "full"
    return [f"## {title}", "", f"_Run {sec['when']}, {mode} mode, {sec['seconds']} s._", ""]


# --- clients ------------------------------------------------------------------------------------------------
def _clients(results: dict[str, Any], img: Path, goals: list[tuple[str, str, bool | None]]) -> list[str]:
    data = results["clients"]["data"]
    rows = data["rows"]
    lines = _section_head(results, "clients", "Client: raw redis-py vs Cache vs cashews vs aiocache")
    lines += [
        f"{data['rounds']} alternating rounds of {data['seconds_per_measurement']} s per client and workload "
        "(plus a discarded warm-up round), all clients in one process and one event loop, one Redis. "
        "Ratios are against raw redis-py **in the same round**; cells show the median over rounds and "
        f"(min-max). 1-minute load average during the run: {_mr(data['loadavg'])}.",
        "",
        "Configurations:",
        "",
    ]
    lines += [f"- **{name}**: {desc}" for name, desc in data["subjects"].items()] + [""]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    clients = list(dict.fromkeys(r["client"] for r in rows))
    by = {(r["workload"], r["client"]): r for r in rows}
    lines += ["### Throughput ratio vs raw redis-py (same round)", ""]
    lines += _table(
        ["workload", *clients], [[w, *(_mr(by[(w, c)]["ratio"]) for c in clients)] for w in workloads]
    )
    lines += ["### Operations per second, p50 and p99 latency (µs)", ""]
    table = []
    for w in workloads:
        for c in clients:
            r = by[(w, c)]
            table.append([w, c, _mr(r["ops"], 0), _mr(r["p50_us"], 0), _mr(r["p99_us"], 0)])
    lines += _table(["workload", "client", "ops/s", "p50 µs", "p99 µs"], table)
    if data.get("pipeline_depth"):
        lines += ["Mean operations per pipeline write (Cache, implicit pipelining):", ""]
        lines += _table(
            ["workload", "ops per write"], [[w, _mr(s, 1)] for w, s in data["pipeline_depth"].items()]
        )
    lines += ["![client ratios](img/bench-clients.png)", ""]

    def ratio(w: str, c: str) -> float:
        return float(by[(w, c)]["ratio"]["median"])

    seq = [w for w in workloads if "sequential" in w]
    conc = [w for w in workloads if "tasks" in w]
    worst_seq = min(min(ratio(w, "Cache"), ratio(w, "Cache (no autopipeline)")) for w in seq)
    goals.append(
        (
            "issue 2: sequential GET/SET 100 B and 10 KB >= 0.95x raw redis-py",
            f"worst workload {worst_seq:.2f}x",
            worst_seq >= 0.95,
        )
    )
    worst_plain = min(ratio(w, "Cache (no autopipeline)") for w in conc)
    goals.append(
        (
            "issue 2: 50 concurrent tasks >= 1.0x raw redis-py (without pipelining)",
            f"worst workload {worst_plain:.2f}x",
            worst_plain >= 1.0,
        )
    )
    pipe = {w: ratio(w, "Cache") for w in conc}
    goals.append(
        (
            "issue 8: 50 concurrent tasks >= 2.5x raw redis-py with implicit pipelining",
            ", ".join(f"{w.split(',')[0]}: {x:.2f}x" for w, x in pipe.items()),
            min(pipe.values()) >= 2.5,
        )
    )
    seq_keep = min(ratio(w, "Cache") / ratio(w, "Cache (no autopipeline)") for w in seq)
    goals.append(
        (
            "issue 8: sequential latency unchanged by pipelining (>= 0.95x of Cache without it)",
            f"worst {seq_keep:.2f}x (ratio of median ratios; noisy)",
            seq_keep >= 0.95,
        )
    )
    peers = [ratio(w, c) for w in workloads for c in ("cashews", "aiocache") if c in clients]
    if peers:
        goals.append(
            (
                "context: cashews and aiocache vs raw redis-py",
                f"{min(peers):.2f}x-{max(peers):.2f}x (median per workload)",
                None,
            )
        )
    _plot_clients(rows, workloads, clients, img / "bench-clients.png")
    return lines


def _plot_clients(rows: list[dict[str, Any]], workloads: list[str], clients: list[str], path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    by = {(r["workload"], r["client"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(11, 4.5))
    x = np.arange(len(workloads))
    width = 0.8 / len(clients)
    for i, c in enumerate(clients):
        med = [by[(w, c)]["ratio"]["median"] for w in workloads]
        lo = [m - by[(w, c)]["ratio"]["min"] for w, m in zip(workloads, med, strict=True)]
        hi = [by[(w, c)]["ratio"]["max"] - m for w, m in zip(workloads, med, strict=True)]
        ax.bar(x + i * width, med, width, yerr=[lo, hi], capsize=2, label=c)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(x + width * (len(clients) - 1) / 2, workloads, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("throughput / raw redis-py (same round)")
    ax.set_title("Clients vs raw redis-py: median over rounds, min-max bars")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- hit ratio ----------------------------------------------------------------------------------------------
def _hitratio(results: dict[str, Any], img: Path, goals: list[tuple[str, str, bool | None]]) -> list[str]:
    data = results["hitratio"]["data"]
    rows = data["rows"]
    lines = _section_head(results, "hitratio", "Hit ratio: real Redis vs Belady's optimum")
    lines += [
        f"Zipf traces of {data['requests']:,} requests over {data['keys']:,} keys, {data['value_bytes']} B "
        f"values ({data['bytes_per_key']} bytes of used_memory each, measured). Cache-aside per request (GET, "
        "on a miss SET) as one server-side script, in trace order. maxmemory is steered to hold the target "
        "share of the keys during the first half; *keys held* is the median DBSIZE over the second half, and "
        "OPT (Belady with bypass) is computed offline for exactly that many keys on the same trace. "
        f"maxmemory-samples {data['maxmemory_samples']} (the default). *Hot set*: the 1% most requested keys "
        "(the brief's frequently accessed data). *+admission*: a miss is stored only when the TinyLFU sketch "
        "(`mobius_cache._admission`) has seen its key at least twice recently.",
        "",
    ]
    table = []
    for r in rows:
        table.append(
            [
                f"{r['alpha']}",
                f"{r['capacity']:.0%}",
                r["policy"] + (" +admission" if r["admission"] else ""),
                f"{r['keys_held']:,} / {r['keys_target']:,}",
                f"{r['hit_ratio']:.3f}",
                f"{r['opt']:.3f}",
                f"**{r['vs_opt']:.2f}x**",
                f"{r['hot_hit_ratio']:.3f}",
                f"{r['hot_opt']:.3f}",
                f"{r['declined']:,}" if r["admission"] else "—",
            ]
        )
    lines += _table(
        [
            "alpha",
            "capacity",
            "policy",
            "keys held / target",
            "hit ratio",
            "OPT",
            "vs OPT",
            "hot-set hits",
            "hot-set OPT",
            "stores declined",
        ],
        table,
    )
    lines += ["![hit ratios](img/bench-hitratio.png)", ""]
    at5 = [r for r in rows if r["alpha"] == 1.0 and abs(r["capacity"] - 0.05) < 1e-9]
    if at5:
        best = max(at5, key=lambda r: r["vs_opt"])
        plain = max((r for r in at5 if not r["admission"]), key=lambda r: r["vs_opt"])
        goals.append(
            (
                "issue 8: >= 0.95x OPT at 5% capacity, alpha 1.0",
                f"best {best['vs_opt']:.2f}x ({best['policy']}{' +admission' if best['admission'] else ''}); "
                f"Redis alone {plain['vs_opt']:.2f}x ({plain['policy']})",
                best["vs_opt"] >= 0.95,
            )
        )
    hot = [r["hot_hit_ratio"] for r in rows if not r["admission"] and r["capacity"] >= 0.05]
    if hot:
        goals.append(
            (
                "brief: hit rate > 80% for frequently accessed data (hot set)",
                f"{min(hot):.3f} worst at >= 5% capacity",
                min(hot) > 0.8,
            )
        )
    _plot_hitratio(rows, img / "bench-hitratio.png")
    return lines


def _plot_hitratio(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib.pyplot as plt

    alphas = sorted({r["alpha"] for r in rows})
    fig, axes = plt.subplots(1, len(alphas), figsize=(4.2 * len(alphas), 3.8), squeeze=False)
    for ax, alpha in zip(axes[0], alphas, strict=True):
        sub = [r for r in rows if r["alpha"] == alpha]
        variants = list(dict.fromkeys((r["policy"], r["admission"]) for r in sub))
        for policy, adm in variants:
            pts = sorted(
                (r["capacity"], r["hit_ratio"]) for r in sub if (r["policy"], r["admission"]) == (policy, adm)
            )
            ax.plot(
                [p[0] * 100 for p in pts],
                [p[1] for p in pts],
                marker="o",
                label=policy + (" +adm" if adm else ""),
            )
        opt = sorted(
            {(r["capacity"], r["opt"]) for r in sub if not r["admission"] and r["policy"] == variants[0][0]}
        )
        ax.plot([p[0] * 100 for p in opt], [p[1] for p in opt], "k--", marker="s", label="Belady OPT")
        ax.set_title(f"Zipf alpha {alpha}")
        ax.set_xlabel("capacity, % of keys")
        ax.set_ylabel("hit ratio")
        ax.grid(alpha=0.3)
    max(axes[0], key=lambda a: len(a.get_lines())).legend(fontsize=7)  # the panel with every variant
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- load ---------------------------------------------------------------------------------------------------
def _load(results: dict[str, Any], img: Path, goals: list[tuple[str, str, bool | None]]) -> list[str]:
    d = results["load"]["data"]
    lines = _section_head(results, "load", "Load and overload (in-process Cache, default configuration)")
    s, f = d["sustained"], d["fixed_rate"]
    lines += ["### Sustained load", ""]
    lines += _table(
        ["run", "ops/s", "slowest second", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors", "outcomes"],
        [
            [
                f"{s['tasks']} tasks, closed loop, {s['seconds']} s",
                s["ops_per_s"],
                s["min_second_ops"],
                s["p50_ms"],
                s["p99_ms"],
                s["p999_ms"],
                s["max_ms"],
                s["errors"],
                str(s["outcomes"]),
            ],
            [
                f"open loop at {f['rate']}/s, {f['seconds']} s (latency from the scheduled start)",
                f["achieved_per_s"],
                "—",
                f["p50_ms"],
                f["p99_ms"],
                f["p999_ms"],
                f["max_ms"],
                f["errors"],
                str(f["outcomes"]),
            ],
        ],
    )
    goals.append(
        (
            "brief: 1000+ ops/s sustained",
            f"{s['ops_per_s']:,.0f} ops/s (slowest second {s['min_second_ops']:,.0f}); 1000/s open loop p99 {f['p99_ms']:.2f} ms",
            s["min_second_ops"] >= 1000 and s["errors"] == 0,
        )
    )
    goals.append(
        (
            "brief: operations < 5 ms",
            f"p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.2f} ms at 1000 req/s",
            f["p99_ms"] < 5,
        )
    )
    p = d["pool_exhaustion"]
    lines += [
        "### Pool exhaustion",
        "",
        f"A pool of {p['pool']} connections (autopipeline off, so each call needs one), Redis frozen with SIGSTOP, "
        f"{p['calls']} concurrent calls (half GET, half SET); pool_timeout {p['pool_timeout_s']} s, socket "
        f"timeout {p['socket_timeout_s']} s. Outcomes: {p['outcomes']}. Slowest call {p['max_call_s']:.2f} s; "
        f"every call had its answer after {p['all_answered_within_s']:.2f} s. After SIGCONT, the first write "
        f"succeeded {p['recovery_after_thaw_s']:.2f} s later (the circuit breaker's reset timeout).",
        "",
    ]
    goals.append(
        (
            "brief: pool exhaustion gives a bounded wait, then a clear error",
            f"slowest call {p['max_call_s']:.2f} s; {p['outcomes']}",
            p["max_call_s"] < p["socket_timeout_s"] + 0.5,
        )
    )
    k = d["redis_killed"]
    lines += [
        "### Redis killed during load",
        "",
        f"50 tasks of cache-aside traffic; Redis SIGKILLed at {k['killed_at_s']:.1f} s and restarted (empty) at "
        f"{k['restarted_at_s']:.1f} s. Outcomes the app saw: {k['outcomes']}; unexpected exceptions: "
        f"{k['unexpected']}. Slowest call while Redis was down: {k['max_latency_while_down_ms']:.1f} ms; slowest "
        f"call overall: {k['max_ms']:.0f} ms. First successful write {_fmt(k['first_write_after_restart_s'])} s "
        f"after the restart, first hit {_fmt(k['first_hit_after_restart_s'])} s after it (breaker reset timeout "
        f"{k['breaker_reset_timeout_s']} s). Slowest calls: {k.get('slowest', '—')}.",
        "",
        "![Redis killed](img/bench-redis-killed.png)",
        "",
    ]
    goals.append(
        (
            "issue 8: Redis killed: only misses and errors, never a hang",
            f"{k['unexpected']} unexpected; slowest call {k['max_ms']:.0f} ms",
            k["unexpected"] == 0 and k["max_ms"] < 5000,
        )
    )
    fw = k["first_write_after_restart_s"]
    goals.append(
        (
            "issue 8: recovery time after Redis returns (measured)",
            f"{_fmt(fw)} s to the first write (one breaker window is {k['breaker_reset_timeout_s']} s)",
            None if fw is None else fw <= k["breaker_reset_timeout_s"] * 1.5,
        )
    )
    o = d["overload"]
    lines += [
        "### Recovery after overload",
        "",
        f"{o['normal_tasks']} tasks, then {o['overload_tasks']} tasks, then {o['normal_tasks']} again "
        f"({o['phase_s']} s each, the last twice as long). Latency back within 2x of the first phase's p50 "
        f"{_fmt(o['recovery_s'])} s after the overload ended.",
        "",
    ]
    lines += _table(
        ["phase", "ops/s", "p50 ms", "p99 ms", "max ms", "errors"],
        [
            [n, ph["ops_per_s"], ph["p50_ms"], ph["p99_ms"], ph["max_ms"], ph["errors"]]
            for n, ph in o["phases"].items()
        ],
    )
    lines += ["![overload](img/bench-overload.png)", ""]
    goals.append(
        (
            "brief: recovery after overload",
            f"{_fmt(o['recovery_s'])} s; errors after: {o['phases']['after']['errors']}",
            o["recovery_s"] is not None and o["phases"]["after"]["errors"] == 0,
        )
    )
    _plot_timeline(k["timeline"], img / "bench-redis-killed.png", "Redis killed and restarted under load", k)
    _plot_timeline(o["timeline"], img / "bench-overload.png", "Overload and recovery", None)
    return lines


def _plot_timeline(
    buckets: list[dict[str, Any]], path: Path, title: str, marks: dict[str, Any] | None
) -> None:
    import matplotlib.pyplot as plt

    t = [b["t"] for b in buckets]
    outcomes = sorted({o for b in buckets for o in b["outcomes"]})
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
    ax.stackplot(
        t,
        [[b["outcomes"].get(o, 0) * 10 for b in buckets] for o in outcomes],
        labels=outcomes,
    )
    ax.set_ylabel("outcomes per second")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title)
    ax2.plot(t, [b["p50_ms"] if b["p50_ms"] is not None else float("nan") for b in buckets])
    ax2.set_ylabel("p50 latency, ms")
    ax2.set_yscale("log")
    ax2.set_xlabel("seconds")
    if marks:
        for a in (ax, ax2):
            a.axvline(marks["killed_at_s"], color="red", linestyle="--")
            a.axvline(marks["restarted_at_s"], color="green", linestyle="--")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- memory -------------------------------------------------------------------------------------------------
def _memory(results: dict[str, Any], goals: list[tuple[str, str, bool | None]]) -> list[str]:
    d = results["memory"]["data"]
    lines = _section_head(results, "memory", "Memory under 2x overfill")
    lines += [
        f"Twice maxmemory's worth of {d['value_bytes']:,} B values written ({d['policy']}), through Cache in this "
        "process and through a real mobius-sidecar over HTTP. `used_memory_peak` is Redis's own exact peak.",
        "",
    ]
    rows = []
    for name in ("in_process", "sidecar"):
        m = d.get(name)
        if not m:
            continue
        rows.append(
            [
                name.replace("_", " "),
                f"{m['written_bytes'] / 2**20:.1f} MiB",
                f"{m['maxmemory'] / 2**20:.1f} MiB",
                f"{m['max_used_memory_sampled'] / 2**20:.2f} MiB",
                f"{m['used_memory_peak'] / 2**20:.2f} MiB ({m['peak_over_maxmemory']:.3f}x)",
                m["evicted_keys"],
                f"{m['rss_before'] / 2**20:.1f} → {m['rss_max'] / 2**20:.1f} MiB",
            ]
        )
        goals.append(
            (
                f"issue 8: used_memory within maxmemory under 2x overfill ({name.replace('_', ' ')})",
                f"peak {m['peak_over_maxmemory']:.4f}x maxmemory",
                m["peak_over_maxmemory"] <= 1.01,
            )
        )
        growth = (m["rss_max"] - m["rss_before"]) / 2**20
        goals.append(
            (
                f"issue 8: RSS bounded ({name.replace('_', ' ')})",
                f"+{growth:.1f} MiB while writing {m['written_bytes'] / 2**20:.0f} MiB",
                growth < 0.25 * m["written_bytes"] / 2**20,
            )
        )
    lines += _table(
        [
            "through",
            "written",
            "maxmemory",
            "max used (sampled)",
            "used_memory_peak",
            "evicted",
            "process RSS",
        ],
        rows,
    )
    return lines


# --- sidecar -------------------------------------------------------------------------------------------------
_SERVER_NAMES = {
    "sidecar": "mobius-sidecar (near cache on, the default)",
    "sidecar_no_near": "mobius-sidecar, near cache off (every GET reads Redis)",
    "naive": "naive FastAPI + redis-py (baseline)",
    "constant": "raw ASGI constant (ceiling)",
}
_RATIO_NAMES = {
    "sidecar_vs_naive": "sidecar / naive FastAPI (req/s)",
    "sidecar_vs_ceiling": "sidecar / raw ASGI ceiling (req/s)",
    "sidecar_no_near_vs_ceiling": "sidecar without near cache / raw ASGI ceiling (req/s)",
}
_PATH_NAMES = {
    "in_process": "in-process `Cache.get` (near cache off)",
    "sidecar": "sidecar over HTTP (TCP)",
    "sidecar_uds": "sidecar over HTTP (Unix socket)",
    "constant_http": "raw ASGI constant over HTTP (HTTP alone)",
}
SUSTAINED_P99_GOAL_MS = 2.0
HIT_P99_GOAL_MS = 2.0
CEILING_GOAL = 0.8
ADDED_P90_GOAL_MS = 0.25


def _sidecar(results: dict[str, Any], goals: list[tuple[str, str, bool | None]]) -> list[str]:
    d = results["sidecar"]["data"]
    lines = _section_head(results, "sidecar", "Sidecar over HTTP")
    lines += [
        "Every server is one uvicorn worker (uvloop + httptools) in its own process, against the same local "
        f"redis-server; GET of a 100 B hit. Load average {d.get('loadavg_start')} at the start, "
        f"{d.get('loadavg_end')} at the end.",
        "",
    ]
    closed = d.get("closed_loop", {})
    if closed:
        lines += [
            f"**Closed loop**: {d.get('connections', '?')} keep-alive connections, one request in flight on each, "
            f"{closed.get('rounds')} alternating rounds of {closed.get('seconds')} s (median, min-max over rounds).",
            "",
        ]
        lines += _table(
            ["server", "req/s", "p50 ms", "p99 ms", "errors"],
            [
                [_SERVER_NAMES.get(n, n), _mr(s["rps"], 0), _mr(s["p50_ms"]), _mr(s["p99_ms"]), s["errors"]]
                for n, s in closed["servers"].items()
            ],
        )
    if d.get("ratios"):
        lines += _table(
            ["ratio (same round)", "median (min-max)"],
            [[_RATIO_NAMES.get(k, k), _mr(v)] for k, v in d["ratios"].items()],
        )
        near = closed.get("servers", {}).get("sidecar", {}) if closed else {}
        if "sidecar_no_near_vs_ceiling" in d["ratios"] and near:
            ratio, p99 = d["ratios"]["sidecar_vs_ceiling"], near["p99_ms"]
            goals.append(
                (
                    f"issue 14: sidecar GET hit at {d.get('connections', 16)} connections >= {CEILING_GOAL}x "
                    f"the raw ASGI ceiling, p99 <= {HIT_P99_GOAL_MS:g} ms",
                    f"{_mr(ratio)}x; p99 {_mr(p99)} ms (median, min-max over rounds)",
                    ratio["median"] >= CEILING_GOAL and p99["median"] <= HIT_P99_GOAL_MS,
                )
            )
    fr = d.get("fixed_rate")
    if fr:
        lines += [
            f"**Fixed {fr['rate']} req/s** for {fr['seconds']} s (open loop, 4 connections): the sidecar adds "
            f"**{fr['added_p90_ms']} ms** at p90 over calling `Cache.get` in-process"
            + (
                f" over TCP, **{fr['added_p90_ms_uds']} ms** over its Unix socket"
                if "added_p90_ms_uds" in fr
                else ""
            )
            + " (a near hit in the sidecar against a Redis round trip in-process).",
            "",
        ]
        if "added_p90_ms_uds" in fr:
            goals.append(
                (
                    f"issue 14: added latency at {fr['rate']} req/s over in-process `Cache.get` without near "
                    f"cache <= {ADDED_P90_GOAL_MS} ms at p90 (TCP), lower over the Unix socket",
                    f"TCP {fr['added_p90_ms']:+.3f} ms, Unix socket {fr['added_p90_ms_uds']:+.3f} ms",
                    fr["added_p90_ms"] <= ADDED_P90_GOAL_MS and fr["added_p90_ms_uds"] < fr["added_p90_ms"],
                )
            )
        lines += _table(
            ["path", "p50 ms", "p90 ms", "p99 ms"],
            [
                [_PATH_NAMES.get(k, k), v["p50_ms"], v["p90_ms"], v["p99_ms"]]
                for k, v in fr.items()
                if isinstance(v, dict)
            ],
        )
    if d.get("gc"):
        lines += ["Cyclic GC tuning (gc.freeze + raised gen-0 threshold) on and off, closed loop:", ""]
        lines += _table(
            ["gc", "req/s", "p99 ms"], [[k, _mr(v["rps"], 0), _mr(v["p99_ms"])] for k, v in d["gc"].items()]
        )
    capacity = closed.get("servers", {}).get("sidecar", {}).get("rps", {}).get("median") if closed else None
    ceiling = d.get("sustained_ceiling")
    lines += _sustained(d.get("sustained"), goals, capacity, ceiling=ceiling)
    if "sustained_zipf" in d:
        lines += _sustained(
            d["sustained_zipf"],
            goals,
            capacity,
            ceiling=ceiling,
            goal="issue 14: sustained 5000 req/s for 60 s, Zipf(1.0) key mix, p99 <= 2 ms, zero errors",
            title="Sustained, Zipf(1.0) key mix (issue 14)",
        )
    known = {
        "closed_loop",
        "ratios",
        "fixed_rate",
        "gc",
        "sustained",
        "sustained_zipf",
        "sustained_ceiling",
        "loadavg_start",
        "loadavg_end",
        "connections",
    }
    extra = {k: v for k, v in d.items() if k not in known}
    if extra:
        lines += ["Other results:", "", "```", *(f"{k}: {v}" for k, v in extra.items()), "```", ""]
    return lines


def _sustained(
    su: dict[str, Any] | None,
    goals: list[tuple[str, str, bool | None]],
    capacity: float | None,
    goal: str = f"issue 8: sidecar sustained 60 s at 5000 req/s, p99 <= {SUSTAINED_P99_GOAL_MS:g} ms, zero errors",
    title: str = "Sustained (issue 8)",
    ceiling: dict[str, Any] | None = None,
) -> list[str]:
    """A sustained run: a fixed offered rate from the open-loop generator, and its verdict."""
    if not su:
        goals.append((goal, "not measured", None))
        return []
    rate, seconds = su["offered_rate"], su["seconds"]
    kept_up = su["achieved_rate"] >= 0.99 * rate
    measured = (
        f"{seconds:g} s at {rate}/s offered: achieved {su['achieved_rate']:,.0f}/s, p99 {su['p99_ms']} ms, "
        f"p99.9 {su['p999_ms']} ms, {su['errors']} errors"
    )
    full_length = seconds >= 60
    ok = su["p99_ms"] <= SUSTAINED_P99_GOAL_MS and su["errors"] == 0 and kept_up
    if su.get("near_hit_ratio") is not None and su.get("keys", 1) > 1:
        measured += f"; near cache hit ratio {su['near_hit_ratio']:.3f} over {su['keys']:,} keys"
    if ceiling:
        measured += (
            f" (the raw ASGI constant under the same load: p99 {ceiling['p99_ms']} ms, p99.9 "
            f"{ceiling['p999_ms']} ms)"
        )
    if not full_length:
        measured += " (quick mode: shorter than the goal's 60 s)"
    goals.append((goal, measured, ok if full_length or not ok else None))
    per_second = su.get("per_second", [])[: int(seconds)]
    keys = su.get("keys", 1)
    lines = [
        f"**{title}**: {rate} req/s offered for {seconds:g} s over {su['connections']} pipelined "
        "keep-alive connections by the open-loop generator (`benchmarks/openloop.py`, its own process): each "
        "request leaves at its scheduled time whether or not earlier ones have returned, and its latency counts "
        "from that time, so a stall shows in the percentiles instead of lowering the load (no coordinated "
        f"omission). Load average {su.get('loadavg_start')} before, {su.get('loadavg_end')} after."
        + (
            f" Keys: {keys:,} (100 B values), drawn with Zipf(1.0) popularity, after an unmeasured warm-up of "
            f"the same traffic (another random sequence); the near cache answered {su['near_hit_ratio']:.1%} of "
            "the measured GETs, the rest were read from Redis."
            if keys > 1 and su.get("near_hit_ratio") is not None
            else ""
        ),
        "",
    ]
    rows = [("sidecar", su)] + ([("raw ASGI constant (ceiling)", ceiling)] if ceiling else [])
    lines += _table(
        [
            "server",
            "offered req/s",
            "achieved req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors",
            "completions per second (min-max)",
            "generator's worst send lag ms",
        ],
        [
            [
                name,
                f"{rate:,}",
                f"{r['achieved_rate']:,.0f}",
                r["p50_ms"],
                r["p90_ms"],
                r["p99_ms"],
                r["p999_ms"],
                r["max_ms"],
                f"{r['errors']} (statuses {r.get('statuses')})",
                _span(r.get("per_second", [])[: int(seconds)]),
                r.get("max_send_lag_ms"),
            ]
            for name, r in rows
        ],
    )
    slow = [i for i, n in enumerate(per_second) if n < 0.95 * rate]
    if capacity:
        lines += [
            f"The offered rate is {rate / capacity:.0%} of the sidecar's closed-loop median throughput in the same "
            "run (one worker; the generator and Redis share the same cores)"
            + (
                f"; completions fell below 95% of the offered rate in {len(slow)} of {len(per_second)} seconds "
                f"(from second {slow[0]} to {slow[-1]}), and the queue built there is what the upper "
                "percentiles show."
                if slow
                else "."
            ),
            "",
        ]
    return lines


# --- failover ------------------------------------------------------------------------------------------------
def _failover(results: dict[str, Any], goals: list[tuple[str, str, bool | None]]) -> list[str]:
    d = results["failover"]["data"]
    st, rows = d["settings"], d["rows"]
    lines = _section_head(results, "failover", "Sentinel failover: the master SIGKILLed under load")
    lines += [
        f"One master, {st['replicas']} replicas and {st['sentinels']} Sentinels (quorum {st['quorum']}, "
        f"`down-after-milliseconds {st['down_after_ms']}`, `failover-timeout {st['failover_timeout_ms']}`, "
        f"`parallel-syncs {st['parallel_syncs']}`) on loopback; the cache with its defaults (breaker reset "
        f"{st['breaker_reset_timeout_s']} s, {st['retry_attempts']} retries). A writer (every ~10 ms), two readers "
        "(~5 ms) and an invalidator (~25 ms) run through the library in-process, or through a sidecar process "
        "over HTTP; the master is SIGKILLed after 1 s. **Write gap**: from the SIGKILL to the first write that "
        "succeeds again. Afterwards, on the new master: every invalidated key must be gone (queued ones are "
        "replayed there) and every write acknowledged after the kill must be there. "
        f"Load average {_mr(d['loadavg'])}.",
        "",
    ]
    lines += _table(
        [
            "path",
            "trial",
            "promoted after s",
            "write gap s",
            "slowest op ms",
            "reads (hit/miss/bypass/failed-open)",
            "read errors",
            "writes ok / failed fast",
            "invalidations ok / queued",
            "lost invalidations",
            "lost writes",
            "ops > 2 s",
        ],
        [
            [
                r["path"],
                r["trial"],
                _fmt(r["promoted_after_s"]),
                _fmt(r["write_gap_s"]),
                _fmt(r["max_op_ms"], 1),
                "/".join(str(r["reads"].get(k, 0)) for k in ("hit", "miss", "bypass", "error")),
                r["read_failures"],
                f"{r['writes'].get('ok', 0)} / {r['writes'].get('unavailable', 0)}",
                f"{r['invalidations'].get('ok', 0)} / {r['invalidations'].get('queued', 0)}",
                r["lost_invalidations"],
                r["lost_writes"],
                r["hangs_over_2s"],
            ]
            for r in rows
        ],
    )
    clean = all(
        r["read_failures"] == 0
        and r["hangs_over_2s"] == 0
        and r["lost_invalidations"] == 0
        and r["lost_writes"] == 0
        for r in rows
    )
    gaps = [r["write_gap_s"] for r in rows]
    worst = None if None in gaps else max(gaps)
    shown = ", ".join(f"{path} {_mr(g)} s" for path, g in d["write_gap_s"].items())
    goals.append(
        (
            "issue 15: Sentinel failover write gap <= 10 s; reads only miss, nothing hangs, nothing lost",
            f"write gap {shown} (median, min-max); read errors, ops > 2 s, lost invalidations and writes: "
            f"{'none' if clean else 'see the section'}",
            None if worst is None else (worst <= 10.0 and clean),
        )
    )
    lines += [
        "The gap is the Sentinels' (subjectively down after 1 s, then an election and the promotion) plus the "
        "cache noticing: it hears `+switch-master` from every Sentinel (or asks them on its next connection), "
        "reopens its connections there and probes at once instead of waiting out the breaker's window.",
        "",
    ]
    return lines


def _span(per_second: list[int]) -> str:
    return f"{min(per_second):,}-{max(per_second):,}" if per_second else "—"


def _findings(results: dict[str, Any]) -> list[str]:
    """What the numbers say beyond pass/fail, written only when the data shows it."""
    out: list[str] = []
    if "hitratio" in results:
        rows = results["hitratio"]["data"]["rows"]
        for policy in ("allkeys-lru", "allkeys-lfu"):
            pairs = [
                (a, b)
                for a in rows
                for b in rows
                if a["policy"] == b["policy"] == policy
                and not a["admission"]
                and b["admission"]
                and (a["alpha"], a["capacity"]) == (b["alpha"], b["capacity"])
            ]
            if pairs:
                gains = [b["hit_ratio"] - a["hit_ratio"] for a, b in pairs]
                out.append(
                    f"- Admission (TinyLFU sketch, threshold 2) under {policy}: hit ratio "
                    f"{min(gains):+.3f} to {max(gains):+.3f} across capacities at alpha 1.0."
                )
        out.append(
            "- Redis's LRU clock ticks once a second, and a trace replayed in seconds gives every key almost the "
            "same idle time: allkeys-lru then evicts close to at random among its samples, which is why it "
            "trails allkeys-lfu here (and why its hot-set hit rate can stay under 80%)."
        )
    sidecar = results.get("sidecar", {}).get("data", {})
    ceiling, near = sidecar.get("sustained_ceiling"), sidecar.get("sustained")
    if ceiling and near and ceiling["p99_ms"] > SUSTAINED_P99_GOAL_MS:
        out.append(
            f"- At a sustained {ceiling['offered_rate']} req/s even the raw ASGI constant (one uvicorn worker that "
            f"answers without doing anything) has a p99 of {ceiling['p99_ms']} ms on this machine, above the "
            f"{SUSTAINED_P99_GOAL_MS:g} ms goal; the sidecar's is {near['p99_ms']} ms. On this machine the "
            "sustained p99 goals are out of reach of the HTTP server itself (it, the open-loop generator and "
            "Redis share two cores); the sidecar's own share is the difference between the two."
        )
    if "load" in results:
        k = results["load"]["data"]["redis_killed"]
        fw = k.get("first_write_after_restart_s")
        if fw is not None and fw > 1.5 * k["breaker_reset_timeout_s"]:
            out.append(
                f"- Writes came back {fw:.1f} s after Redis did, more than one breaker window "
                f"({k['breaker_reset_timeout_s']} s): idle pooled connections that predate the restart are "
                "stale, and each half-open probe that draws one fails and re-opens the circuit for another "
                "window (without load, with 10 idle connections, the first write took ~16 s in a manual repro)."
            )
    return ["## Findings", "", *out, ""] if out else []


def write(results: dict[str, Any], docs: Path) -> list[Path]:
    img = docs / "img"
    img.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    goals: list[tuple[str, str, bool | None]] = []
    body: list[str] = []
    if "clients" in results:
        body += _clients(results, img, goals)
    if "sidecar" in results:
        body += _sidecar(results, goals)
    if "load" in results:
        body += _load(results, img, goals)
    if "hitratio" in results:
        body += _hitratio(results, img, goals)
    if "memory" in results:
        body += _memory(results, goals)
    if "failover" in results:
        body += _failover(results, goals)
    if "near" in results:
        from .report_near import near_section

        body += near_section(results, img, goals)
    m, v = results.get("machine", {}), results.get("versions", {})
    head = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks`; `make bench-quick` for the < 2 minute version) from "
        "docs/benchmarks.json. Everything runs on this one machine against real redis-server processes on "
        "loopback. The machine may be shared: absolute numbers move with its load, so compare ratios measured "
        "in the same run, and read each section's load average.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m.get('cpu')} x {m.get('cores')} cores, {m.get('memory_gib')} GiB; {m.get('os')}",
        f"- load average (1, 5, 15 min) when the last run started: {m.get('loadavg_at_start')}",
        "- " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "- event loop: uvloop (as uvicorn uses); benchmarks silence the library's slow-operation log lines",
        "",
        "## Goals",
        "",
    ]
    head += _table(["goal", "measured", "verdict"], [[g, m_, _verdict(ok)] for g, m_, ok in goals])
    md = docs / "benchmarks.md"
    md.write_text("\n".join(head + _findings(results) + body).rstrip() + "\n")
    return [md, *sorted(img.glob("bench-*.png"))]
