"""The sidecar's hit path over HTTP, against a naive FastAPI + redis-py endpoint and a raw ASGI constant.

``run(quick)`` returns::

    {"closed_loop": {"connections": 16, "rounds": n, "servers": {name: {"rps": summary, "p50_ms", "p99_ms"}}},
     "ratios": {"sidecar_vs_naive": x, "sidecar_vs_ceiling": y, "sidecar_no_near_vs_ceiling": z},
     "fixed_rate": {"rate": 1000, "in_process": {...}, "sidecar": {...}, "sidecar_uds": {...},
                    "added_p90_ms", "added_p90_ms_uds", ...},
     "gc": {"tuned": {...}, "untuned": {...}},
     "sustained": {"offered_rate": 5000, "seconds": 60, "achieved_rate", "p50_ms", "p99_ms", "p999_ms", "errors", ...},
     "sustained_zipf": {... the same, over a Zipf(1.0) key mix, with the near cache's hit ratio ...}}

Every server is one uvicorn worker (uvloop + httptools) in its own process; the load comes from a lean
asyncio HTTP/1.1 client (keep-alive, one request in flight per connection) in this process, so the machine's
two cores are split between load and server alike for every target. Targets alternate within each round so
that the shared machine's noise hits all of them. "sidecar" is the default configuration (near cache on: a
repeated GET is answered from the sidecar's memory); "sidecar (near cache off)" reads Redis every time.

The sustained runs (issues 8 and 14) offer a fixed 5000 req/s of hits for 60 s (6 s in quick mode) to a fresh
sidecar from the open-loop generator of :mod:`.openloop`, in a process of its own: requests leave on schedule
whether or not earlier ones returned, and latency counts from the scheduled time, so a stall cannot hide.
Issue 8's run reads one key; issue 14's reads 100,000 keys with Zipf(1.0) popularity, after a warm-up with the
same traffic (a sidecar's near cache is warm in production; the warm-up is not measured).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from mobius_cache import Cache, CacheConfig
from tests.servers import free_port

from .common import Progress, loadavg, percentile, redis_server, summarize

KEY = "bench:hit"
VALUE = b"v" * 100
CONNECTIONS = 16


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    uds: str | None = None

    @property
    def path(self) -> bytes:
        return f"/v1/cache/{KEY}".encode()


def _start(name: str, cmd: list[str], env: dict[str, str], port: int, uds: str | None = None) -> Server:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/v1/cache/{KEY}", timeout=0.5).status_code in (200, 404):
                if name.startswith("sidecar"):
                    _wait_near(port, env.get("MOBIUS_NEAR_CACHE") != "off")
                return Server(name, port, proc, uds)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"{name} did not start")


def _wait_near(port: int, on: bool) -> None:
    """A sidecar's near cache serves once Redis tracking is established (a few ms after start-up)."""
    deadline = time.monotonic() + 10
    while on and not httpx.get(f"http://127.0.0.1:{port}/v1/stats", timeout=2).json()["near"].get("live"):
        if time.monotonic() > deadline:
            raise TimeoutError("the sidecar's near cache did not come on")
        time.sleep(0.02)


