"""Connections to Redis: a lean bounded pool and the command executors.

redis-py stays responsible for what it does well — URL parsing, auth, TLS, unix sockets, the RESP parser
(hiredis), cluster routing — but its asyncio ``BlockingConnectionPool`` acquires under a Condition, a timeout
context and observability hooks on every command, and ``Redis.execute_command`` adds a retry wrapper and two
more awaits. On a 60 µs round trip that is most of the client's CPU. So this module keeps redis-py
``Connection`` objects in a small pool of its own (a deque; waiting only when exhausted, bounded by
``pool_timeout``) and talks to them with ``send_packed_command``/``read_response``.

Implicit pipelining (like ioredis' autopipelining): a command issued while other commands are in flight is
queued; everything queued within one event-loop tick is written as one pipeline on one connection, and the
replies are handed back in order. Errors stay per command (a Redis error reply fails only its own command; a
broken connection fails the commands that were on it). A lone caller (nothing in flight) goes straight to a
connection, so sequential latency is unchanged.

``RedisPyExecutor`` runs every command through ``redis.asyncio.Redis.execute_command`` instead; it is used when
OpenTelemetry's redis instrumentation is active (it patches that method) and as the benchmark baseline.
``ClusterExecutor`` uses redis-py's ``RedisCluster`` (slot routing, MOVED/ASK, failover).

Where connections go is an :class:`Endpoint` (a connection class and its arguments), built once from the URL
by :func:`make_endpoint`. For ``redis+sentinel://`` the class is a :class:`~._sentinel.SentinelConnection`,
which asks the Sentinels for the master whenever it opens a socket. The pool drops its idle connections and
forgets the master when a connection breaks or a node replies READONLY (demoted by a failover), and reopens
every connection (``Pool.reset``) when the Sentinels announce a new master, so the next command goes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    BlockingConnectionPool,
    Connection,
    ConnectionPool,
    SSLConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ._exceptions import PoolExhaustedError
from ._sentinel import SentinelConnection, SentinelLocator, SentinelSSLConnection
from ._sentinel_url import is_sentinel_url, parse_sentinel_url

__all__ = [
    "ClusterExecutor",
    "Endpoint",
    "Executor",
    "LeanExecutor",
    "Pool",
    "RedisPyExecutor",
    "make_endpoint",
    "make_executor",
]

log = logging.getLogger("mobius_cache")

Command = Sequence[Any]
_MAX_BATCH = 512
_HIGH_WATER = 256 * 1024

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:  # hiredis packs a command in C, ~6x faster than redis-py's pure-Python packer
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency, but stay correct without it
    _hiredis_pack = None


def _pack(conn: AbstractConnection, commands: Sequence[Command]) -> bytes:
    if _hiredis_pack is not None:
        try:
            return b"".join([_hiredis_pack(tuple(c)) for c in commands])
        except TypeError:
            pass  # a type hiredis does not pack (e.g. memoryview): let redis-py encode it
    return b"".join(conn.pack_commands(commands))


async def _send(conn: AbstractConnection, data: bytes) -> None:
    """Write a packed command on a connection this task holds exclusively.

    redis-py's ``send_packed_command`` wraps every write in ``asyncio.wait_for``, which creates a task per
    command (Python 3.11). A socket write to Redis almost never blocks, so write directly and only wait
    (bounded by the socket timeout) when the transport's buffer is over its high-water mark. A dead peer
    surfaces on the following read as a ConnectionError.
    """
    writer = conn._writer
    if writer is None or conn._reader is None:
        await conn.send_packed_command(data, False)  # connects (and authenticates) first
        return
    writer.write(data)
    if writer.transport.get_write_buffer_size() > _HIGH_WATER:
        try:
            await asyncio.wait_for(writer.drain(), conn.socket_timeout)
        except TimeoutError:
            raise redis_errors.TimeoutError("Timeout writing to socket") from None


@dataclass(frozen=True)
class Endpoint:
    """How to open a connection to the Redis a cache uses: a redis-py connection class and its arguments.

    The pools open their connections through it, and so does the invalidation-event subscriber (its own
    client), so TLS, unix sockets and Sentinel behave the same everywhere. ``locator`` is set for Sentinel.
    """

    connection_class: type[AbstractConnection]
    kwargs: Mapping[str, Any]
    locator: SentinelLocator | None = None

    def connection(self) -> AbstractConnection:
        return self.connection_class(**self.kwargs)

    def client(self, **overrides: Any) -> Redis:
        """A redis-py client of its own (one small pool), e.g. for pub/sub."""
        kwargs = {**self.kwargs, **overrides}
        return Redis(connection_pool=ConnectionPool(connection_class=self.connection_class, **kwargs))

    def start(self) -> None:
        """With Sentinel: start listening for master switches (needs the running loop)."""
        if self.locator is not None:
            self.locator.watch()

    def forget_master(self, conn: AbstractConnection) -> None:
        """A connection broke or its node was demoted: with Sentinel, ask for the master again."""
        if self.locator is not None:
            self.locator.invalidate((getattr(conn, "host", ""), getattr(conn, "port", 0)))

    async def close(self) -> None:
        if self.locator is not None:
            await self.locator.close()


class Executor(Protocol):
    """What ``Cache`` needs from a connection layer."""

    cluster: bool
    endpoint: Endpoint

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def execute(self, *args: Any) -> Any: ...
    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        """Run commands in one round trip; returns each reply or the exception of that command."""
        ...

    def pool_stats(self) -> dict[str, int]: ...


def _connection_kwargs(
    url: str, password: str | None, socket_timeout: float, connect_timeout: float
) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(parse_url(url))
    kwargs.setdefault("connection_class", Connection)
    if password and not kwargs.get("password"):
        kwargs["password"] = password
    kwargs.update(
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),  # retries are the Cache's, within its budget, counted by its breaker
    )
    return kwargs


def _read_error(conn: AbstractConnection, exc: BaseException) -> BaseException:
    """What redis-py's ``read_response`` would have raised for a timeout or a socket error."""
    where = getattr(conn, "host", None) or getattr(conn, "path", "redis")
    if isinstance(exc, TimeoutError):
        return redis_errors.TimeoutError(f"Timeout reading from {where}")
    if isinstance(exc, OSError):
        return redis_errors.ConnectionError(f"Error while reading from {where}: {exc}")
    return exc


