"""The near cache (issue 14): eviction policy, library hits, tracking mode, staleness across sidecars, memory.

``run(quick)`` returns::

    {"policy": {...},          LRU vs W-TinyLFU on the Zipf traces of ``hitratio`` (hit ratio, OPT, µs/op)
     "library": {...},         near hits vs raw redis-py sequential GETs (and Cache without near), same rounds
     "tracking": {...},        Redis client tracking: broadcast vs default mode, what each costs
     "staleness": {...},       two sidecars on one Redis: write's return → the other's first fresh read
     "memory": {...}}          near bytes vs the limit under a 10x working set; accounted vs real bytes

Everything runs against real redis-server processes and real sidecar processes on loopback.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis
import numpy as np
import redis
import redis.asyncio as aredis
from prometheus_client import CollectorRegistry

from mobius_cache import Cache, CacheConfig
from mobius_cache._envelope import Entry
from mobius_cache._near import SLOT_OVERHEAD, WINDOW, Fill, NearCache, Slot

from .common import Progress, loadavg, percentile, redis_server, rss_bytes, summarize
from .traces import belady_hits, zipf_trace

__all__ = ["LruNear", "run"]

VALUE = b"v" * 100
HIT = ("bench", "get", "hit")


# --- the eviction policy --------------------------------------------------------------------------------------
class LruNear(NearCache):
    """The same store with plain LRU (one segment, no admission, no sketch): the policy comparison's baseline.
    Everything else (fill guard, TTLs, byte accounting) is the library's code, so costs compare fairly."""

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(max_bytes, clock)
        self._window_max = self._main_max = max_bytes - self._fixed  # the same room for entries

    def get(self, key: str) -> Slot | None:
        slot = self._slots.get(key)
        if slot is None:
            return None
        if slot.expires <= self._clock():
            self._remove(slot)
            self.expired += 1
            return None
        self.hits += 1
        self._segments[WINDOW].move_to_end(key)
        return slot

    def begin(self, key: str) -> Fill | None:
        if not self.live:
            return None
        self.misses += 1
        fill = Fill(key, self._generation, self._clock())
        self._pending.setdefault(key, []).append(fill)
        return fill

    def _drain_window(self) -> None:
        window = self._segments[WINDOW]
        while self._bytes[WINDOW] > self._window_max and window:
            self._remove(self._slots[next(iter(window))])
            self.evictions += 1


def _replay(store: NearCache, keys: list[str], trace: np.ndarray) -> tuple[float, float]:
    """Hit ratio and seconds per request of a trace run as near-cache reads (a miss fills)."""
    entry = Entry(b"x" * 1000, "application/octet-stream", '"e"', 0)
    hits = 0
    get, begin, finish = store.get, store.begin, store.finish
    t0 = time.perf_counter()
    for k in trace.tolist():
        key = keys[k]
        if get(key) is not None:
            hits += 1
            continue
        fill = begin(key)
        if fill is not None:
            finish(fill, entry, False, -1, HIT)
    return hits / len(trace), (time.perf_counter() - t0) / len(trace)


def _hit_cost(store: NearCache, keys: list[str], trace: np.ndarray) -> float:
    """Mean seconds of a near hit over the trace (each lookup timed; the timer's own ~0.1 µs is included, the
    same for every policy)."""
    entry = Entry(b"x" * 1000, "application/octet-stream", '"e"', 0)
    clock = time.perf_counter
    spent, hits = 0.0, 0
    get, begin, finish = store.get, store.begin, store.finish
    for k in trace.tolist():
        key = keys[k]
        t0 = clock()
        slot = get(key)
        t1 = clock()
        if slot is not None:
            spent += t1 - t0
            hits += 1
            continue
        fill = begin(key)
        if fill is not None:
            finish(fill, entry, False, -1, HIT)
    return spent / hits if hits else float("nan")


def _policy(quick: bool, progress: Progress) -> dict[str, Any]:
    n_keys, length = (10_000, 40_000) if quick else (30_000, 300_000)
    alphas = (1.0,) if quick else (0.9, 1.0, 1.2)
    keys = [f"mobius:bench:{i}" for i in range(n_keys)]
    entry_size = 1000 + len(keys[-1]) + SLOT_OVERHEAD  # capacity in keys, as for OPT (plus the sketch)
    rows = []
    for alpha in alphas:
        trace = zipf_trace(n_keys, length, alpha, seed=42)
        for fraction in (0.01, 0.05, 0.10):
            capacity = max(1, int(n_keys * fraction))
            opt = float(belady_hits(trace, capacity).mean())
            for name, cls in (("LRU", LruNear), ("W-TinyLFU", NearCache)):
                limit = capacity * entry_size + NearCache(capacity * entry_size).fixed_bytes
                store = cls(limit, clock=lambda: 0.0)
                store.set_live(True)
                ratio, per_request = _replay(store, keys, trace)
                timed = cls(limit, clock=lambda: 0.0)
                timed.set_live(True)
                per_hit = _hit_cost(timed, keys, trace)
                rows.append(
                    {
                        "alpha": alpha,
                        "capacity": fraction,
                        "policy": name,
                        "hit_ratio": ratio,
                        "opt": opt,
                        "us_per_request": per_request * 1e6,
                        "us_per_hit": per_hit * 1e6,
                    }
                )
                progress(
                    f"near policy: alpha {alpha} cap {fraction:.0%} {name}: {ratio:.3f} (OPT {opt:.3f}), "
                    f"{per_request * 1e6:.2f} µs/request"
                )
    return {"keys": n_keys, "requests": length, "value_bytes": 1000, "rows": rows}