def _sidecar_cmd(redis_url: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mobius_cache.server",
        "--redis-url",
        redis_url,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOBIUS_")}
    env.update(BENCH_REDIS_URL=redis_url, **extra)
    return env


@contextlib.contextmanager
def sidecars(redis_url: str, n: int, **env: str) -> Iterator[list[Server]]:
    """``n`` sidecars (default settings, near cache on) on one Redis."""
    started: list[Server] = []
    try:
        for i in range(n):
            port = free_port()
            started.append(_start(f"sidecar{i}", _sidecar_cmd(redis_url, port), _env(redis_url, **env), port))
        yield started
    finally:
        _stop(started)


def _stop(servers: list[Server]) -> None:
    for server in servers:
        server.proc.terminate()
    for server in servers:
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()


@contextlib.contextmanager
def _servers(redis_url: str, gc_tuning: bool = True, only: str | None = None) -> Iterator[list[Server]]:
    """The servers under test (``only``: just the one of that name), each a process of its own."""
    env = _env(redis_url, MOBIUS_GC_TUNING="1" if gc_tuning else "0")
    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--host",
        "127.0.0.1",
    ]
    servers: list[Server] = []
    uds = f"/tmp/mobius-bench-{os.getpid()}.sock"
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "sidecar": (["sidecar"], {**env, "MOBIUS_SIDECAR_UDS": uds}),
        "sidecar_no_near": (["sidecar"], {**env, "MOBIUS_NEAR_CACHE": "off"}),
        "naive": ([*uvicorn, "benchmarks.sidecar_apps:naive_app"], env),
        "constant": ([*uvicorn, "benchmarks.sidecar_apps:constant_app"], env),
    }
    try:
        for name, (cmd, server_env) in commands.items():
            if only is not None and name != only:
                continue
            port = free_port()
            if cmd == ["sidecar"]:
                cmd = _sidecar_cmd(redis_url, port)
            else:
                cmd = [*cmd[:-1], "--port", str(port), cmd[-1]]
            servers.append(_start(name, cmd, server_env, port, uds=uds if name == "sidecar" else None))
        yield servers
    finally:
        _stop(servers)


# --- a lean HTTP/1.1 client ------------------------------------------------------------------------------
class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
        self.reader, self.writer, self.request = reader, writer, request

    @classmethod
    async def open(cls, port: int, path: bytes, uds: str | None = None) -> Conn:
        if uds:
            reader, writer = await asyncio.open_unix_connection(uds)
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        return cls(reader, writer, request)

    async def get(self) -> int:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"content-length:")
        if at >= 0:
            length = int(lower[at + 15 : lower.find(b"\r\n", at)])
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def _closed_loop(port: int, path: bytes, seconds: float, connections: int) -> dict[str, float]:
    conns = [await Conn.open(port, path) for _ in range(connections)]
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker(conn: Conn) -> None:
        nonlocal errors
        clock = time.perf_counter
        while clock() < stop_at:
            t0 = clock()
            if await conn.get() != 200:
                errors += 1
            latencies.append(clock() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        c.close()
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": errors,
    }


async def _fixed_rate(call: Any, rate: int, seconds: float) -> list[float]:
    """Latencies of ``call()`` started at ``rate`` per second (open loop: one task per request)."""
    latencies: list[float] = []
    clock = time.perf_counter

    async def one() -> None:
        t0 = clock()
        await call()
        latencies.append(clock() - t0)

    tasks = set()
    start = clock()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    latencies.sort()
    return latencies


async def _http_fixed_rate(
    port: int, path: bytes, rate: int, seconds: float, uds: str | None = None
) -> list[float]:
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(4):
        idle.put_nowait(await Conn.open(port, path, uds))

    async def call() -> None:
        conn = await idle.get()
        try:
            await conn.get()
        finally:
            idle.put_nowait(conn)

    latencies = await _fixed_rate(call, rate, seconds)
    while not idle.empty():
        idle.get_nowait().close()
    return latencies


def _p(latencies: list[float], q: float) -> float:
    return round(percentile(latencies, q) * 1000, 4)


