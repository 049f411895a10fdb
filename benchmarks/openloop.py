"""An open-loop HTTP/1.1 load generator: ``python -m benchmarks.openloop --port P --rate 5000 --seconds 60``.

Open loop means request *i* is sent at ``start + i / rate`` whether or not the earlier ones have returned
(HTTP/1.1 pipelining over a few keep-alive connections), and its latency is measured from that scheduled time,
not from when it was actually written. A server (or this generator) that stalls therefore shows its stall in
the percentiles instead of quietly lowering the offered load: no coordinated omission (the wrk2 approach).

It runs in its own process, so the server under test and the generator do not share an event loop; it prints
one JSON object: offered and achieved rate, latency percentiles in ms, errors (non-2xx, broken connections,
requests unanswered ``drain`` seconds after the last one was due) and the completions per second.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from typing import Any, cast

from .common import percentile

__all__ = ["run", "zipf_paths"]


class _Conn(asyncio.Protocol):
    """One keep-alive connection: requests go out on schedule, responses come back in order (pipelining)."""

    def __init__(self, results: _Results) -> None:
        self.results = results
        self.due: collections.deque[float] = (
            collections.deque()
        )  # scheduled send time of each request in flight
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def send(self, request: bytes, due: float) -> None:
        if self.lost or self.transport is None:
            self.results.errors += 1
            return
        self.due.append(due)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        now = time.perf_counter()
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            length = 0
            if at >= 0:
                eol = head.find(b"\r\n", at)  # the last header line has no CRLF of its own here
                length = int(head[at + 15 : eol if eol >= 0 else len(head)])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            status = int(head[9:12])
            del self.buffer[:total]
            self.results.record(now - self.due.popleft(), status, now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.results.errors += len(self.due)  # everything still in flight on it is lost
        self.due.clear()


class _Results:
    def __init__(self, start: float) -> None:
        self.start = start
        self.latencies: list[float] = []
        self.errors = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.per_second: collections.Counter[int] = collections.Counter()
        self.last_done = start

    def record(self, latency: float, status: int, now: float) -> None:
        self.statuses[status] += 1
        if 200 <= status < 300:
            self.latencies.append(latency)
        else:
            self.errors += 1
        self.per_second[int(now - self.start)] += 1
        self.last_done = now


def zipf_paths(prefix: str, keys: int, alpha: float, count: int, seed: int = 7) -> list[bytes]:
    """``count`` request lines for ``prefix + str(key)``, keys drawn from Zipf(``alpha``) over ``keys`` keys."""
    from .traces import zipf_trace

    trace = zipf_trace(keys, count, alpha, seed=seed)
    lines = [f"GET {prefix}{k} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for k in range(keys)]
    return [lines[int(k)] for k in trace]


async def run(
    port: int,
    path: str,
    rate: int,
    seconds: float,
    connections: int = 16,
    drain: float = 5.0,
    requests: list[bytes] | None = None,
) -> dict[str, Any]:
    """Offer ``rate`` GETs of ``path`` per second for ``seconds`` and report what came back. ``requests``: one
    request per send, cycled (e.g. :func:`zipf_paths`), instead of ``path`` every time."""
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    mix = requests or [request]
    start = time.perf_counter() + 0.05
    results = _Results(start)
    conns: list[_Conn] = []
    for _ in range(connections):
        _, conn = await loop.create_connection(lambda: _Conn(results), "127.0.0.1", port)
        conns.append(conn)
    total = int(rate * seconds)
    sent = 0
    max_lag = 0.0
    clock = time.perf_counter
    while sent < total:
        now = clock()
        due_now = min(total, int((now - start) * rate) + 1)  # every request whose time has come
        if due_now > sent:
            max_lag = max(max_lag, now - (start + sent / rate))
        while sent < due_now:
            conns[sent % connections].send(mix[sent % len(mix)], start + sent / rate)
            sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - clock()))
    deadline = clock() + drain
    while any(c.due for c in conns) and clock() < deadline:
        await asyncio.sleep(0.01)
    unanswered = sum(len(c.due) for c in conns)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    done = len(results.latencies)
    lat = sorted(results.latencies)
    return {
        "offered_rate": rate,
        "seconds": seconds,
        "connections": connections,
        "sent": sent,
        "ok": done,
        "errors": results.errors + unanswered,
        "unanswered": unanswered,
        "statuses": {str(k): v for k, v in sorted(results.statuses.items())},
        # Successful completions per second, over the scheduled window or until the last answer if later.
        "achieved_rate": round(done / max(seconds, results.last_done - start), 1),
        "p50_ms": round(percentile(lat, 0.5) * 1000, 3),
        "p90_ms": round(percentile(lat, 0.9) * 1000, 3),
        "p99_ms": round(percentile(lat, 0.99) * 1000, 3),
        "p999_ms": round(percentile(lat, 0.999) * 1000, 3),
        "max_ms": round(lat[-1] * 1000, 3) if lat else None,
        "max_send_lag_ms": round(max_lag * 1000, 3),
        "per_second": [results.per_second.get(s, 0) for s in range(int(seconds) + 1)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.openloop", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="server on 127.0.0.1:PORT")
    parser.add_argument("--path", default="/v1/cache/bench:hit")
    parser.add_argument("--rate", type=int, default=5000, help="requests per second offered")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--zipf-keys", type=int, default=0, help="GET <--path><k> for k drawn from Zipf over this many keys"
    )
    parser.add_argument("--alpha", type=float, default=1.0, help="the Zipf exponent (with --zipf-keys)")
    parser.add_argument("--seed", type=int, default=7, help="of the Zipf sequence (with --zipf-keys)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.connections <= 0 or args.zipf_keys < 0:
        parser.error("--rate, --seconds and --connections must be positive")
    requests = None
    if args.zipf_keys:
        count = int(args.rate * args.seconds) + 1
        requests = zipf_paths(args.path, args.zipf_keys, args.alpha, count, seed=args.seed)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    out = runner(run(args.port, args.path, args.rate, args.seconds, args.connections, requests=requests))
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