# --- library: near hits vs raw redis-py ---------------------------------------------------------------------------
async def _ops_per_second(fn: Callable[[], Awaitable[Any]], seconds: float) -> tuple[float, list[float]]:
    clock = time.perf_counter
    latencies: list[float] = []
    stop = clock() + seconds
    n = 0
    while True:
        t0 = clock()
        await fn()
        t1 = clock()
        latencies.append(t1 - t0)
        n += 1
        if t1 >= stop:
            break
    return n / sum(latencies), latencies


async def _library(url: str, quick: bool, progress: Progress) -> dict[str, Any]:
    rounds, seconds = (3, 0.5) if quick else (7, 1.5)
    raw = aredis.Redis.from_url(url)
    near = await Cache(CacheConfig(redis_url=url), registry=CollectorRegistry()).start()
    plain = await Cache(CacheConfig(redis_url=url, near_cache=False), registry=CollectorRegistry()).start()
    try:
        assert await near.wait_near(5.0)
        key = "bench:lib"
        await near.set_raw(key, VALUE, "application/octet-stream", 3600)
        for _ in range(5):
            await near.get(key)
        assert (await near.lookup(key))[1] == "hit-near"
        subjects: dict[str, Callable[[], Awaitable[Any]]] = {
            "redis-py GET": lambda: raw.get("mobius:" + key),
            "Cache.get (near off)": lambda: plain.get(key),
            "Cache.get (near hit)": lambda: near.get(key),
            "Cache.lookup (near hit)": lambda: near.lookup(key),
        }
        per: dict[str, list[float]] = {n: [] for n in subjects}
        p50: dict[str, list[float]] = {n: [] for n in subjects}
        for _ in subjects.values():  # warm-up
            pass
        for round_no in range(rounds + 1):
            order = list(subjects)
            random.Random(round_no).shuffle(order)
            for name in order:
                ops, lat = await _ops_per_second(subjects[name], seconds)
                if round_no:
                    per[name].append(ops)
                    lat.sort()
                    p50[name].append(percentile(lat, 0.5) * 1e6)
        ratios = [n / r for n, r in zip(per["Cache.get (near hit)"], per["redis-py GET"], strict=True)]
        out = {
            "rounds": rounds,
            "seconds": seconds,
            "ops": {n: summarize(v) for n, v in per.items()},
            "p50_us": {n: summarize(v) for n, v in p50.items()},
            "near_vs_redis_py": summarize(ratios),
            "near_vs_cache_without_near": summarize(
                [n / r for n, r in zip(per["Cache.get (near hit)"], per["Cache.get (near off)"], strict=True)]
            ),
        }
        progress(f"near library: near hits {statistics.median(ratios):.1f}x raw redis-py sequential GETs")
        return out
    finally:
        await near.close()
        await plain.close()
        await raw.aclose()


