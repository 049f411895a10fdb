"""Sentinel failover: the master SIGKILLed under a steady read/write/invalidate load, through the library and
through a sidecar process; how long writes fail (the write gap), and what reads, writes and invalidations saw.

A group is one master, two replicas and three Sentinels (quorum 2, down-after-milliseconds 1000,
failover-timeout 5000) on loopback; the cache runs with its default settings (circuit breaker reset 2 s,
2 retries, 5 s socket timeouts). The load and its checks are tests/failover.py's, the same the failover tests
assert on; here each path runs several times and the numbers are reported.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from mobius_cache import Cache, CacheConfig
from tests.failover import FailoverRun, library_ops, run_failover, sidecar_ops
from tests.servers import DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, SentinelGroup
from tests.sidecar.procs import SidecarProcess

from .common import Progress, loadavg, summarize

__all__ = ["run"]


async def _library(group: SentinelGroup) -> FailoverRun:
    config = CacheConfig(redis_url=group.url(), cache_prefix=f"fo{uuid.uuid4().hex[:6]}:")
    async with Cache(config, registry=CollectorRegistry()) as cache:
        return await run_failover(group, library_ops(cache))


async def _sidecar(group: SentinelGroup) -> FailoverRun:
    proc = await asyncio.to_thread(SidecarProcess(group.url(), args=["--log-level", "warning"]).start)
    try:
        async with httpx.AsyncClient(base_url=proc.url, timeout=10.0) as client:
            return await run_failover(group, sidecar_ops(client))
    finally:
        await asyncio.to_thread(proc.close)


async def run(quick: bool, progress: Progress) -> dict[str, Any]:
    trials = 1 if quick else 3
    rows: list[dict[str, Any]] = []
    loads: list[float] = []
    for trial in range(trials):
        for path, drive in (("library", _library), ("sidecar", _sidecar)):
            group = await asyncio.to_thread(SentinelGroup().start)
            try:
                loads.append(loadavg())
                run_ = await drive(group)
            finally:
                await asyncio.to_thread(group.close)
            row = {"path": path, "trial": trial + 1, **run_.summary()}
            rows.append(row)
            progress(
                f"failover: {path} #{trial + 1}: write gap {row['write_gap_s']} s, promoted after "
                f"{row['promoted_after_s']} s, slowest operation {row['max_op_ms']} ms"
            )
    gaps = {
        path: summarize(
            [r["write_gap_s"] for r in rows if r["path"] == path and r["write_gap_s"] is not None]
        )
        for path in ("library", "sidecar")
        if any(r["path"] == path and r["write_gap_s"] is not None for r in rows)
    }
    return {
        "settings": {
            "sentinels": 3,
            "quorum": 2,
            "replicas": 2,
            "down_after_ms": DOWN_AFTER_MS,
            "failover_timeout_ms": FAILOVER_TIMEOUT_MS,
            "parallel_syncs": 1,
            "breaker_reset_timeout_s": CacheConfig().breaker_reset_timeout,
            "retry_attempts": CacheConfig().retry_attempts,
        },
        "rows": rows,
        "write_gap_s": gaps,
        "loadavg": summarize(loads),
    }
