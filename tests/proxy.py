"""A loopback TCP proxy for fault injection: cut chosen connections, black-hole them, or refuse new ones.

Connections are told apart by what their client sent (e.g. ``b"TRACKING"`` picks the near cache's tracking
connection out of a pool's), so one connection can be cut while the others keep working.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.servers import HOST

_SNIFF = 64 * 1024  # bytes of each client's traffic kept for matching


@dataclass(eq=False)
class _Pipe:
    client: socket.socket
    upstream: socket.socket
    sent: bytearray = field(default_factory=bytearray)
    held: bool = False  # black-holed: bytes are read and dropped in both directions
    delay: float = 0.0  # seconds each chunk from the server waits before it is passed on
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``, one thread per direction."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refuse = False  # new connections are accepted and closed at once
        self._pipes: list[_Pipe] = []
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((HOST, 0))
        self._server.listen(128)
        self.port = int(self._server.getsockname()[1])
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}").start()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            try:
                upstream = socket.create_connection((HOST, self.upstream_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pipe = _Pipe(client, upstream)
            with self._lock:
                self._pipes.append(pipe)
            threading.Thread(target=self._pump, args=(pipe, client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(pipe, upstream, client, False), daemon=True).start()

    def _pump(self, pipe: _Pipe, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client and len(pipe.sent) < _SNIFF:
                    pipe.sent += data[: _SNIFF - len(pipe.sent)]
                if not from_client and pipe.delay:
                    time.sleep(pipe.delay)
                if not pipe.held:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            pipe.close()

    def _matching(self, match: bytes | None) -> Iterator[_Pipe]:
        with self._lock:
            pipes = [p for p in self._pipes if not p.closed]
        return iter([p for p in pipes if match is None or match in p.sent])

    def cut(self, match: bytes | None = None) -> int:
        """Close (both sides) every open connection whose client sent ``match`` (all when None)."""
        n = 0
        for pipe in self._matching(match):
            pipe.close()
            n += 1
        return n

    def hold(self, match: bytes | None = None) -> int:
        """Black-hole matching connections: they stay open but nothing gets through (a silent partition)."""
        n = 0
        for pipe in self._matching(match):
            pipe.held = True
            n += 1
        return n

    def slow_down(self, match: bytes | None, seconds: float, *, others: bool = False) -> int:
        """Delay what the server sends on matching connections (``others``: on all the rest) by ``seconds``."""
        with self._lock:
            pipes = [p for p in self._pipes if not p.closed]
        n = 0
        for pipe in pipes:
            if (match is None or match in pipe.sent) != others:
                pipe.delay = seconds
                n += 1
        return n

    def open_connections(self, match: bytes | None = None) -> int:
        return sum(1 for _ in self._matching(match))

    def close(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._server.close()
        self.cut()


@contextlib.contextmanager
def tcp_proxy(upstream_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()
