"""The near cache's part of docs/benchmarks.md (issue 14), rendered from the ``near`` section's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import _fmt, _mr, _section_head, _table

__all__ = ["near_section"]

LIBRARY_GOAL = 20.0
STALE_P99_GOAL_MS = 2.0
STALE_MAX_GOAL_MS = 50.0
STALE_WRITES_GOAL = 1000

Goals = list[tuple[str, str, bool | None]]


def near_section(results: dict[str, Any], img: Path, goals: Goals) -> list[str]:
    d = results["near"]["data"]
    lines = _section_head(results, "near", "Near cache (issue 14)")
    lines += [
        "Hot values kept in the process (the library, and so the sidecar), coherent through Redis client "
        f"tracking. Load average {d.get('loadavg_start')} at the start, {d.get('loadavg_end')} at the end.",
        "",
    ]
    lines += _policy(d["policy"], d.get("library"), img, goals)
    if "library" in d:
        lines += _library(d["library"], goals)
    if "tracking" in d:
        lines += _tracking(d["tracking"])
    if "staleness" in d:
        lines += _staleness(d["staleness"], goals)
    if "memory" in d:
        lines += _memory(d["memory"], goals)
    return lines


def _policy(p: dict[str, Any], library: dict[str, Any] | None, img: Path, goals: Goals) -> list[str]:
    # A near miss costs what a read without the near cache costs: its mean time per call, measured below.
    redis_us = 1e6 / library["ops"]["Cache.get (near off)"]["median"] if library else None
    lines = [
        "### Eviction policy: LRU vs W-TinyLFU",
        "",
        f"The Zipf traces of the hit-ratio section ({p['keys']:,} keys, {p['requests']:,} requests, "
        f"{p['value_bytes']:,} B values) replayed through the near cache's own code with two policies: plain "
        "LRU, and the W-TinyLFU admission the library keeps (1% window LRU, segmented main LRU, a frequency "
        "sketch deciding which of the window's oldest and the main's oldest stays). Capacity in keys as a "
        "share of the key space; OPT is Belady's optimum for the same capacity. µs/request is the replay's "
        "wall time per request (hits and fills); µs/hit times each hit alone."
        + (
            f" *Cost/request* weighs a miss with a read from Redis as measured below (`Cache.get` with the near "
            f"cache off, {redis_us:.0f} µs a call): µs/request + (1 - hit ratio) * {redis_us:.0f} µs."
            if redis_us
            else ""
        ),
        "",
    ]
    rows = []
    for r in p["rows"]:
        cost = r["us_per_request"] + (1 - r["hit_ratio"]) * redis_us if redis_us else None
        rows.append(
            [
                r["alpha"],
                f"{r['capacity']:.0%}",
                r["policy"],
                f"{r['hit_ratio']:.3f}",
                f"{r['opt']:.3f}",
                f"{r['hit_ratio'] / r['opt']:.2f}x",
                f"{r['us_per_request']:.2f}",
                f"{r['us_per_hit']:.2f}",
                f"{cost:.1f}" if cost is not None else "—",
            ]
        )
    lines += _table(
        [
            "alpha",
            "capacity",
            "policy",
            "hit ratio",
            "OPT",
            "vs OPT",
            "µs/request",
            "µs/hit",
            "cost/request µs",
        ],
        rows,
    )
    pairs = {}
    for r in p["rows"]:
        pairs.setdefault((r["alpha"], r["capacity"]), {})[r["policy"]] = r
    gains = [v["W-TinyLFU"]["hit_ratio"] - v["LRU"]["hit_ratio"] for v in pairs.values() if len(v) == 2]
    if gains:
        wins = sum(1 for g in gains if g > 0)
        goals.append(
            (
                "issue 14: eviction policy measured on the Zipf traces, the better one kept",
                f"W-TinyLFU over LRU: hit ratio {min(gains):+.3f} to {max(gains):+.3f} "
                f"({wins}/{len(gains)} configurations better); W-TinyLFU kept",
                wins == len(gains),
            )
        )
    _plot(p, img / "bench-near-policy.png")
    lines += ["![near cache policies](img/bench-near-policy.png)", ""]
    return lines


def _plot(p: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    alphas = sorted({r["alpha"] for r in p["rows"]})
    fig, axes = plt.subplots(1, len(alphas), figsize=(4 * len(alphas), 3.5), squeeze=False)
    for ax, alpha in zip(axes[0], alphas, strict=True):
        sub = [r for r in p["rows"] if r["alpha"] == alpha]
        caps = sorted({r["capacity"] for r in sub})
        for policy in ("LRU", "W-TinyLFU"):
            ys = [
                next(r["hit_ratio"] for r in sub if r["capacity"] == c and r["policy"] == policy)
                for c in caps
            ]
            ax.plot([c * 100 for c in caps], ys, marker="o", label=policy)
        opt = [next(r["opt"] for r in sub if r["capacity"] == c) for c in caps]
        ax.plot([c * 100 for c in caps], opt, linestyle="--", color="grey", label="OPT")
        ax.set_title(f"Zipf alpha {alpha}")
        ax.set_xlabel("capacity, % of keys")
        ax.set_ylabel("hit ratio")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _library(lib: dict[str, Any], goals: Goals) -> list[str]:
    lines = [
        "### Library: near hits vs raw redis-py",
        "",
        f"Sequential calls on one 100 B key, {lib['rounds']} alternating rounds of {lib['seconds']} s, one "
        "process and event loop, one Redis (median, min-max over rounds).",
        "",
    ]
    lines += _table(
        ["call", "calls/s", "p50 µs"],
        [[name, _mr(lib["ops"][name], 0), _mr(lib["p50_us"][name], 2)] for name in lib["ops"]],
    )
    ratio = lib["near_vs_redis_py"]
    lines += [
        f"Near hits: **{_mr(ratio, 1)}x** raw redis-py's sequential GETs, {_mr(lib['near_vs_cache_without_near'], 1)}x "
        "`Cache.get` without the near cache.",
        "",
    ]
    goals.append(
        (
            f"issue 14: library near hits >= {LIBRARY_GOAL:g}x raw redis-py sequential GETs",
            f"{_mr(ratio, 1)}x",
            ratio["median"] >= LIBRARY_GOAL,
        )
    )
    return lines


def _tracking(t: dict[str, Any]) -> list[str]:
    lines = [
        "### Tracking mode: broadcast vs default",
        "",
        f"{t['instances']} RESP3 connections stand for {t['instances']} instances, over {t['keys']:,} keys under "
        f"one prefix. *bcast*: `CLIENT TRACKING ON BCAST PREFIX mobius:` (what the library does). *default*: "
        f"`CLIENT TRACKING ON`, each connection having read its own {t['hot_keys_per_instance']:,} keys (1%), "
        "which is all that default mode then reports. One writer pipelines SETs of random keys for "
        f"{t['seconds']} s. Redis CPU per write is Redis's own `used_cpu_user + used_cpu_sys`; the writer and "
        "the tracking connections share this benchmark's process, so writes/s also carries their cost. µs per "
        "received key: applying it to a NearCache, as the library does.",
        "",
    ]
    lines += _table(
        [
            "mode",
            "writes/s",
            "Redis CPU µs/write",
            "keys told to each instance /s",
            "messages /s",
            "µs per received key",
            "Redis memory for tracking",
        ],
        [
            [
                r["mode"],
                f"{r['writes_per_s']:,.0f}",
                f"{r['redis_cpu_us_per_write']:.2f}",
                f"{r['keys_received_per_instance_per_s']:,.0f}",
                f"{r['messages_per_instance_per_s']:,.0f}",
                _fmt(r["us_per_received_key"]),
                f"{r['redis_tracking_memory_bytes']:,} B ({r['tracking_total_keys']:,} keys tracked)",
            ]
            for r in t["rows"]
        ],
    )
    lines += [
        "Broadcast was chosen: it needs one connection per instance and nothing from the pooled ones (default "
        "mode would track every pooled connection with `REDIRECT` to the invalidation connection, and have to "
        "re-point all of them whenever that one reconnects), keeps no per-key state in Redis, and delivers "
        "invalidations in batches. Its price is in the table: every instance is told about every write under "
        "the prefix, cached or not, and Redis spends more CPU per write (per instance); see docs/library.md "
        "for when that would tip the balance.",
        "",
    ]
    return lines


def _staleness(s: dict[str, Any], goals: Goals) -> list[str]:
    lines = [
        "### Staleness across two sidecars",
        "",
        f"Two sidecars on one Redis. Before each of {s['writes']:,} writes the reader holds the current value in "
        f"its near cache (it answered `X-Cache: hit-near`: {s['primed']:,} of {s['writes']:,} times); the "
        "writer PUTs a new value to the other sidecar, and from the moment the PUT returns the reader is "
        "polled until it answers the new value. The time includes that last GET's own round trip. "
        f"The first GET after the PUT was already fresh {s['first_read_fresh']:,} times of {s['writes']:,}. "
        f"Load average {s.get('loadavg')}.",
        "",
    ]
    lines += _table(
        ["p50 ms", "p90 ms", "p99 ms", "max ms", "mean GETs until fresh"],
        [
            [
                f"{s['p50_ms']:.3f}",
                f"{s['p90_ms']:.3f}",
                f"{s['p99_ms']:.3f}",
                f"{s['max_ms']:.2f}",
                f"{s['mean_polls']:.2f}",
            ]
        ],
    )
    ok = s["p99_ms"] <= STALE_P99_GOAL_MS and s["max_ms"] <= STALE_MAX_GOAL_MS
    enough = s["writes"] >= STALE_WRITES_GOAL
    goals.append(
        (
            f"issue 14: staleness between two sidecars p99 <= {STALE_P99_GOAL_MS:g} ms, never over "
            f"{STALE_MAX_GOAL_MS:g} ms (>= {STALE_WRITES_GOAL:,} writes)",
            f"p50 {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms, max {s['max_ms']:.2f} ms over {s['writes']:,} writes"
            + ("" if enough else " (quick mode: fewer writes than the goal asks)"),
            ok if enough or not ok else None,
        )
    )
    return lines


def _memory(m: dict[str, Any], goals: Goals) -> list[str]:
    lines = [
        "### Memory bound",
        "",
        f"One `Cache` with `near_cache_max_bytes` = {m['limit_bytes']:,} B reads {m['reads']:,} times from "
        f"{m['keys']:,} keys of 1,000 B ({m['working_set_bytes'] / m['limit_bytes']:.0f}x the limit in payload "
        "alone) with Zipf(1.0) popularity; the near cache's accounted bytes are checked after every read.",
        "",
    ]
    lines += _table(
        ["limit", "peak accounted", "peak / limit", "entries at the end", "evictions", "near hit ratio"],
        [
            [
                f"{m['limit_bytes']:,} B",
                f"{m['peak_bytes']:,} B",
                f"{m['peak_over_limit']:.4f}",
                m["entries"],
                m["evictions"],
                f"{m['hit_ratio']:.3f}",
            ]
        ],
    )
    acc = m.get("accounting")
    if acc:
        lines += [
            f"Is the accounting honest? A near cache filled to its limit under tracemalloc, entry overhead "
            f"charged at {acc['slot_overhead']} B a slot:",
            "",
        ]
        lines += _table(
            ["value size", "entries", "accounted", "real (tracemalloc)", "real / accounted"],
            [
                [
                    f"{r['value_bytes']:,} B",
                    r["entries"],
                    f"{r['accounted_bytes']:,} B",
                    f"{r['real_bytes']:,} B",
                    f"{r['real_over_accounted']:.3f}",
                ]
                for r in acc["rows"]
            ],
        )
    goals.append(
        (
            "issue 14: near cache bytes never above the limit under a 10x working set",
            f"peak {m['peak_over_limit']:.4f}x the limit"
            + (
                f"; real/accounted {min(r['real_over_accounted'] for r in acc['rows']):.2f}-"
                f"{max(r['real_over_accounted'] for r in acc['rows']):.2f}"
                if acc
                else ""
            ),
            m["peak_over_limit"] <= 1.0,
        )
    )
    return lines