# --- tracking modes ---------------------------------------------------------------------------------------------
class _Tracked(asyncio.Protocol):
    """A RESP3 connection with client tracking on, counting the keys it is told about (and the time it takes
    to apply them to a NearCache, as the library does)."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.replies: list[asyncio.Future[Any]] = []
        self.keys = 0
        self.messages = 0
        self.apply_seconds = 0.0
        self.near = NearCache(64 * 2**20)
        self.near.set_live(True)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def command(self, *args: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.replies.append(fut)
        assert self.transport is not None
        self.transport.write(hiredis.pack_command(args))
        return fut

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (msg := self.reader.gets()) is not False:
            if isinstance(msg, hiredis.PushNotification):
                keys = msg[1] or []
                t0 = time.perf_counter()
                self.near.invalidate([k.decode("utf-8", "surrogateescape") for k in keys])
                self.apply_seconds += time.perf_counter() - t0
                self.keys += len(keys)
                self.messages += 1
            elif self.replies:
                self.replies.pop(0).set_result(msg)


def _redis_cpu(r: redis.Redis) -> float:
    cpu = r.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _info_int(r: redis.Redis, field: str) -> int:
    for section in ("stats", "memory", "clients"):
        value = r.info(section).get(field)
        if value is not None:
            return int(value)
    return 0


async def _tracking(quick: bool, progress: Progress) -> dict[str, Any]:
    n_keys = 20_000 if quick else 100_000
    instances = 8
    hot = max(1, n_keys // 100)  # each instance caches 1% of the keys (its own slice)
    seconds = 1.5 if quick else 4.0
    rows = []
    with redis_server() as server:
        r = server.client()
        loop = asyncio.get_running_loop()
        for mode in ("none", "bcast", "default"):
            r.flushall()
            for i in range(0, n_keys, 1000):
                pipe = r.pipeline(transaction=False)
                for j in range(i, min(n_keys, i + 1000)):
                    pipe.set(f"mobius:k:{j}", VALUE)
                pipe.execute()
            r.config_resetstat()
            gc.collect()
            used_before = _info_int(r, "used_memory")
            conns: list[_Tracked] = []
            for n in range(instances if mode != "none" else 0):
                _, proto = await loop.create_connection(_Tracked, "127.0.0.1", server.port)
                await proto.command("HELLO", "3")
                if mode == "bcast":
                    assert (
                        await proto.command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "mobius:") == b"OK"
                    )
                else:
                    assert await proto.command("CLIENT", "TRACKING", "ON") == b"OK"
                    for j in range(n * hot, (n + 1) * hot):  # default mode tracks what this connection reads
                        proto.command("GET", f"mobius:k:{j}")
                    await proto.command("PING")
                conns.append(proto)
            used_tracking = _info_int(r, "used_memory") - used_before
            tracked_keys = _info_int(r, "tracking_total_keys")
            # One writer: pipelined SETs of random keys over the whole keyspace, as fast as Redis takes them.
            writer = aredis.Redis(port=server.port)
            cpu_before = _redis_cpu(r)
            rng = random.Random(1)
            written = 0
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                pipe = writer.pipeline(transaction=False)
                for _ in range(100):
                    pipe.set(f"mobius:k:{rng.randrange(n_keys)}", VALUE)
                await pipe.execute()
                written += 100
            elapsed = time.perf_counter() - t0
            cpu = _redis_cpu(r) - cpu_before
            await asyncio.sleep(0.2)  # let the last invalidations arrive
            await writer.aclose()
            keys_rx = sum(c.keys for c in conns)
            apply_s = sum(c.apply_seconds for c in conns)
            rows.append(
                {
                    "mode": mode,
                    "instances": len(conns),
                    "writes_per_s": written / elapsed,
                    "redis_cpu_us_per_write": cpu / written * 1e6,
                    "keys_received_per_instance_per_s": (keys_rx / len(conns) / elapsed) if conns else 0.0,
                    "messages_per_instance_per_s": (sum(c.messages for c in conns) / len(conns) / elapsed)
                    if conns
                    else 0.0,
                    "us_per_received_key": (apply_s / keys_rx * 1e6) if keys_rx else None,
                    "redis_tracking_memory_bytes": used_tracking,
                    "tracking_total_keys": tracked_keys,
                }
            )
            for c in conns:
                assert c.transport is not None
                c.transport.close()
            progress(
                f"near tracking {mode}: {written / elapsed:,.0f} writes/s, "
                f"{rows[-1]['redis_cpu_us_per_write']:.2f} µs of Redis CPU per write, "
                f"{rows[-1]['keys_received_per_instance_per_s']:,.0f} keys/s told to each instance"
            )
        r.close()
    return {
        "keys": n_keys,
        "instances": instances,
        "hot_keys_per_instance": hot,
        "seconds": seconds,
        "rows": rows,
    }


# --- staleness across two sidecars ----------------------------------------------------------------------------------
class _Http:
    """One keep-alive HTTP/1.1 connection (GET and PUT), reading Content-Length bodies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> _Http:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(
        self, method: str, path: str, body: bytes = b""
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0][9:12])
        headers = {}
        for line in lines[1:]:
            if b":" in line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        data = await self.reader.readexactly(length) if length else b""
        return status, headers, data

    def close(self) -> None:
        self.writer.close()