async def run(quick: bool, progress: Progress | None = None) -> dict[str, Any]:
    say = progress or (lambda message: print(message, file=sys.stderr))
    # The in-process Cache logs each slow operation; on a loaded machine that is noise on stderr here.
    logging.getLogger("mobius_cache").setLevel(logging.ERROR)
    rounds, seconds = (2, 1.5) if quick else (5, 4.0)
    rate_seconds = 2.0 if quick else 8.0
    out: dict[str, Any] = {"loadavg_start": loadavg(), "connections": CONNECTIONS}
    with redis_server() as redis:
        with redis.client() as r:
            r.set("mobius:" + KEY, VALUE)
        async with Cache(CacheConfig(redis_url=redis.url), registry=CollectorRegistry()) as cache:
            await cache.set_raw(KEY, VALUE, "application/octet-stream", 3600)
        with _servers(redis.url) as servers:
            per: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
            for round_no in range(rounds):
                for server in servers:
                    await _closed_loop(server.port, server.path, 0.3, CONNECTIONS)  # warm-up
                    result = await _closed_loop(server.port, server.path, seconds, CONNECTIONS)
                    per[server.name].append(result)
                    say(
                        f"sidecar bench round {round_no + 1}/{rounds} {server.name}: {result['rps']:.0f} req/s "
                        f"p99 {result['p99_ms']:.2f} ms"
                    )
            closed = {
                name: {
                    "rps": summarize([r["rps"] for r in rs]),
                    "p50_ms": summarize([r["p50_ms"] for r in rs]),
                    "p99_ms": summarize([r["p99_ms"] for r in rs]),
                    "errors": sum(r["errors"] for r in rs),
                }
                for name, rs in per.items()
            }
            ratio_rounds = [s["rps"] / n["rps"] for s, n in zip(per["sidecar"], per["naive"], strict=True)]
            out["closed_loop"] = {"seconds": seconds, "rounds": rounds, "servers": closed}
            out["ratios"] = {
                "sidecar_vs_naive": summarize(ratio_rounds),
                "sidecar_vs_ceiling": summarize(
                    [s["rps"] / c["rps"] for s, c in zip(per["sidecar"], per["constant"], strict=True)]
                ),
                "sidecar_no_near_vs_ceiling": summarize(
                    [
                        s["rps"] / c["rps"]
                        for s, c in zip(per["sidecar_no_near"], per["constant"], strict=True)
                    ]
                ),
            }

            # Fixed 1000 req/s: what the sidecar adds over calling Cache.get in-process (without a near cache:
            # the question is what crossing a process boundary costs an app that would otherwise call Redis).
            by_name = {s.name: s for s in servers}
            plain = CacheConfig(redis_url=redis.url, near_cache=False)
            async with Cache(plain, registry=CollectorRegistry()) as cache:
                await cache.get(KEY)
                inproc = await _fixed_rate(lambda: cache.get(KEY), 1000, rate_seconds)
            near = by_name["sidecar"]
            side = await _http_fixed_rate(near.port, near.path, 1000, rate_seconds)
            side_uds = await _http_fixed_rate(near.port, near.path, 1000, rate_seconds, uds=near.uds)
            const = await _http_fixed_rate(
                by_name["constant"].port, by_name["constant"].path, 1000, rate_seconds
            )

            def row(lat: list[float]) -> dict[str, float]:
                return {"p50_ms": _p(lat, 0.5), "p90_ms": _p(lat, 0.9), "p99_ms": _p(lat, 0.99)}

            out["fixed_rate"] = {
                "rate": 1000,
                "seconds": rate_seconds,
                "in_process": row(inproc),
                "sidecar": row(side),
                "sidecar_uds": row(side_uds),
                "constant_http": row(const),
                "added_p90_ms": round(_p(side, 0.9) - _p(inproc, 0.9), 4),
                "added_p90_ms_uds": round(_p(side_uds, 0.9) - _p(inproc, 0.9), 4),
            }
            say(
                f"sidecar bench fixed 1000/s: in-process p90 {_p(inproc, 0.9):.3f} ms, "
                f"sidecar p90 {_p(side, 0.9):.3f} ms (TCP), {_p(side_uds, 0.9):.3f} ms (Unix socket)"
            )

        # Cyclic GC: the same sidecar with and without gc.freeze() + the raised gen-0 threshold.
        gc_rows: dict[str, list[dict[str, float]]] = {"tuned": [], "untuned": []}
        for tuned in (True, False) * (1 if quick else 2):
            with _servers(redis.url, gc_tuning=tuned, only="sidecar") as (sidecar,):
                await _closed_loop(sidecar.port, sidecar.path, 0.3, CONNECTIONS)
                gc_rows["tuned" if tuned else "untuned"].append(
                    await _closed_loop(sidecar.port, sidecar.path, seconds, CONNECTIONS)
                )
        out["gc"] = {
            name: {
                "rps": summarize([r["rps"] for r in rows]),
                "p99_ms": summarize([r["p99_ms"] for r in rows]),
            }
            for name, rows in gc_rows.items()
        }
        out["sustained"] = await _sustained(redis.url, SUSTAINED_SECONDS[quick], say)
        # The same offered load on the raw ASGI constant: what one uvicorn worker on this machine can do at all.
        out["sustained_ceiling"] = await _sustained(
            redis.url, SUSTAINED_SECONDS[quick], say, server="constant"
        )
        with redis.client() as r:
            for i in range(0, ZIPF_KEYS, 1000):
                pipe = r.pipeline(transaction=False)
                for k in range(i, min(ZIPF_KEYS, i + 1000)):
                    pipe.set(f"mobius:{ZIPF_PREFIX}{k}", b"\x10\x00" + VALUE)  # raw bytes, in the envelope
                pipe.execute()
        out["sustained_zipf"] = await _sustained(redis.url, SUSTAINED_SECONDS[quick], say, zipf=True)
    out["loadavg_end"] = loadavg()
    return out


