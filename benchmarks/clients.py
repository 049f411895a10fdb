"""Client throughput and latency: raw redis-py vs ``Cache`` (with and without implicit pipelining) vs cashews
vs aiocache, sequential and from 50 concurrent tasks, GET and SET of 100 B and 10 KB values.

Why alternating rounds in one process: the machine is shared and noisy, so absolute numbers drift by tens of
percent within a minute. Every round runs every client on the same workload back to back (in a rotating
order), and each ratio is taken against raw redis-py *in the same round*; the tables show medians over
rounds with their min-max.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from prometheus_client import CollectorRegistry

from mobius_cache import MISS, Cache, CacheConfig

from .common import Progress, loadavg, percentile, redis_server, summarize

__all__ = ["SUBJECTS", "run"]

POOL = 50
CONCURRENCY = 50
TTL = 3600
SIZES = (100, 10 * 1024)
KEYS = 1000  # distinct keys per workload (all hits on GET)

Op = Callable[[str], Awaitable[Any]]


@dataclass
class Client:
    """One client under test: how it reads and writes, and how it is torn down."""

    get: Callable[[str], Awaitable[Any]]
    set: Callable[[str, bytes], Awaitable[Any]]
    close: Callable[[], Awaitable[Any]]
    batches: Callable[[], int] = lambda: 0


async def _raw(url: str) -> Client:
    r = aredis.Redis.from_url(url, max_connections=POOL)

    async def set_(key: str, value: bytes) -> Any:
        return await r.set(key, value, ex=TTL)

    return Client(r.get, set_, r.aclose)


async def _cache(url: str, autopipeline: bool) -> Client:
    config = CacheConfig(
        redis_url=url, redis_max_connections=POOL, redis_min_connections=10, autopipeline=autopipeline
    )
    cache = await Cache(config, registry=CollectorRegistry()).start()
    return Client(cache.get, cache.set, cache.close, lambda: getattr(cache.executor, "batches", 0))


async def _cashews(url: str) -> Client:
    from cashews import Cache as CashewsCache

    cache = CashewsCache()
    cache.setup(url, max_connections=POOL, client_side=False, pickle_type="null")

    async def set_(key: str, value: bytes) -> Any:
        return await cache.set(key, value, expire=TTL)

    return Client(cache.get, set_, cache.close)


async def _aiocache(url: str) -> Client:
    from aiocache import RedisCache
    from aiocache.serializers import NullSerializer

    host, port = url.removeprefix("redis://").split("/")[0].split(":")
    cache = RedisCache(serializer=NullSerializer(), endpoint=host, port=int(port), pool_max_size=POOL)

    async def set_(key: str, value: bytes) -> Any:
        return await cache.set(key, value, ttl=TTL)

    return Client(cache.get, set_, cache.close)


#: name -> (factory, the configuration written in the report)
SUBJECTS: dict[str, tuple[Callable[[str], Awaitable[Client]], str]] = {
    "redis-py": (_raw, f"redis.asyncio.Redis, ConnectionPool(max_connections={POOL}), hiredis parser"),
    "Cache": (
        lambda url: _cache(url, True),
        f"mobius_cache.Cache, lean pool of {POOL} (10 opened at start), implicit pipelining on",
    ),
    "Cache (no autopipeline)": (
        lambda url: _cache(url, False),
        f"mobius_cache.Cache(autopipeline=False), lean pool of {POOL}",
    ),
    "cashews": (
        _cashews,
        f"cashews Cache.setup(redis, max_connections={POOL}, client_side=False, pickle_type=null), "
        "redis-py BlockingConnectionPool, hiredis",
    ),
    "aiocache": (
        _aiocache,
        f"aiocache RedisCache(pool_max_size={POOL}, serializer=NullSerializer()), redis-py with hiredis",
    ),
}


@dataclass(frozen=True)
class Workload:
    op: str  # "get" or "set"
    size: int
    concurrency: int

    @property
    def name(self) -> str:
        size = f"{self.size // 1024} KB" if self.size >= 1024 else f"{self.size} B"
        mode = "sequential" if self.concurrency == 1 else f"{self.concurrency} tasks"
        return f"{self.op.upper()} {size}, {mode}"


async def _measure(client: Client, wl: Workload, seconds: float, value: bytes) -> tuple[float, list[float]]:
    """Run the workload for ``seconds`` (time-boxed, so a slow machine does not stretch the run); returns
    (ops/s, sorted per-operation latencies in seconds)."""
    if wl.op == "get":
        call: Op = client.get
    else:

        def call(key: str) -> Awaitable[Any]:
            return client.set(key, value)

    clock = time.perf_counter
    keys = [f"bench:{wl.size}:{i}" for i in range(KEYS)]
    deadline = clock() + seconds

    async def worker(offset: int) -> list[float]:
        lat = []
        i = offset
        now = clock()
        while now < deadline:
            t0 = now
            await call(keys[i % KEYS])
            now = clock()
            lat.append(now - t0)
            i += 1
        return lat

    t0 = clock()
    parts = await asyncio.gather(*(worker(i * 20) for i in range(wl.concurrency)))
    elapsed = clock() - t0
    samples = sorted(x for part in parts for x in part)
    return len(samples) / elapsed, samples


async def _fill(client: Client, size: int) -> None:
    value = b"x" * size
    for start in range(0, KEYS, POOL):
        await asyncio.gather(*(client.set(f"bench:{size}:{i}", value) for i in range(start, start + POOL)))
    got = await client.get(f"bench:{size}:7")
    if got in (None, MISS) or len(got) != size:
        raise RuntimeError(f"a benchmark client read back {got!r:.40} instead of its {size} B value")


async def run(quick: bool, progress: Progress) -> dict[str, Any]:
    rounds = 3 if quick else 7
    seconds = 0.15 if quick else 0.6
    workloads = [Workload(op, size, c) for c in (1, CONCURRENCY) for op in ("get", "set") for size in SIZES]
    names = list(SUBJECTS)
    raw: dict[tuple[str, str], list[dict[str, float]]] = {}
    batch_sizes: dict[str, list[float]] = {}
    load = [loadavg()]
    with redis_server() as server:
        # One Redis and one process for all clients; each client keeps its own keys (prefixes differ).
        clients = {name: await SUBJECTS[name][0](server.url) for name in names}
        try:
            for client in clients.values():
                for size in SIZES:
                    await _fill(client, size)
            for rnd in range(rounds + 1):  # round 0 warms up (connections, caches) and is discarded
                progress(f"clients: round {rnd}/{rounds}" + (" (warm-up)" if rnd == 0 else ""))
                for w_index, wl in enumerate(workloads):
                    value = b"x" * wl.size
                    span = seconds / 3 if rnd == 0 else seconds
                    order = names[(rnd + w_index) % len(names) :] + names[: (rnd + w_index) % len(names)]
                    for name in order:
                        client = clients[name]
                        before = client.batches()
                        ops, lat = await _measure(client, wl, span, value)
                        if rnd == 0:
                            continue
                        raw.setdefault((wl.name, name), []).append(
                            {"ops": ops, "p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99)}
                        )
                        sent = client.batches() - before
                        if sent and wl.concurrency > 1:
                            # commands that did not go direct were coalesced: this is the mean pipeline depth
                            batch_sizes.setdefault(wl.name, []).append(len(lat) / sent)
                load.append(loadavg())
        finally:
            for client in clients.values():
                await client.close()

    rows = []
    for wl in workloads:
        base = raw[(wl.name, "redis-py")]
        for name in names:
            samples = raw[(wl.name, name)]
            ratios = [s["ops"] / b["ops"] for s, b in zip(samples, base, strict=True)]
            rows.append(
                {
                    "workload": wl.name,
                    "op": wl.op,
                    "size": wl.size,
                    "concurrency": wl.concurrency,
                    "client": name,
                    "ops": summarize([s["ops"] for s in samples]),
                    "p50_us": summarize([s["p50"] * 1e6 for s in samples]),
                    "p99_us": summarize([s["p99"] * 1e6 for s in samples]),
                    "ratio": summarize(ratios),
                }
            )
    return {
        "rounds": rounds,
        "seconds_per_measurement": seconds,
        "subjects": {name: SUBJECTS[name][1] for name in names},
        "rows": rows,
        "pipeline_depth": {k: summarize(v) for k, v in batch_sizes.items()},
        "loadavg": summarize(load),
    }