class Pool:
    """A bounded pool of redis-py connections. ``acquire`` is a deque pop unless the pool is exhausted."""

    def __init__(
        self,
        factory: Callable[[], AbstractConnection],
        max_size: int,
        min_size: int,
        timeout: float,
        *,
        on_broken: Callable[[AbstractConnection], None] | None = None,
    ):
        self._make = factory
        self._on_broken = on_broken
        self.generation = 0  # bumped by reset(): connections of an older one are closed on release
        self.max_size = max_size
        self.min_size = min_size
        self.timeout = timeout
        self._idle: deque[AbstractConnection] = deque()
        self._waiters: deque[asyncio.Future[AbstractConnection]] = deque()
        self.in_use = 0
        self._closed = False
        self._tasks: set[asyncio.Future[None]] = set()

    @property
    def size(self) -> int:
        return self.in_use + len(self._idle)

    def _factory(self) -> AbstractConnection:
        conn = self._make()
        conn.mobius_generation = self.generation  # type: ignore[attr-defined]
        return conn

    def reset(self) -> None:
        """Every connection is to be reopened: close the idle ones now, the busy ones when released (e.g. the
        Sentinels named another master while the old one still answers)."""
        self.generation += 1
        self._close_idle()

    def _close_idle(self) -> None:
        stale, self._idle = list(self._idle), deque()
        for idle in stale:
            self._background(_quiet_disconnect(idle))

    async def start(self) -> None:
        """Open ``min_size`` connections now, so the first requests do not pay for connecting. A Redis that is
        down at start-up is logged, not fatal: the cache fails open and the breaker takes over."""
        conns = [self._factory() for _ in range(max(0, self.min_size - self.size))]
        results = await asyncio.gather(*(c.connect() for c in conns), return_exceptions=True)
        for conn, result in zip(conns, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("could not open a Redis connection at start-up: %s", result)
                await conn.disconnect()
            else:
                self._idle.append(conn)

    async def acquire(self) -> AbstractConnection:
        if self._idle:
            self.in_use += 1
            return self._idle.pop()
        if self._closed:
            raise redis_errors.ConnectionError("the cache is closed")
        if self.size < self.max_size:
            self.in_use += 1
            return self._factory()  # connects on first send
        return await self._wait()

    async def _wait(self) -> AbstractConnection:
        fut: asyncio.Future[AbstractConnection] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise PoolExhaustedError(
                f"all {self.max_size} Redis connections stayed busy for {self.timeout}s "
                "(raise redis_max_connections or pool_timeout, or lower the concurrency)"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)

    def release(self, conn: AbstractConnection) -> None:
        if getattr(conn, "mobius_generation", self.generation) != self.generation:
            self.discard(conn)  # opened before a reset(): to a server we no longer use
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)  # in_use unchanged: handed over
                return
        self.in_use -= 1
        if self._closed:
            self._background(_quiet_disconnect(conn))
        else:
            self._idle.append(conn)

    def discard(self, conn: AbstractConnection, exc: BaseException | None = None) -> None:
        """A connection that failed or was interrupted mid-reply: close it, and let a waiter open a new one.

        When it failed because the connection broke — or its server replied READONLY: a master demoted by a
        failover — the idle ones were opened to the same server and are most likely dead (or read-only)
        too: close them all, and tell ``on_broken`` (Sentinel: ask for the master again), so the next
        command — the breaker's probe included — connects afresh instead of failing on a stale socket."""
        self._background(_quiet_disconnect(conn))
        if exc is not None and isinstance(exc, _SERVER_GONE):
            self._close_idle()
            if self._on_broken is not None:
                self._on_broken(conn)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._factory())
                return
        self.in_use -= 1

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stats(self) -> dict[str, int]:
        return {"max": self.max_size, "in_use": self.in_use, "idle": len(self._idle)}

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = list(self._idle), deque()
        await asyncio.gather(*(_quiet_disconnect(c) for c in idle))


