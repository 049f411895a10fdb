"""Memory under 2x overfill: Redis stays within maxmemory (by evicting), and neither the in-process library
nor the sidecar process grows with the data that flows through it.

Twice maxmemory's worth of 10 KB values is written, first through ``Cache`` in this process, then through a
real ``mobius-sidecar`` process over HTTP. used_memory is sampled while writing and Redis's own
``used_memory_peak`` (exact, between samples too) is reported; RSS comes from /proc.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aredis
from prometheus_client import CollectorRegistry

from mobius_cache import Cache, CacheConfig, parse_memory
from tests.servers import free_port

from .common import Progress, redis_server, rss_bytes

__all__ = ["run"]

VALUE = b"m" * 10_240


class _Sampler:
    """Samples Redis used_memory and a process's RSS every 50 ms while the writers run."""

    def __init__(self, url: str, pid: int | None) -> None:
        self.url, self.pid = url, pid
        self.used: list[int] = []
        self.rss: list[int] = []
        self._stop = asyncio.Event()

    async def __aenter__(self) -> _Sampler:
        self._task = asyncio.ensure_future(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await self._task

    async def _loop(self) -> None:
        r = aredis.Redis.from_url(self.url)
        try:
            while not self._stop.is_set():
                self.used.append(int((await r.info("memory"))["used_memory"]))
                self.rss.append(rss_bytes(self.pid))
                await asyncio.sleep(0.05)
            self.info = await r.info()
        finally:
            await r.aclose()


def _summary(sampler: _Sampler, maxmemory: int, written: int, rss_before: int) -> dict[str, Any]:
    info = sampler.info
    return {
        "written_bytes": written,
        "maxmemory": maxmemory,
        "max_used_memory_sampled": max(sampler.used),
        "used_memory_peak": int(info["used_memory_peak"]),
        "peak_over_maxmemory": int(info["used_memory_peak"]) / maxmemory,
        "evicted_keys": int(info["evicted_keys"]),
        "keys_at_end": int(info.get("db0", {}).get("keys", 0)),
        "rss_before": rss_before,
        "rss_max": max(sampler.rss),
        "rss_after": sampler.rss[-1],
    }


async def _in_process(url: str, maxmemory: int) -> dict[str, Any]:
    n = 2 * maxmemory // len(VALUE)
    async with Cache(CacheConfig(redis_url=url), registry=CollectorRegistry()) as cache:
        rss_before = rss_bytes()
        async with _Sampler(url, None) as sampler:
            for start in range(0, n, 50):
                await asyncio.gather(*(cache.set(f"other:{i}", VALUE) for i in range(start, start + 50)))
    return _summary(sampler, maxmemory, n * len(VALUE), rss_before)


async def _sidecar(url: str, maxmemory: int, progress: Progress) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "MOBIUS_REDIS_URL": url, "MOBIUS_SIDECAR_PORT": str(port)}
    env.pop("MOBIUS_SIDECAR_TOKEN", None)
    exe = Path(sys.executable).with_name("mobius-sidecar")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mobius_cache.server"]
    proc = subprocess.Popen(
        [*cmd, "--log-level", "error"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the sidecar did not start (see its output above)")
                await asyncio.sleep(0.05)
            n = 2 * maxmemory // len(VALUE)
            rss_before = rss_bytes(proc.pid)
            statuses: dict[int, int] = {}
            async with _Sampler(url, proc.pid) as sampler:
                for start in range(0, n, 16):
                    replies = await asyncio.gather(
                        *(
                            http.put(
                                f"/v1/cache/other:s{i}",
                                content=VALUE,
                                headers={"content-type": "application/octet-stream"},
                            )
                            for i in range(start, start + 16)
                        )
                    )
                    for reply in replies:
                        statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
            progress(f"memory: sidecar answered {statuses}")
        out = _summary(sampler, maxmemory, n * len(VALUE), rss_before)
        out["http_statuses"] = statuses
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def run(quick: bool, progress: Progress) -> dict[str, Any]:
    maxmemory_text = "8mb" if quick else "64mb"
    maxmemory = parse_memory(maxmemory_text)
    out: dict[str, Any] = {"policy": "allkeys-lru", "value_bytes": len(VALUE)}
    with redis_server(maxmemory=maxmemory_text, policy="allkeys-lru") as server:
        progress(f"memory: 2x overfill of {maxmemory_text} through Cache (in process)")
        out["in_process"] = await _in_process(server.url, maxmemory)
    with redis_server(maxmemory=maxmemory_text, policy="allkeys-lru") as server:
        progress(f"memory: 2x overfill of {maxmemory_text} through the sidecar (HTTP)")
        out["sidecar"] = await _sidecar(server.url, maxmemory, progress)
    return out
