"""What the key-group scan costs Redis: ``python -m benchmarks.keygroups [--keys 1000000] [--batch-sizes ...]``.

The chart's key-group exporter (redis_exporter ``-check-key-groups``, configured from the rendered chart) scans a
cache-shaped keyspace (tests/dashboards/keyspace.py) while an open-loop probe in its own process sends GETs at a
fixed rate over a few connections and times each from the moment it was due, so a GET that waited behind a
scan step shows its wait (no coordinated omission). Per batch size it reports the scan's duration, the Redis
time per scan step (EVALSHA in INFO commandstats) and per scan, and the GET latency percentiles outside and
during the scans. It prints a Markdown table and writes the raw numbers as JSON (``--out``).

``python -m benchmarks.keygroups --probe PORT RATE SECONDS`` (the keys to GET as JSON on stdin, samples as JSON
on stdout) is the probe itself, started by the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hiredis
import redis
import uvloop

from tests.dashboards.keygroups import chart_env, exporter, helm_missing
from tests.dashboards.keyspace import fill
from tests.servers import HOST, RedisServer, free_port, wait_for_port

from .common import Progress, loadavg, percentile

PROBE_CONNECTIONS = 4


# --- the probe (its own process) --------------------------------------------------------------------------------
class _Probe(asyncio.Protocol):
    """One connection: GETs written on schedule, replies matched in order (RESP pipelining)."""

    def __init__(self, samples: list[tuple[float, float]]) -> None:
        self.samples = samples
        self.reader = hiredis.Reader()
        self.due: collections.deque[float] = collections.deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, command: bytes, due: float) -> None:
        assert self.transport is not None
        self.due.append(due)
        self.transport.write(command)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.reader.feed(data)
        while self.reader.gets() is not False:
            due = self.due.popleft()
            self.samples.append((due, now - due))


async def _probe(
    port: int, rate: float, seconds: float, keys: list[str], samples: list[tuple[float, float]]
) -> None:
    """Send ``rate`` GETs a second for ``seconds`` or until SIGTERM; (due time, latency) pairs go to
    ``samples`` as the replies come."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    conns = [
        (await loop.create_connection(lambda: _Probe(samples), HOST, port))[1]
        for _ in range(PROBE_CONNECTIONS)
    ]
    commands = [
        b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(k.encode()), k.encode())
        for k in random.sample(keys, len(keys))
    ]
    start, total = time.monotonic(), int(rate * seconds)
    for i in range(total):
        if stop.is_set():
            total = i
            break
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        conns[i % len(conns)].send(commands[i % len(commands)], due)
    deadline = time.monotonic() + 10
    while len(samples) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


@dataclass
class Probe:
    """The probe as a child process: GETs of ``keys`` at ``rate`` until stopped."""

    proc: subprocess.Popen[bytes]
    out: Path

    @classmethod
    def start(cls, port: int, rate: float, keys: list[str], workdir: Path) -> Probe:
        (workdir / "probe-keys.json").write_text(json.dumps(keys))
        out = workdir / "probe.json"
        with (workdir / "probe-keys.json").open("rb") as stdin, out.open("wb") as stdout:
            args = [sys.executable, "-m", "benchmarks.keygroups", "--probe", str(port), str(rate), "3600"]
            return cls(subprocess.Popen(args, stdin=stdin, stdout=stdout), out)

    def stop(self) -> list[tuple[float, float]]:
        """(due time, latency) of every GET: it stops sending, collects the replies in flight, writes them."""
        self.proc.terminate()
        self.proc.wait(60)
        samples: list[tuple[float, float]] = json.loads(self.out.read_text())
        return samples


# --- the measurement --------------------------------------------------------------------------------------------
def _stats(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "p999_ms": percentile(ordered, 0.999) * 1000,
        "max_ms": ordered[-1] * 1000 if ordered else float("nan"),
    }


def _scrape(port: int) -> tuple[float, float, str]:
    started = time.monotonic()
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=600) as response:
        body = response.read().decode()
    return started, time.monotonic(), body


def _evalsha(client: redis.Redis) -> tuple[int, int]:
    """EVALSHA calls (the exporter's scan steps) and the microseconds Redis spent in them, so far."""
    stats = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(stats["calls"]), int(stats["usec"])


@dataclass
class Window:
    """A span of the run: a scan by one batch size's exporter, or the quiet time before it."""

    batch: int
    scan: bool
    start: float
    end: float


