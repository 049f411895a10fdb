"""The open-loop generator of the sidecar benchmark: a server stall shows in its percentiles (no coordinated
omission), and failures count as errors. Against a tiny real HTTP server in its own process."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from benchmarks import openloop
from tests.servers import free_port

# Answers pipelined GETs in order; /fail gets a 500; the loop freezes once for 300 ms at the 500th request.
SERVER = r"""
import asyncio, sys, time
count = 0
class P(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, data):
        global count
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            count += 1
            if count == 500:
                time.sleep(0.3)
            status = b"500 Internal Server Error" if b" /fail " in head else b"200 OK"
            self.t.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nok")
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""


@pytest.fixture
def stalling_server() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and proc.poll() is None, "test server did not start"
            time.sleep(0.02)
        yield port
    finally:
        proc.kill()
        proc.wait(5)


def test_a_stall_shows_in_the_percentiles(stalling_server: int) -> None:
    out = asyncio.run(openloop.run(stalling_server, "/hit", rate=1000, seconds=1.5, connections=8))
    assert out["sent"] == out["ok"] == 1500 and out["errors"] == 0
    assert out["achieved_rate"] >= 900
    # ~300 requests were due during the 300 ms freeze: a closed-loop client would have sent only 8 of them
    # (one per connection) and its p99 would not see the stall. Here each counts from its scheduled time.
    assert out["p99_ms"] >= 100, out
    assert out["max_ms"] >= 250, out
    assert out["p50_ms"] < out["p99_ms"]


def test_failures_are_errors(stalling_server: int) -> None:
    out = asyncio.run(openloop.run(stalling_server, "/fail", rate=500, seconds=0.4, connections=4))
    assert out["ok"] == 0 and out["errors"] == out["sent"] == 200
    assert out["statuses"] == {"500": 200}
