"""A too-large request body: the client reads its 413 instead of a broken pipe (the sidecar drains the body,
within bounds), and the limit still holds. Raw sockets, so nothing in an HTTP library hides a reset."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.servers import HOST, RedisServer
from tests.sidecar.procs import SidecarProcess

LIMIT = 64 * 1024
DRAIN = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def sidecar(shared_redis: RedisServer) -> Iterator[SidecarProcess]:
    proc = SidecarProcess(
        shared_redis.url,
        args=["--max-body-bytes", str(LIMIT)],
        env={"MOBIUS_MAX_BODY_DRAIN_BYTES": str(DRAIN), "MOBIUS_BODY_DRAIN_TIMEOUT": "1.5"},
    ).start()
    try:
        yield proc
    finally:
        proc.close()


def _connect(sidecar: SidecarProcess) -> socket.socket:
    sock = socket.create_connection((HOST, sidecar.port), timeout=10)
    sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024
    )  # small buffers: the body cannot hide in them
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return status, headers, body[:length]


def _put_head(key: str, extra: str) -> bytes:
    return f"PUT /v1/cache/{key} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\n{extra}\r\n".encode()


@pytest.mark.parametrize("size", [LIMIT + 1, 1024 * 1024, 3 * 1024 * 1024])
def test_a_client_that_sends_its_whole_body_reads_the_413(sidecar: SidecarProcess, size: int) -> None:
    for attempt in range(3):
        with _connect(sidecar) as sock:
            sock.sendall(_put_head(f"big:{size}:{attempt}", f"Content-Length: {size}\r\n"))
            sock.sendall(b"x" * size)  # a broken pipe or a reset here is the bug
            status, headers, body = _read_response(sock)
            assert status == 413 and json.loads(body)["error"] == "body_too_large"
            assert headers.get("connection") != "close"  # drained: the connection stays usable
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            assert _read_response(sock)[0] == 200


def test_a_chunked_body_over_the_limit_is_drained_too(sidecar: SidecarProcess) -> None:
    with _connect(sidecar) as sock:
        sock.sendall(_put_head("big:chunked", "Transfer-Encoding: chunked\r\n"))
        piece = b"y" * 32768
        for _ in range(64):  # 2 MiB
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        status, _headers, body = _read_response(sock)
        assert status == 413 and json.loads(body)["error"] == "body_too_large"


def test_a_body_beyond_the_drain_bound_is_refused_at_once(sidecar: SidecarProcess) -> None:
    """Announcing more than the drain bound gets the 413 (and a close) before any body is sent."""
    with _connect(sidecar) as sock:
        sock.sendall(_put_head("huge", f"Content-Length: {1024**3}\r\n"))
        started = time.monotonic()
        status, headers, _body = _read_response(sock)
        assert status == 413 and headers.get("connection") == "close"
        assert time.monotonic() - started < 1.0


def test_expect_100_continue_gets_the_413_without_sending_the_body(sidecar: SidecarProcess) -> None:
    with _connect(sidecar) as sock:
        sock.sendall(_put_head("expect", f"Content-Length: {LIMIT * 2}\r\nExpect: 100-continue\r\n"))
        status, _headers, _body = _read_response(sock)  # no "100 Continue" first
        assert status == 413


def test_a_stalled_body_is_drained_for_a_bounded_time(sidecar: SidecarProcess) -> None:
    with _connect(sidecar) as sock:
        sock.sendall(_put_head("stalled", f"Content-Length: {LIMIT * 4}\r\n"))
        sock.sendall(b"z" * LIMIT)  # then nothing more
        started = time.monotonic()
        status, headers, _body = _read_response(sock)
        waited = time.monotonic() - started
        assert status == 413 and headers.get("connection") == "close"
        assert 1.0 < waited < 5.0  # MOBIUS_BODY_DRAIN_TIMEOUT=1.5


def test_bodies_under_the_limit_still_work(sidecar: SidecarProcess) -> None:
    with _connect(sidecar) as sock:
        sock.sendall(_put_head("fits", f"Content-Length: {LIMIT}\r\n") + b"v" * LIMIT)
        status, headers, _body = _read_response(sock)
        assert status == 204 and headers["x-cache-ttl"]
