"""Load and overload, as the brief's performance tests describe them, on a real redis-server we can break.

- sustained: 50 tasks of cache-aside traffic (80% GET, 20% SET) for a while: ops/s per second, latency;
  and an open-loop run at a fixed 1000 req/s, timed from each request's *scheduled* start (so a stall shows
  up in the latency instead of silently lowering the rate).
- pool exhaustion: a pool of 4 connections, Redis frozen (SIGSTOP), 200 concurrent calls: every call must
  end within its bounds (pool_timeout / socket_timeout) with a miss or a clear error.
- Redis killed during load: the app sees only misses and errors (never a hang, never an unexpected
  exception); how long after the restart writes and hits come back.
- recovery after overload: 20x the pool's worth of concurrent tasks, then back to normal: how long until
  latency is back to its baseline.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry

from mobius_cache import MISS, Cache, CacheConfig, CacheError

from .common import Progress, percentile, redis_server

__all__ = ["run"]

VALUE = b"v" * 100
KEYS = 5000
Event = tuple[float, str, float]  # (time since start, outcome, latency in seconds)


def _cache(url: str, **overrides: Any) -> Cache:
    config = CacheConfig(redis_url=url, **overrides)
    return Cache(config, registry=CollectorRegistry())


async def _aside(cache: Cache, key: str) -> str:
    """One request of an app doing cache-aside (80% reads; 20% writes of fresh data): the outcome it sees.

    A miss or a write first "loads from the source of truth", here just a yield to the event loop. Without
    it, a worker whose calls all fail fast (circuit open: no I/O at all) would never yield and starve the
    loop, which measures the benchmark, not the cache."""
    try:
        if random.random() < 0.8:
            value = await cache.get(key)
            if value is not MISS:
                return "hit"
        await asyncio.sleep(0)
        await cache.set(key, VALUE)
        return "miss"
    except CacheError as exc:
        return type(exc).__name__
    except Exception as exc:  # anything else would be a bug: counted and reported, never hidden
        return f"UNEXPECTED {type(exc).__name__}"


async def _closed_loop(
    cache: Cache,
    tasks: int,
    seconds: float,
    t_start: float,
    op: Callable[[Cache, str], Awaitable[str]],
    stop: Callable[[], bool] = lambda: False,
    events: list[Event] | None = None,
) -> list[Event]:
    """``tasks`` workers issuing ``op`` back to back for ``seconds`` (or until ``stop()``)."""
    events = [] if events is None else events
    clock = time.perf_counter
    deadline = clock() + seconds

    async def worker() -> None:
        while (now := clock()) < deadline and not stop():
            outcome = await op(cache, f"other:{random.randrange(KEYS)}")
            done = clock()
            events.append((done - t_start, outcome, done - now))

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return events


def _latency(events: list[Event]) -> dict[str, float]:
    lat = sorted(e[2] for e in events)
    return {
        "p50_ms": percentile(lat, 0.5) * 1e3,
        "p99_ms": percentile(lat, 0.99) * 1e3,
        "p999_ms": percentile(lat, 0.999) * 1e3,
        "max_ms": lat[-1] * 1e3 if lat else 0.0,
    }


def _buckets(events: list[Event], width: float) -> list[dict[str, Any]]:
    """Events per time bucket: count by outcome and the median latency."""
    by: defaultdict[int, list[Event]] = defaultdict(list)
    for e in events:
        by[int(e[0] / width)].append(e)
    out = []
    for b in range(max(by) + 1 if by else 0):
        evs = by.get(b, [])
        lat = sorted(e[2] for e in evs)
        out.append(
            {
                "t": round(b * width, 3),
                "ops_per_s": len(evs) / width,
                "outcomes": dict(Counter(e[1] for e in evs)),
                "p50_ms": percentile(lat, 0.5) * 1e3 if lat else None,
            }
        )
    return out


async def _sustained(url: str, seconds: float) -> dict[str, Any]:
    async with _cache(url) as cache:
        t0 = time.perf_counter()
        events = await _closed_loop(cache, 50, seconds, t0, _aside)
    per_second = [b["ops_per_s"] for b in _buckets(events, 1.0)][: int(seconds)]
    outcomes = Counter(e[1] for e in events)
    return {
        "seconds": seconds,
        "tasks": 50,
        "ops": len(events),
        "ops_per_s": len(events) / seconds,
        "min_second_ops": min(per_second),
        "outcomes": dict(outcomes),
        "errors": sum(n for k, n in outcomes.items() if k not in ("hit", "miss")),
        **_latency(events),
    }


async def _fixed_rate(url: str, rate: int, seconds: float) -> dict[str, Any]:
    """Open loop: a request every 1/rate s, each timed from when it was due."""
    async with _cache(url) as cache:
        await cache.set_many({f"other:{i}": VALUE for i in range(KEYS)})
        events: list[Event] = []
        pending: set[asyncio.Task[None]] = set()
        t0 = time.perf_counter()

        async def one(due: float) -> None:
            outcome = await _aside(cache, f"other:{random.randrange(KEYS)}")
            done = time.perf_counter()
            events.append((done - t0, outcome, done - due))

        for i in range(int(rate * seconds)):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one(due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    outcomes = Counter(e[1] for e in events)
    return {
        "rate": rate,
        "seconds": seconds,
        "achieved_per_s": len(events) / (max(e[0] for e in events) or 1),
        "outcomes": dict(outcomes),
        "errors": sum(n for k, n in outcomes.items() if k not in ("hit", "miss")),
        **_latency(events),
    }


async def _pool_exhaustion(progress: Progress) -> dict[str, Any]:
    with redis_server() as server:
        pool_timeout, socket_timeout = 0.25, 1.0
        async with _cache(
            server.url,
            redis_max_connections=4,
            redis_min_connections=4,
            pool_timeout=pool_timeout,
            redis_socket_timeout=socket_timeout,
            retry_attempts=0,
            autopipeline=False,  # so every call needs a connection of its own (pipelined, 200 calls use 2)
        ) as cache:
            await cache.set("other:k", VALUE)
            await asyncio.to_thread(server.freeze)
            try:
                t0 = time.perf_counter()

                async def call(i: int) -> tuple[str, float]:
                    start = time.perf_counter()
                    if i % 2:
                        got = await cache.get("other:k")
                        outcome = "hit" if got is not MISS else "miss"
                    else:
                        outcome = await _set_outcome(cache, f"other:{i}")
                    return outcome, time.perf_counter() - start

                results = await asyncio.wait_for(asyncio.gather(*(call(i) for i in range(200))), 30)
                frozen_for = time.perf_counter() - t0
            finally:
                await asyncio.to_thread(server.thaw)
            recovered = await _time_to_first_write(cache, 10.0)
    outcomes = Counter(r[0] for r in results)
    progress(f"load: pool exhaustion: {dict(outcomes)}, slowest {max(r[1] for r in results):.2f}s")
    return {
        "pool": 4,
        "autopipeline": False,
        "calls": len(results),
        "pool_timeout_s": pool_timeout,
        "socket_timeout_s": socket_timeout,
        "outcomes": dict(outcomes),
        "max_call_s": max(r[1] for r in results),
        "all_answered_within_s": frozen_for,
        "recovery_after_thaw_s": recovered,
    }


async def _set_outcome(cache: Cache, key: str) -> str:
    try:
        await cache.set(key, VALUE)
        return "stored"
    except CacheError as exc:
        return type(exc).__name__
    except Exception as exc:
        return f"UNEXPECTED {type(exc).__name__}"


async def _time_to_first_write(cache: Cache, limit: float) -> float | None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if await _set_outcome(cache, "other:probe") == "stored":
            return time.perf_counter() - t0
        await asyncio.sleep(0.01)
    return None


async def _redis_killed(progress: Progress, quick: bool) -> dict[str, Any]:
    """Kill Redis under load, restart it, and keep the load on until writes have worked for a second
    again (at most ``limit`` seconds after the restart)."""
    before, down, limit = (1.5, 1.5, 25.0) if quick else (3.0, 3.0, 40.0)
    events: list[Event] = []
    marks: dict[str, float] = {}

    def recovered() -> bool:
        """Called by each worker right after it appended its event, so looking at the last one sees all."""
        if "first_write" not in marks:
            if (
                "restarted" in marks
                and events
                and events[-1][1] == "miss"
                and events[-1][0] > marks["restarted"]
            ):
                marks["first_write"] = events[-1][0]
            return False
        return events[-1][0] > marks["first_write"] + 1.0

    with redis_server() as server:
        async with _cache(server.url) as cache:  # the defaults a service gets
            t0 = time.perf_counter()
            load = asyncio.ensure_future(
                _closed_loop(cache, 50, before + down + limit, t0, _aside, recovered, events)
            )
            await asyncio.sleep(before)
            # In a thread: RedisServer's kill and start wait synchronously, and the load must keep running.
            await asyncio.to_thread(server.kill)
            marks["killed"] = time.perf_counter() - t0
            progress("load: Redis killed")
            await asyncio.sleep(down)
            await asyncio.to_thread(server.start)
            marks["restarted"] = restarted_at = time.perf_counter() - t0
            progress("load: Redis restarted")
            await asyncio.wait_for(load, before + down + limit + 30)
    killed_at = marks["killed"]
    writes_back = marks.get("first_write")
    hits_back = next((e[0] for e in events if e[0] > restarted_at and e[1] == "hit"), None)
    outcomes = Counter(e[1] for e in events)
    down_events = [e for e in events if killed_at <= e[0] <= restarted_at]
    progress(
        f"load: writes back {None if writes_back is None else round(writes_back - restarted_at, 2)}s after restart"
    )
    return {
        "killed_at_s": killed_at,
        "restarted_at_s": restarted_at,
        "outcomes": dict(outcomes),
        "unexpected": sum(n for k, n in outcomes.items() if k.startswith("UNEXPECTED")),
        "max_latency_while_down_ms": max((e[2] for e in down_events), default=0.0) * 1e3,
        "ops_per_s_while_down": len(down_events) / max(1e-9, restarted_at - killed_at),
        "first_write_after_restart_s": None if writes_back is None else writes_back - restarted_at,
        "first_hit_after_restart_s": None if hits_back is None else hits_back - restarted_at,
        "breaker_reset_timeout_s": CacheConfig().breaker_reset_timeout,
        "min_connections": CacheConfig().redis_min_connections,
        "slowest": [
            {"ended_at_s": round(e[0], 3), "outcome": e[1], "latency_s": round(e[2], 3)}
            for e in sorted(events, key=lambda e: -e[2])[:3]
        ],
        "timeline": _buckets(events, 0.1),
        **_latency(events),
    }


async def _overload(progress: Progress, quick: bool) -> dict[str, Any]:
    normal, heavy = 10, 1000
    phase = 1.5 if quick else 3.0
    with redis_server() as server:
        async with _cache(server.url) as cache:
            await cache.set_many({f"other:{i}": VALUE for i in range(KEYS)})
            t0 = time.perf_counter()
            base = await _closed_loop(cache, normal, phase, t0, _aside)
            progress(f"load: overload with {heavy} tasks")
            over = await _closed_loop(cache, heavy, phase, t0, _aside)
            over_end = time.perf_counter() - t0
            after = await _closed_loop(cache, normal, phase * 2, t0, _aside)
    base_p50 = _latency(base)["p50_ms"]
    buckets = _buckets(after, 0.1)
    recovered = next(
        (
            max(0.0, b["t"] + 0.1 - over_end)
            for b in buckets
            if b["p50_ms"] is not None and b["p50_ms"] <= 2 * base_p50 and b["t"] + 0.1 > over_end
        ),
        None,
    )
    phases = {}
    for name, evs in (("before", base), ("overload", over), ("after", after)):
        outcomes = Counter(e[1] for e in evs)
        span = (max(e[0] for e in evs) - min(e[0] for e in evs)) or 1.0
        phases[name] = {
            "ops_per_s": len(evs) / span,
            "errors": sum(n for k, n in outcomes.items() if k not in ("hit", "miss")),
            "outcomes": dict(outcomes),
            **_latency(evs),
        }
    return {
        "normal_tasks": normal,
        "overload_tasks": heavy,
        "phase_s": phase,
        "phases": phases,
        "recovery_s": recovered,
        "timeline": _buckets(base + over + after, 0.1),
    }


async def run(quick: bool, progress: Progress) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with redis_server() as server:
        progress("load: sustained, 50 tasks")
        out["sustained"] = await _sustained(server.url, 3.0 if quick else 20.0)
        progress(f"load: sustained {out['sustained']['ops_per_s']:.0f} ops/s; fixed rate 1000 req/s")
        out["fixed_rate"] = await _fixed_rate(server.url, 1000, 2.0 if quick else 10.0)
    out["pool_exhaustion"] = await _pool_exhaustion(progress)
    out["redis_killed"] = await _redis_killed(progress, quick)
    out["overload"] = await _overload(progress, quick)
    return out