async def _staleness(quick: bool, progress: Progress) -> dict[str, Any]:
    from .sidecar_bench import sidecars

    writes = 200 if quick else 1500
    path = "/v1/cache/bench:stale"
    with redis_server() as server, sidecars(server.url, 2) as (a, b):
        wa, rb = await _Http.open(a.port), await _Http.open(b.port)
        delays: list[float] = []
        polls: list[int] = []
        primed = 0
        try:
            await wa.request("PUT", path, b"0")
            for i in range(1, writes + 1):
                for _ in range(10):  # the reader holds the current value in its near cache
                    _, headers, _ = await rb.request("GET", path)
                    if headers.get(b"x-cache") == b"hit-near":
                        primed += 1
                        break
                status, _, _ = await wa.request("PUT", path, str(i).encode())
                assert status == 204
                t0 = time.perf_counter()
                n = 0
                while True:
                    n += 1
                    _, _, body = await rb.request("GET", path)
                    if body == str(i).encode():
                        break
                delays.append(time.perf_counter() - t0)
                polls.append(n)
        finally:
            wa.close()
            rb.close()
    delays.sort()
    out = {
        "writes": writes,
        "primed": primed,
        "p50_ms": percentile(delays, 0.5) * 1000,
        "p90_ms": percentile(delays, 0.9) * 1000,
        "p99_ms": percentile(delays, 0.99) * 1000,
        "max_ms": delays[-1] * 1000,
        "first_read_fresh": sum(1 for n in polls if n == 1),
        "mean_polls": statistics.mean(polls),
        "loadavg": loadavg(),
    }
    progress(
        f"near staleness: p50 {out['p50_ms']:.3f} ms, p99 {out['p99_ms']:.3f} ms, max {out['max_ms']:.2f} ms "
        f"over {writes} writes ({out['first_read_fresh']} fresh at the first read)"
    )
    return out


# --- memory -----------------------------------------------------------------------------------------------------------
def _accounting() -> dict[str, Any]:
    """Real bytes (tracemalloc) of a full near cache vs the bytes it accounts, at three value sizes."""
    rows = []
    for size in (100, 1000, 10_000):
        limit = 8 * 2**20
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        near = NearCache(limit, clock=lambda: 0.0)
        near.set_live(True)
        i = 0
        while near.bytes < 0.95 * limit and i < 10**6:
            key = f"mobius:api:v1:endpoint:{i:08d}"
            fill = near.begin(key)
            assert fill is not None
            payload = os.urandom(size)
            entry = Entry(payload, "application/json", f'"{i:040x}"', 2)
            near.finish(fill, entry, False, 60_000, ("api", "get", "hit"))
            i += 1
        real = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        rows.append(
            {
                "value_bytes": size,
                "entries": len(near),
                "accounted_bytes": near.bytes,
                "real_bytes": real,
                "real_over_accounted": real / near.bytes,
            }
        )
        del near
    return {"slot_overhead": SLOT_OVERHEAD, "rows": rows}


async def _memory(url: str, quick: bool, progress: Progress) -> dict[str, Any]:
    limit = 2 * 2**20 if quick else 8 * 2**20
    value = b"m" * 1000
    n_keys = 10 * limit // 1000  # a working set of 10x the limit in payload bytes alone
    reads = 40_000 if quick else 200_000
    cache = await Cache(
        CacheConfig(redis_url=url, near_cache_max_bytes=limit), registry=CollectorRegistry()
    ).start()
    try:
        assert await cache.wait_near(5.0)
        for i in range(0, n_keys, 500):
            await cache.set_many([(f"api:v1:mem:{j}", value) for j in range(i, min(n_keys, i + 500))])
        near = cache._near
        assert near is not None
        rss_before = rss_bytes()
        trace = zipf_trace(n_keys, reads, 1.0, seed=3)
        peak = 0
        for k in trace.tolist():
            await cache.get(f"api:v1:mem:{k}")
            peak = max(peak, near.bytes)
        stats = near.stats()
        out = {
            "limit_bytes": limit,
            "working_set_bytes": n_keys * len(value),
            "keys": n_keys,
            "reads": reads,
            "peak_bytes": peak,
            "peak_over_limit": peak / limit,
            "hit_ratio": stats["hit_ratio"],
            "evictions": stats["evictions"],
            "entries": stats["entries"],
            "rss_before": rss_before,
            "rss_after": rss_bytes(),
            "accounting": _accounting(),
        }
        progress(
            f"near memory: peak {peak:,} B of {limit:,} B ({peak / limit:.4f}x) under a "
            f"{n_keys * len(value) / limit:.0f}x working set; near hit ratio {stats['hit_ratio']:.3f}"
        )
        return out
    finally:
        await cache.close()


async def run(quick: bool, progress: Progress | None = None) -> dict[str, Any]:
    say = progress or Progress()
    out: dict[str, Any] = {"loadavg_start": loadavg()}
    out["policy"] = _policy(quick, say)
    with redis_server() as server:
        out["library"] = await _library(server.url, quick, say)
        out["memory"] = await _memory(server.url, quick, say)
    out["tracking"] = await _tracking(quick, say)
    out["staleness"] = await _staleness(quick, say)
    out["loadavg_end"] = loadavg()
    return out


if __name__ == "__main__":
    import uvloop

    print(json.dumps(uvloop.run(run("--quick" in sys.argv)), indent=1, default=str))