#: Errors after which a connection's server is presumed gone (or no longer the master).
_SERVER_GONE = (redis_errors.ConnectionError, redis_errors.ReadOnlyError, ConnectionError, OSError)


async def _quiet_disconnect(conn: AbstractConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.disconnect(nowait=True)


Batch = list[tuple[Command, "asyncio.Future[Any]"]]


class _Coalescing:
    """Implicit pipelining: a lone command runs directly (``_direct``); commands issued while others are in
    flight are queued, and each event-loop tick's queue is run as pipelines of at most ``_MAX_BATCH``
    (``_run_batch``, which settles every command's future, in order)."""

    def __init__(self, autopipeline: bool) -> None:
        self.autopipeline = autopipeline
        self._pending: Batch = []
        self._flush_scheduled = False
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # how many pipelines were sent (tests and benchmarks read it)

    async def _direct(self, args: Command) -> Any:
        raise NotImplementedError

    async def _run_batch(self, batch: Batch) -> None:
        raise NotImplementedError

    async def execute(self, *args: Any) -> Any:
        if not self.autopipeline or (self._inflight == 0 and not self._pending):
            return await self._direct(args)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), _MAX_BATCH):
            task = asyncio.ensure_future(self._run_batch(pending[i : i + _MAX_BATCH]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[Any]] = [loop.create_future() for _ in commands]
        await self._run_batch(list(zip(commands, futs, strict=True)))
        return [f.exception() or f.result() for f in futs]

    async def _finish_batches(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class LeanExecutor(_Coalescing):
    """Standalone Redis through :class:`Pool`, with implicit pipelining of concurrent commands."""

    cluster = False

    def __init__(self, endpoint: Endpoint, pool: Pool, *, autopipeline: bool = True) -> None:
        super().__init__(autopipeline)
        self.endpoint = endpoint
        self.pool = pool

    async def start(self) -> None:
        self.endpoint.start()
        await self.pool.start()

    async def close(self) -> None:
        await self._finish_batches()
        await self.pool.close()
        await self.endpoint.close()

    def pool_stats(self) -> dict[str, int]:
        return self.pool.stats()

    async def _direct(self, args: Command) -> Any:
        self._inflight += 1  # before any await: callers arriving meanwhile must queue behind it
        try:
            conn = await self.pool.acquire()
        except BaseException:
            self._inflight -= 1
            raise
        try:
            await _send(conn, _pack(conn, (args,)))
            # Straight from the parser (hiredis): redis-py's read_response adds a timeout context and several
            # wrappers per reply that cost more than the parsing. Error replies come back as objects.
            async with asyncio.timeout(conn.socket_timeout):
                reply = await conn._parser.read_response()  # type: ignore[attr-defined]
        except BaseException as exc:
            self.pool.discard(conn, exc)
            if isinstance(exc, TimeoutError | OSError):
                raise _read_error(conn, exc) from None
            raise
        else:
            if isinstance(reply, redis_errors.ReadOnlyError):
                self.pool.discard(conn, reply)  # a demoted master: reconnect (to the new one)
                raise reply
            self.pool.release(conn)  # an error reply was read in full too: the connection is fine
            if isinstance(reply, redis_errors.ResponseError):
                raise reply
            return reply
        finally:
            self._inflight -= 1

    async def _run_batch(self, batch: Batch) -> None:
        self._inflight += len(batch)
        self.batches += 1
        try:
            try:
                conn = await self.pool.acquire()
            except Exception as exc:
                _fail(batch, exc)
                return
            done = 0
            demoted: redis_errors.ReadOnlyError | None = None
            try:
                await _send(conn, _pack(conn, [c for c, _ in batch]))
                parser: Any = conn._parser
                async with asyncio.timeout(conn.socket_timeout):  # one timeout for the whole batch
                    for _cmd, fut in batch:
                        reply = await parser.read_response()
                        done += 1
                        if isinstance(reply, redis_errors.ReadOnlyError):
                            demoted = reply
                        if not fut.done():
                            if isinstance(reply, redis_errors.ResponseError):
                                fut.set_exception(reply)
                            else:
                                fut.set_result(reply)
            except BaseException as exc:
                self.pool.discard(conn, exc)
                if isinstance(exc, TimeoutError | OSError):
                    exc = _read_error(conn, exc)
                _fail(
                    batch[done:],
                    exc if isinstance(exc, Exception) else redis_errors.ConnectionError("cancelled"),
                )
                if not isinstance(exc, Exception):
                    raise
            else:
                if demoted is not None:
                    self.pool.discard(conn, demoted)
                else:
                    self.pool.release(conn)
        finally:
            self._inflight -= len(batch)


def _fail(batch: Sequence[tuple[Command, asyncio.Future[Any]]], exc: BaseException) -> None:
    for _cmd, fut in batch:
        if not fut.done():
            fut.set_exception(exc)


class RedisPyExecutor:
    """Every command through ``redis.asyncio.Redis.execute_command`` (instrumentable, the baseline)."""

    cluster = False

    def __init__(self, endpoint: Endpoint, max_size: int, min_size: int, timeout: float) -> None:
        self.endpoint = endpoint
        conn_kwargs = {k: v for k, v in endpoint.kwargs.items() if k != "retry"}
        self._pool = BlockingConnectionPool(
            max_connections=max_size,
            timeout=timeout,
            connection_class=endpoint.connection_class,
            **conn_kwargs,
        )
        self.redis = Redis(connection_pool=self._pool, retry=Retry(NoBackoff(), 0))
        self._min = min_size
        self._tasks: set[asyncio.Future[None]] = set()
        if endpoint.locator is not None:
            endpoint.locator.on_switch(self._on_switch)

    def _on_switch(self, _address: tuple[str, int]) -> None:
        """Another master: close the idle connections (busy ones go when they fail or read READONLY)."""
        task = asyncio.ensure_future(self._pool.disconnect(inuse_connections=False))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self.endpoint.start()
        conns = []
        try:
            for _ in range(self._min):
                conns.append(await self._pool.get_connection())
        except Exception as exc:
            log.warning("could not open a Redis connection at start-up: %s", exc)
        finally:
            for c in conns:
                await self._pool.release(c)

    async def close(self) -> None:
        await self.redis.aclose(close_connection_pool=True)
        await self.endpoint.close()

    async def execute(self, *args: Any) -> Any:
        return await self.redis.execute_command(*args)

    async def execute_many(self, commands: Sequence[Command]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for cmd in commands:
                pipe.execute_command(*cmd)
            return list(await pipe.execute(raise_on_error=False))

    def pool_stats(self) -> dict[str, int]:
        in_use = len(self._pool._in_use_connections)
        return {
            "max": self._pool.max_connections,
            "in_use": in_use,
            "idle": len(self._pool._available_connections),
        }


class ClusterExecutor(_Coalescing):
    """Redis Cluster through redis-py's ``RedisCluster``: slot routing, redirections and failover are its job.
    Multi-key commands are split per slot by the caller (``Cache``), never sent across slots. Implicit
    pipelining goes through redis-py's cluster pipeline, which groups each batch per node and routes every
    command by its slot."""

    cluster = True

    def __init__(self, endpoint: Endpoint, max_size: int, pool_timeout: float, autopipeline: bool) -> None:
        super().__init__(autopipeline)
        self.endpoint = endpoint  # the seed node (the event subscriber's: PUBLISH reaches every node)
        kwargs = endpoint.kwargs
        # redis-py's cluster client raises (or, with pipelines, trips over itself) when more commands are
        # in flight than connections; a semaphore makes callers wait instead, bounded by pool_timeout.
        self._slots = asyncio.Semaphore(max_size)
        self._pool_timeout = pool_timeout
        self._max = max_size
        host, port = kwargs.get("host", "127.0.0.1"), int(kwargs.get("port", 6379))
        extra = {
            k: v
            for k, v in kwargs.items()
            if k in ("password", "username", "socket_timeout", "socket_connect_timeout")
            or k.startswith("ssl_")
        }
        if issubclass(endpoint.connection_class, SSLConnection):  # rediss+cluster://, ?ssl_ca_certs= included
            extra["ssl"] = True
        self.redis = RedisCluster(
            startup_nodes=[ClusterNode(host, port)],
            max_connections=max_size,
            retry=Retry(NoBackoff(), 1),  # one retry lets redis-py follow a failover
            require_full_coverage=False,
            **extra,
        )

    async def start(self) -> None:
        try:
            await self.redis.initialize()
        except Exception as exc:
            log.warning("could not reach the Redis Cluster at start-up: %s", exc)

    async def close(self) -> None:
        await self._finish_batches()
        await self.redis.aclose()

    async def _acquire(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # does not suspend while a slot is free
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self._pool_timeout)
        except TimeoutError:
            raise PoolExhaustedError(
                f"all {self._max} cluster command slots stayed busy for {self._pool_timeout}s"
            ) from None

    async def _direct(self, args: Command) -> Any:
        self._inflight += 1  # before any await: callers arriving meanwhile must queue behind it
        try:
            await self._acquire()
            try:
                return await self.redis.execute_command(*args)
            finally:
                self._slots.release()
        finally:
            self._inflight -= 1

    async def _run_batch(self, batch: Batch) -> None:
        self._inflight += len(batch)
        self.batches += 1
        try:
            await self._acquire()
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for cmd, _fut in batch:
                        pipe.execute_command(*cmd)
                    replies = await pipe.execute(raise_on_error=False)
            finally:
                self._slots.release()
        except Exception as exc:
            _fail(batch, exc)
            return
        finally:
            self._inflight -= len(batch)
        for (_cmd, fut), reply in zip(batch, replies, strict=True):
            if not fut.done():
                if isinstance(reply, Exception):
                    fut.set_exception(reply)
                else:
                    fut.set_result(reply)

    def pool_stats(self) -> dict[str, int]:
        in_use = idle = total_max = 0
        for node in self.redis.get_nodes():
            in_use += len(getattr(node, "_connections", [])) - len(getattr(node, "_free", []))
            idle += len(getattr(node, "_free", []))
            total_max += getattr(node, "max_connections", 0)
        return {"max": total_max, "in_use": in_use, "idle": idle}


def make_endpoint(
    url: str,
    *,
    password: str | None,
    socket_timeout: float,
    connect_timeout: float,
    sentinel_username: str | None = None,
    sentinel_password: str | None = None,
) -> Endpoint:
    """Where connections go, from the URL: ``redis://``, ``rediss://``, ``unix://``, ``redis[s]+cluster://``
    (the seed node) or ``redis[s]+sentinel://`` (whichever node the Sentinels name as master)."""
    if not is_sentinel_url(url):
        kwargs = _connection_kwargs(
            url.replace("+cluster://", "://"), password, socket_timeout, connect_timeout
        )
        return Endpoint(kwargs.pop("connection_class"), kwargs)
    spec = parse_sentinel_url(url)
    kwargs = _connection_kwargs(spec.data_node_url(), password, socket_timeout, connect_timeout)
    kwargs.pop("connection_class")
    for placeholder in ("host", "port"):
        kwargs.pop(placeholder, None)
    locator = SentinelLocator(
        spec,
        username=sentinel_username,
        password=sentinel_password,
        timeout=connect_timeout,
        ssl={k: v for k, v in kwargs.items() if k.startswith("ssl_")},
    )
    kwargs["locator"] = locator
    connection_class = SentinelSSLConnection if spec.tls else SentinelConnection
    return Endpoint(connection_class, kwargs, locator)


def make_executor(
    url: str,
    *,
    password: str | None,
    max_size: int,
    min_size: int,
    pool_timeout: float,
    socket_timeout: float,
    connect_timeout: float,
    autopipeline: bool,
    sentinel_username: str | None = None,
    sentinel_password: str | None = None,
) -> Executor:
    endpoint = make_endpoint(
        url,
        password=password,
        socket_timeout=socket_timeout,
        connect_timeout=connect_timeout,
        sentinel_username=sentinel_username,
        sentinel_password=sentinel_password,
    )
    if "+cluster://" in url:
        return ClusterExecutor(endpoint, max_size, pool_timeout, autopipeline)
    if _redis_is_instrumented():
        log.info("redis-py is instrumented (tracing): commands go through Redis.execute_command")
        return RedisPyExecutor(endpoint, max_size, min_size, pool_timeout)
    pool = Pool(endpoint.connection, max_size, min_size, pool_timeout, on_broken=endpoint.forget_master)
    if endpoint.locator is not None:
        endpoint.locator.on_switch(lambda _address: pool.reset())
    return LeanExecutor(endpoint, pool, autopipeline=autopipeline)


def _redis_is_instrumented() -> bool:
    return hasattr(Redis.execute_command, "__wrapped__")
