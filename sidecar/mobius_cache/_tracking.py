"""Keeping the near cache coherent: Redis server-assisted client-side caching (``CLIENT TRACKING``).

One dedicated RESP3 connection per ``Cache`` runs ``CLIENT TRACKING ON BCAST PREFIX <cache prefix>``: Redis then
pushes an ``invalidate`` message naming every key under the prefix that any client changes — writes, deletes,
``EXPIRE``, expiry, eviction, ``UNLINK`` by an invalidation — and a null one for ``FLUSHALL``/``FLUSHDB``. Each
message drops those keys from the :class:`~._near.NearCache` as soon as its bytes arrive (an asyncio Protocol's
``data_received``, no task hop in between).

Why broadcast mode and not the default mode (measured in docs/benchmarks.md, section "near"): in default mode
Redis remembers, per connection, every key it read, so every pooled connection would have to be tracked and
redirected to this one, and re-pointed whenever it reconnects; broadcast needs nothing from the pool and no
memory in Redis. Its cost is that every instance hears about every write under the prefix, cached or not.

The connection is the cache's own kind (same TLS, auth, database: opened through the pool's connection
factory), switched to RESP3 with ``HELLO 3`` and read with hiredis. Tracking lost means coherence lost: the
connection closing, a heartbeat ``PING`` unanswered within ``timeout``, or Redis refusing the commands (an ACL
without ``client|tracking``) flushes the near cache at once and keeps it off until tracking is back.

:data:`READ_WITH_TTL` is the near cache's read: value and remaining TTL in one atomic round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection

from ._near import NearCache
from ._scripts import Script

_PUSH: type | None = getattr(hiredis, "PushNotification", None)  # hiredis >= 3

__all__ = ["READ_WITH_TTL", "Tracker", "tracking_supported"]

log = logging.getLogger("mobius_cache")

#: KEYS[1] → {value or nil, PTTL}. ``no-writes``: allowed on replicas and under OOM, like a GET.
READ_WITH_TTL = Script(
    "read_with_ttl",
    """#!lua flags=no-writes
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}
""",
)


def tracking_supported() -> bool:
    """RESP3 push messages need hiredis >= 3 (``hiredis.PushNotification``)."""
    return _PUSH is not None


class TrackingRefused(Exception):
    """Redis answered HELLO 3 or CLIENT TRACKING with an error (too old, or an ACL refusal)."""


class _TrackingProtocol(asyncio.Protocol):
    """The tracking connection's reader: push messages feed the near cache, other replies settle commands."""

    def __init__(self, tracker: Tracker) -> None:
        self._tracker = tracker
        self._parser = hiredis.Reader()
        self._replies: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def command(self, *args: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.transport is None or self.lost.done():
            fut.set_exception(ConnectionError("the tracking connection is closed"))
            return fut
        self._replies.append(fut)
        self.transport.write(hiredis.pack_command(args))
        return fut

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        while (message := parser.gets()) is not False:
            if _PUSH is not None and isinstance(message, _PUSH):
                self._tracker._on_push(list(message))  # type: ignore[call-overload]
            elif self._replies:
                fut = self._replies.popleft()
                if not fut.done():
                    fut.set_result(message)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        while self._replies:
            fut = self._replies.popleft()
            if not fut.done():
                fut.set_exception(ConnectionError("the tracking connection was lost"))
        if not self.lost.done():
            self.lost.set_result(None)
        self._tracker._on_lost(exc)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class Tracker:
    """Keeps the tracking connection up and the near cache live exactly while it is.

    ``connect`` makes an unconnected redis-py connection to the cache's Redis. ``heartbeat``: seconds between
    PINGs; ``timeout``: how long one may stay unanswered before tracking counts as lost.
    """

    def __init__(
        self,
        near: NearCache,
        connect: Callable[[], AbstractConnection],
        prefix: str,
        *,
        heartbeat: float = 1.0,
        timeout: float = 2.0,
        retry: float = 0.05,
        retry_cap: float = 2.0,
    ) -> None:
        self.near = near
        self._connect = connect
        self.prefix = prefix
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.retry = retry
        self.retry_cap = retry_cap
        self._proto: _TrackingProtocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._established = asyncio.Event()
        self.error: str | None = None  # why tracking is not established, for stats and /readyz
        # Counters: what Redis told us (the metrics collector reads them).
        self.keys_received = 0
        self.flushes_received = 0
        self.connects = 0
        self.losses = 0

    @property
    def established(self) -> bool:
        return self._established.is_set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mobius-near-tracking")

    async def close(self) -> None:
        self._closed = True
        if self._proto is not None:
            self._proto.abort()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._set_lost()

    def restart(self, prefix: str) -> None:
        """A new cache prefix: drop the connection; the loop reconnects tracking the new prefix."""
        self.prefix = prefix
        if self._proto is not None:
            self._proto.abort()

    async def wait_established(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._established.wait()
        return self.established

    async def sync(self, timeout: float = 1.0) -> bool:
        """Barrier: True once every invalidation caused by a command Redis already answered has been applied.

        Redis queues broadcast invalidations to this connection at the end of the event-loop cycle that made
        the change, before it reads our next command; so when this PING's reply arrives, every invalidation
        of an acknowledged write has arrived (and been applied) before it."""
        proto = self._proto
        if proto is None or not self.established:
            return False
        try:
            async with asyncio.timeout(timeout):
                await proto.command("PING")
        except (TimeoutError, ConnectionError):
            return False
        return True

    # --- push messages and loss (called from the protocol, in the event loop) ---------------------------
    def _on_push(self, message: list[Any]) -> None:
        if not message or message[0] != b"invalidate":
            return
        keys = message[1] if len(message) > 1 else None
        if keys is None:  # FLUSHALL / FLUSHDB: everything is invalid
            self.flushes_received += 1
            self.near.flush()
            return
        self.keys_received += len(keys)
        self.near.invalidate([k.decode("utf-8", "surrogateescape") for k in keys])

    def _on_lost(self, exc: BaseException | None) -> None:
        if self.established and not self._closed:
            self.losses += 1
            log.warning("near cache: tracking connection lost (%s); flushed and off until it is back", exc)
        self._set_lost()

    def _set_lost(self) -> None:
        self._established.clear()
        if self.near.live:
            self.near.set_live(False)

    # --- the connection loop -------------------------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                await self._session()
                attempt = 0  # it was established, then lost: reconnect quickly
            except asyncio.CancelledError:
                raise
            except TrackingRefused as exc:
                self._failed(f"Redis refused client tracking: {exc}")
                attempt = max(attempt, 6)  # a refusal will not clear up within milliseconds
            except Exception as exc:
                self._failed(f"{type(exc).__name__}: {exc}")
            finally:
                self._set_lost()
            attempt += 1
            ceiling = min(self.retry_cap, self.retry * 2 ** (attempt - 1))
            await asyncio.sleep(random.uniform(ceiling / 2, ceiling))

    def _failed(self, error: str) -> None:
        """One log line per distinct reason (a Redis that stays down must not flood the log); retried."""
        if error != self.error:
            log.warning("near cache off until client tracking is established: %s", error)
        self.error = error

    async def _session(self) -> None:
        conn = self._connect()
        await conn.connect()  # redis-py: TLS, AUTH, SELECT, as for every pooled connection
        writer = conn._writer
        if writer is None:
            raise ConnectionError("the tracking connection did not open")
        proto = _TrackingProtocol(self)
        transport: Any = writer.transport
        transport.set_protocol(proto)
        proto.transport = transport
        self._proto = proto
        try:
            await self._enable(proto)
            self.near.set_live(True)
            self._established.set()
            self.error = None
            self.connects += 1
            log.info("near cache on: tracking keys under %r (broadcast mode)", self.prefix)
            await self._heartbeat(proto)
        finally:
            self._proto = None
            self._set_lost()
            proto.abort()
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def _enable(self, proto: _TrackingProtocol) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that arrives as
        # the reply does, and close() would then wait for a loop that never ends.
        async with asyncio.timeout(self.timeout):
            hello = await proto.command("HELLO", "3")
        if isinstance(hello, Exception):
            raise TrackingRefused(f"HELLO 3: {hello} (client tracking needs Redis 6 or later)")
        args = ["CLIENT", "TRACKING", "ON", "BCAST"]
        if self.prefix:
            args += ["PREFIX", self.prefix]
        async with asyncio.timeout(self.timeout):
            reply = await proto.command(*args)
        if isinstance(reply, Exception):
            raise TrackingRefused(f"CLIENT TRACKING: {reply}")

    async def _heartbeat(self, proto: _TrackingProtocol) -> None:
        while not proto.lost.done() and not self._closed:
            await asyncio.wait([proto.lost], timeout=self.heartbeat)
            if proto.lost.done() or self._closed:
                return
            try:
                async with asyncio.timeout(self.timeout):
                    await proto.command("PING")
            except (TimeoutError, ConnectionError):
                log.warning(
                    "near cache: tracking heartbeat unanswered for %.1fs; treating it as lost", self.timeout
                )
                proto.abort()
                return

    def stats(self) -> dict[str, Any]:
        return {
            "mode": "bcast",
            "prefix": self.prefix,
            "established": self.established,
            "error": None if self.established else self.error,
            "keys_received": self.keys_received,
            "flushes_received": self.flushes_received,
            "connects": self.connects,
            "losses": self.losses,
        }


def connection_factory(executor: Any) -> Callable[[], AbstractConnection] | None:
    """How to open one more connection like the executor's pooled ones (None: not possible, e.g. a cluster)."""
    if getattr(executor, "cluster", False):
        return None
    endpoint = getattr(executor, "endpoint", None)
    if endpoint is not None and hasattr(endpoint, "connection"):
        return endpoint.connection  # type: ignore[no-any-return]
    pool = getattr(executor, "pool", None)
    if pool is not None and hasattr(pool, "_factory"):
        return pool._factory  # type: ignore[no-any-return]
    redis_pool = getattr(executor, "_pool", None)
    if redis_pool is not None and hasattr(redis_pool, "make_connection"):
        return redis_pool.make_connection  # type: ignore[no-any-return]
    return None
