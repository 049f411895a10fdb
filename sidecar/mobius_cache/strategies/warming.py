"""Warming: load keys into the cache ahead of demand, with bounded concurrency and progress reporting.

Used at start-up (configuration) and for known-hot entries (popular search queries). A failing loader
is counted, logged and skipped: warming is an optimisation and must never keep a service from starting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._client import MISS, Cache
from .._exceptions import CacheError

__all__ = ["WarmReport", "warm"]

log = logging.getLogger("mobius_cache")


@dataclass
class WarmReport:
    total: int = 0
    loaded: int = 0
    skipped: int = 0  # already cached
    failed: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)


async def warm(
    cache: Cache,
    keys: Iterable[str],
    loader: Callable[[str], Awaitable[Any]],
    *,
    concurrency: int = 16,
    ttl: int | None = None,
    overwrite: bool = False,
    on_progress: Callable[[int, int], Any] | None = None,
    tags_for: Callable[[str], Sequence[str]] | None = None,
) -> WarmReport:
    """Load each key with ``loader(key)`` and store it. At most ``concurrency`` loaders run at once;
    ``on_progress(done, total)`` is called after each key. Keys already cached are skipped unless
    ``overwrite``; ``tags_for(key)`` gives the tags to store each key with."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    todo = list(dict.fromkeys(keys))
    report = WarmReport(total=len(todo))
    t0 = time.perf_counter()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for k in todo:
        queue.put_nowait(k)
    done = 0

    async def worker() -> None:
        nonlocal done
        while True:
            try:
                key = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                if not overwrite and await cache.get(key) is not MISS:
                    report.skipped += 1
                else:
                    tags = tags_for(key) if tags_for is not None else ()
                    await cache.set(key, await loader(key), ttl, tags=tags)
                    report.loaded += 1
            except (CacheError, Exception) as exc:  # a warmer never takes the service down
                report.failed += 1
                report.errors[key] = f"{type(exc).__name__}: {exc}"
                log.warning("warming %r failed: %s", key, exc)
            done += 1
            if on_progress is not None:
                on_progress(done, report.total)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, len(todo))))))
    report.seconds = time.perf_counter() - t0
    return report