def measure(
    server: RedisServer, keys: list[str], batch_sizes: list[int], rate: float, rounds: int, workdir: Path
) -> dict[int, dict[str, Any]]:
    """Under one GET probe, ``rounds`` times for each batch size in turn: 2 s quiet, then one scan. Quiet and
    scan spans are interleaved so that the machine's changing load falls on both alike."""
    ports = {batch: free_port() for batch in batch_sizes}
    procs = [
        exporter(server.port, port, workdir / f"exporter-{batch}.log", chart_env(), batch_size=batch).start()
        for batch, port in ports.items()
    ]
    client = server.client()
    try:
        for port in ports.values():
            wait_for_port(port)
            _scrape(port)  # loads the script (one EVAL) and warms the exporter up; not measured
        probe = Probe.start(server.port, rate, keys, workdir)
        windows: list[Window] = []
        busy: dict[int, list[float]] = {batch: [] for batch in batch_sizes}
        steps: dict[int, list[int]] = {batch: [] for batch in batch_sizes}
        reported: dict[int, list[float]] = {batch: [] for batch in batch_sizes}
        time.sleep(1.0)
        for _ in range(rounds):
            for batch, port in ports.items():
                quiet_from = time.monotonic()
                time.sleep(2.0)
                calls, usec = _evalsha(client)
                start, end, body = _scrape(port)
                calls_after, usec_after = _evalsha(client)
                busy[batch].append((usec_after - usec) / 1e6)
                steps[batch].append(calls_after - calls)
                windows += [Window(batch, False, quiet_from, start), Window(batch, True, start, end)]
                for line in body.splitlines():
                    if line.startswith("redis_last_key_groups_scrape_duration_milliseconds"):
                        reported[batch].append(float(line.split()[-1]) / 1000)
        samples = probe.stop()
    finally:
        client.close()
        for proc in procs:
            proc.stop()
    out = {}
    for batch in batch_sizes:
        spans = [w for w in windows if w.batch == batch]
        quiet = [lat for due, lat in samples if any(w.start <= due < w.end for w in spans if not w.scan)]
        during = [lat for due, lat in samples if any(w.start <= due < w.end for w in spans if w.scan)]
        scans = sorted(w.end - w.start for w in spans if w.scan)
        out[batch] = {
            "batch_size": batch,
            "scan_s": statistics.median(scans),
            "scan_s_all": scans,
            "exporter_reported_s": reported[batch],
            "redis_busy_s_per_scan": statistics.median(busy[batch]),
            "steps_per_scan": statistics.median(steps[batch]),
            "step_ms": sum(busy[batch]) / sum(steps[batch]) * 1000,
            "get_quiet": _stats(quiet),
            "get_during_scan": _stats(during),
        }
    return out


def run(keys: int, batch_sizes: list[int], rate: float, rounds: int, progress: Progress) -> dict[str, Any]:
    reason = helm_missing()
    if reason:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory(prefix="kgbench-") as tmp:
        workdir = Path(tmp)
        server = RedisServer(maxmemory="0", policy="noeviction", workdir=workdir).start()
        try:
            client = server.client()
            started = time.monotonic()
            written = fill(server.port, keys)
            progress(f"filled {client.dbsize()} keys in {time.monotonic() - started:.1f}s")
            memory = client.info("memory")["used_memory"]
            # GET targets: string keys from all over the keyspace (the indexes are sorted sets).
            found = [k.decode() if isinstance(k, bytes) else k for k in client.scan(0, count=20000)[1]]
            targets = [k for k in found if "~" not in k]
            client.close()
            load_before = loadavg()
            results = measure(server, targets, batch_sizes, rate, rounds, workdir)
        finally:
            server.close()
    for r in results.values():
        progress(
            f"batch {r['batch_size']}: scan {r['scan_s']:.2f}s, step {r['step_ms']:.2f} ms, GET p99 "
            f"{r['get_quiet']['p99_ms']:.2f} ms quiet, {r['get_during_scan']['p99_ms']:.2f} ms during a scan"
        )
    return {
        "keys": sum(w.keys for w in written.values()),
        "used_memory": memory,
        "rate": rate,
        "probe_connections": PROBE_CONNECTIONS,
        "rounds": rounds,
        "loadavg": [load_before, loadavg()],
        "chart_env": chart_env(),
        "results": list(results.values()),
    }


def table(data: dict[str, Any]) -> str:
    lines = [
        f"{data['keys']:,} keys ({data['used_memory'] / 2**20:.0f} MiB), GETs at {data['rate']:.0f}/s over "
        f"{data['probe_connections']} connections (open loop), {data['rounds']} scans per batch size "
        f"interleaved with 2 s quiet spans, load average {data['loadavg'][0]} before, {data['loadavg'][1]} after:",
        "",
        "| batch size | scan | Redis busy per scan | per step | GET p50 / p99 / max, no scan | "
        "GET p50 / p99 / max, during a scan |",
        "|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        q, d = r["get_quiet"], r["get_during_scan"]
        lines.append(
            f"| {r['batch_size']} | {r['scan_s']:.2f} s | {r['redis_busy_s_per_scan']:.2f} s | "
            f"{r['step_ms']:.2f} ms | {q['p50_ms']:.2f} / {q['p99_ms']:.2f} / {q['max_ms']:.1f} ms | "
            f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f} / {d['max_ms']:.1f} ms |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--probe":
        port, rate, seconds = int(argv[1]), float(argv[2]), float(argv[3])
        keys = json.loads(sys.stdin.read())
        samples: list[tuple[float, float]] = []
        uvloop.run(_probe(port, rate, seconds, keys, samples))
        print(json.dumps(samples))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keygroups", description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 250, 1000, 5000])
    parser.add_argument("--rate", type=float, default=2000.0, help="GETs per second of the probe")
    parser.add_argument("--rounds", type=int, default=3, help="scans per batch size")
    parser.add_argument("--out", type=Path, help="write the raw numbers here as JSON")
    args = parser.parse_args(argv)
    data = run(args.keys, args.batch_sizes, args.rate, args.rounds, Progress())
    if args.out:
        args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