SUSTAINED_RATE = 5000
SUSTAINED_SECONDS = {False: 60.0, True: 6.0}


def _near_stats(port: int) -> dict[str, Any]:
    """The sidecar's near cache counters (a blocking call between measurements, never during one)."""
    return dict(httpx.get(f"http://127.0.0.1:{port}/v1/stats", timeout=5).json()["near"])


ZIPF_KEYS = 100_000  # 100 B values: about what the default 64 MiB near cache holds, so the tail reads Redis
ZIPF_PREFIX = "bench:z:"


async def _sustained(
    redis_url: str, seconds: float, say: Callable[[str], None], zipf: bool = False, server: str = "sidecar"
) -> dict[str, Any]:
    """A fresh sidecar under a fixed 5000 req/s of hits, from the open-loop generator's own process: one key
    (issue 8) or ``ZIPF_KEYS`` keys with Zipf(1.0) popularity (issue 14)."""
    with _servers(redis_url, only=server) as (sidecar,):
        await _closed_loop(sidecar.port, sidecar.path, 0.5, CONNECTIONS)  # warm-up
        if zipf:  # the same traffic for a while, unmeasured: the near cache fills as it would in production
            await _openloop(_openloop_cmd(sidecar, max(2.0, seconds / 12), zipf, seed=8), seconds)
        started_load = loadavg()
        cmd = _openloop_cmd(sidecar, seconds, zipf)
        near_before = _near_stats(sidecar.port) if server == "sidecar" else {}
        result = await _openloop(cmd, seconds)
        near_after = _near_stats(sidecar.port) if server == "sidecar" else {}
    hits = near_after.get("hits", 0) - near_before.get("hits", 0)
    misses = near_after.get("misses", 0) - near_before.get("misses", 0)
    result["near_hit_ratio"] = round(hits / (hits + misses), 4) if hits + misses else None
    result["keys"] = ZIPF_KEYS if zipf else 1
    result["loadavg_start"], result["loadavg_end"] = started_load, loadavg()
    say(
        f"{server} sustained{' Zipf' if zipf else ''} {SUSTAINED_RATE}/s for {seconds:.0f}s: "
        f"achieved {result['achieved_rate']:.0f}/s, near hit ratio {result['near_hit_ratio']}, "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, p99.9 {result['p999_ms']} ms, "
        f"errors {result['errors']}"
    )
    return result


def _openloop_cmd(sidecar: Server, seconds: float, zipf: bool, seed: int = 7) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.openloop",
        "--port",
        str(sidecar.port),
        "--path",
        f"/v1/cache/{ZIPF_PREFIX}" if zipf else sidecar.path.decode(),
        "--rate",
        str(SUSTAINED_RATE),
        "--seconds",
        str(seconds),
        "--connections",
        str(CONNECTIONS),
    ]
    if zipf:
        cmd += ["--zipf-keys", str(ZIPF_KEYS), "--alpha", "1.0", "--seed", str(seed)]
    return cmd


async def _openloop(cmd: list[str], seconds: float) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"open-loop generator failed: {stderr.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(stdout)
    return result


if __name__ == "__main__":
    import json

    import uvloop

    print(json.dumps(uvloop.run(run("--quick" in sys.argv)), indent=2))
