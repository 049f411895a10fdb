"""What every benchmark shares: progress on stderr, summary statistics, the machine, throwaway Redis servers."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import Any

from tests.servers import RedisServer

__all__ = [
    "Progress",
    "loadavg",
    "machine_info",
    "percentile",
    "redis_server",
    "redis_version",
    "rss_bytes",
    "summarize",
    "versions",
]


class Progress:
    """One line per step on stderr, with the time since the run started, so a long run shows where it is."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {message}", file=sys.stderr, flush=True)


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted samples, nearest rank (no interpolation: a p99.9 is a sample)."""
    if not sorted_samples:
        return float("nan")
    index = min(len(sorted_samples) - 1, max(0, round(q * len(sorted_samples)) - 1))
    return sorted_samples[index]


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median and min-max over rounds: the median is what tables show, the range shows the noise."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


@contextlib.contextmanager
def redis_server(maxmemory: str = "0", policy: str = "noeviction", **kwargs: Any) -> Iterator[RedisServer]:
    """A throwaway redis-server on a free loopback port ("0" = no memory limit)."""
    server = RedisServer(maxmemory=maxmemory, policy=policy, **kwargs).start()
    try:
        yield server
    finally:
        server.close()


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("redis", "hiredis", "cashews", "aiocache", "uvloop", "fastapi", "uvicorn", "mobius-cache"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    with contextlib.suppress(Exception):
        out["redis-server"] = redis_version()
    return out


def redis_version() -> str:
    with redis_server() as server, server.client() as c:
        return str(c.info("server")["redis_version"])


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = int(next(ln.split()[1] for ln in f if ln.startswith("MemTotal"))) * 1024
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "os": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def loadavg() -> float:
    """The 1-minute load average: recorded next to every section, since the machine is shared."""
    return round(os.getloadavg()[0], 2)
