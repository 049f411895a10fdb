"""Following a Sentinel-monitored master: ask the Sentinels where it is, connect there, ask again after a failover.

:class:`SentinelLocator` asks every Sentinel at once (``SENTINEL MASTER <name>`` for the flags and the config
epoch, ``SENTINEL GET-MASTER-ADDR-BY-NAME`` for the address it advertises — during a failover, the leader
advertises the promoted replica as soon as it accepted the promotion) and believes the best answer: an address
not flagged down, of the highest config epoch (every failover bumps it, so a Sentinel that has not heard of the
latest one is outvoted). It decides as soon as a majority of the Sentinels has answered, so one hung Sentinel
does not slow every lookup down. The address is cached until a connection to it fails or the node replies
READONLY (it was demoted); the next connection then asks again. Lookups are single-flight: a pool opening 50
connections asks once.

A failover does not always break the connections to the old master: with ``SENTINEL FAILOVER`` (or a
partition) the old master keeps accepting writes until the Sentinels get round to demoting it, and those writes
are lost when it resyncs. So :meth:`SentinelLocator.watch` also listens on every Sentinel's ``+switch-master``
channel (the first to announce wins). On a switch, or whenever a lookup finds another master than the last one,
it tells its listeners — the pool reopens every connection, the circuit breaker probes at once, the event
subscriber resubscribes — instead of waiting for the old master to fail.

:class:`SentinelConnection` is a redis-py ``Connection`` whose socket-opening step (``_connect``) first asks
the locator for the address. Every path that opens a connection goes through that step — redis-py's
``connect()``, ``send_packed_command`` on a fresh connection, our pool's warm-up, a pub/sub client — so there
is one place where the address is chosen, and no default host to fall back to. (redis-py's own
``SentinelManagedConnection`` looks the master up in ``connect()`` only: a pool that connects through another
path silently talks to localhost:6379.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, ConnectionPool, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ._sentinel_url import SentinelURL

__all__ = [
    "MasterNotFoundError",
    "SentinelConnection",
    "SentinelLocator",
    "SentinelNode",
    "SentinelSSLConnection",
    "pick_master",
]

log = logging.getLogger("mobius_cache")
Address = tuple[str, int]
SWITCH_CHANNEL = "+switch-master"
WATCH_PING_S = 5.0  # the watched Sentinel is pinged when silent this long, and dropped when silent twice that


class MasterNotFoundError(redis_errors.ConnectionError):
    """No Sentinel named a healthy master (all unreachable, or a failover is under way)."""


@dataclass(frozen=True)
class SentinelNode:
    """A data node as the Sentinels describe it."""

    host: str
    port: int
    role: str  # "master" or "replica"
    down: bool  # flagged s_down / o_down / disconnected by the Sentinel that was asked
    flags: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def pick_master(answers: Sequence[tuple[Mapping[str, Any], Address | None]]) -> Address | None:
    """The master address to believe among the Sentinels' answers, each ``(SENTINEL MASTER reply, the address
    GET-MASTER-ADDR-BY-NAME advertises)``.

    An advertised address other than the master's own is a promoted replica (a failover that reached the
    point where the new master took over): believe it. Otherwise the master counts only when not flagged
    down. The highest config epoch wins, a promotion winning a tie. None when no Sentinel names a healthy one.
    """
    candidates: list[tuple[int, bool, Address]] = []
    for state, advertised in answers:
        if advertised is None:
            continue
        promoted = advertised != (str(state.get("ip")), int(state.get("port", 0)))
        healthy = state.get("is_master") and not state.get("is_sdown") and not state.get("is_odown")
        if promoted or healthy:
            candidates.append((int(state.get("config-epoch", 0)), promoted, advertised))
    return max(candidates)[2] if candidates else None


def _down(state: Mapping[str, Any]) -> bool:
    return bool(state.get("is_sdown") or state.get("is_odown") or state.get("is_disconnected"))


def _flags(state: Mapping[str, Any]) -> str:
    """The flags as Sentinel writes them ("slave,s_down"); redis-py gives a set over RESP3, a string over RESP2."""
    flags = state.get("flags", "")
    return flags if isinstance(flags, str) else ",".join(sorted(str(f) for f in flags))


class SentinelLocator:
    """Where the master of one Sentinel-monitored service is now.

    ``username``/``password`` authenticate against the Sentinels (not the data nodes); ``timeout`` bounds
    every Sentinel connect and reply; ``ssl`` holds redis-py ``ssl_*`` options when the Sentinels speak TLS.
    """

    def __init__(
        self,
        spec: SentinelURL,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 1.0,
        ssl: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.timeout = timeout
        connection_class = SSLConnection if spec.tls else Connection
        self._clients = [
            Redis(
                connection_pool=ConnectionPool(
                    connection_class=connection_class,
                    host=host,
                    port=port,
                    username=username,
                    password=password,
                    socket_timeout=timeout,
                    socket_connect_timeout=timeout,
                    retry=Retry(NoBackoff(), 0),
                    decode_responses=True,
                    **(ssl or {}),
                ),
            )
            for host, port in spec.sentinels
        ]
        self._address: Address | None = None
        self._last: Address | None = None  # the last master handed out (survives invalidate())
        self._lookup: asyncio.Task[tuple[Address, int]] | None = None
        self._listeners: list[Callable[[Address], None]] = []
        self._watchers: list[asyncio.Task[None]] = []
        self.lookups = 0  # how many times the Sentinels were asked (tests and health read it)
        self.switches = 0  # how many times the master changed under us

    @property
    def name(self) -> str:
        return self.spec.master_name

    @property
    def current(self) -> Address | None:
        """The cached master address (None until looked up, and after it failed)."""
        return self._address

    async def master_address(self) -> Address:
        """The master's address: the cached one, or one asked of the Sentinels now (single-flight)."""
        if self._address is not None:
            return self._address
        if self._lookup is None or self._lookup.done():
            self._lookup = asyncio.ensure_future(self._discover())
        address, _ = await asyncio.shield(self._lookup)
        return address

    def on_switch(self, callback: Callable[[Address], None]) -> None:
        """Call ``callback(new_address)`` whenever the master changes (see the module docstring)."""
        self._listeners.append(callback)

    def _found(self, address: Address) -> None:
        self._address = address
        if self._last is not None and address != self._last:
            self.switches += 1
            log.warning("Redis master of %r moved from %s:%s to %s:%s", self.name, *self._last, *address)
            for callback in list(self._listeners):
                try:
                    callback(address)
                except Exception:  # pragma: no cover - a listener's bug must not stop the others
                    log.exception("a master-switch listener failed")
        self._last = address

    def invalidate(self, address: Address | None = None) -> None:
        """Forget the master (when ``address`` is given: only if it is still the one cached), so the next
        connection asks the Sentinels again. Called when a connection to it failed or it replied READONLY."""
        if address is None or address == self._address:
            if self._address is not None:
                log.info(
                    "Redis master %s:%s of %r is gone; asking the Sentinels again", *self._address, self.name
                )
            self._address = None

    async def _discover(self) -> tuple[Address, int]:
        """Ask every Sentinel; decide once a majority has answered and one of them names a healthy master."""
        self.lookups += 1
        tasks = [asyncio.ensure_future(self._ask(c)) for c in self._clients]
        index = {task: i for i, task in enumerate(tasks)}
        answers: dict[int, tuple[Mapping[str, Any], Address | None]] = {}  # Sentinel index → its answer
        errors: list[str] = []
        majority = len(tasks) // 2 + 1
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    exc = task.exception()
                    if exc is None:
                        answers[index[task]] = task.result()
                    else:
                        host, port = self.spec.sentinels[index[task]]
                        errors.append(f"{host}:{port}: {exc or type(exc).__name__}")
                if len(answers) + len(errors) >= majority and pick_master(list(answers.values())):
                    break
        finally:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task
        address = pick_master(list(answers.values()))
        if address is None:
            seen = "; ".join(errors) if errors else "every Sentinel flags it down (failover under way?)"
            raise MasterNotFoundError(f"no healthy master {self.name!r} known to the Sentinels: {seen}")
        source = next(i for i, answer in answers.items() if answer[1] == address)
        self._found(address)
        return address, source

    async def _ask(self, client: Redis) -> tuple[Mapping[str, Any], Address | None]:
        """One Sentinel's view, in one round trip: its master state and the address it advertises."""
        async with client.pipeline(transaction=False) as pipe:
            pipe.sentinel_master(self.name)
            pipe.sentinel_get_master_addr_by_name(self.name)
            state, advertised = await pipe.execute()
        if not isinstance(state, Mapping):  # pragma: no cover - redis-py parses SENTINEL MASTER into a dict
            raise redis_errors.ResponseError(f"unexpected SENTINEL MASTER reply: {state!r}")
        address = (str(advertised[0]), int(advertised[1])) if advertised else None
        return state, address

    async def topology(self) -> list[SentinelNode]:
        """The master and its replicas, as the Sentinel that named the master sees them (asked afresh)."""
        address, source = await self._discover()
        replicas = await self._clients[source].sentinel_slaves(self.name)
        nodes = [SentinelNode(address[0], address[1], "master", False, "master")]
        for state in replicas:
            nodes.append(
                SentinelNode(str(state["ip"]), int(state["port"]), "replica", _down(state), _flags(state))
            )
        return nodes

    def watch(self) -> None:
        """Start listening for ``+switch-master`` on every Sentinel (in the background, until :meth:`close`)."""
        if not self._watchers:
            self._watchers = [asyncio.ensure_future(self._watch(i)) for i in range(len(self._clients))]

    async def _watch(self, i: int) -> None:
        """Listen on Sentinel ``i``, resubscribing when it fails or falls silent (pinged when quiet); after
        every (re)subscription, look the master up once, so a switch missed meanwhile is caught."""
        client = self._clients[i]
        first = True
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(SWITCH_CHANNEL)
                with contextlib.suppress(redis_errors.RedisError):  # the cached answer on the first round
                    await (self.master_address() if first else self._discover())
                first = False
                heard = time.monotonic()
                pinged = False
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    now = time.monotonic()
                    if message is not None:
                        heard, pinged = now, False
                        self._on_message(message)
                    elif now - heard > 2 * WATCH_PING_S:
                        raise redis_errors.TimeoutError("the Sentinel fell silent")
                    elif now - heard > WATCH_PING_S and not pinged:
                        await pubsub.ping()
                        pinged = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("watching Sentinel %s:%s ended (%s); retrying", *self.spec.sentinels[i], exc)
                await asyncio.sleep(min(1.0, self.timeout))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _on_message(self, message: Mapping[str, Any]) -> None:
        """``+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>``."""
        if message.get("type") != "message":
            return
        parts = str(message.get("data", "")).split()
        if len(parts) == 5 and parts[0] == self.name and parts[4].isdigit():
            self._found((parts[3], int(parts[4])))

    async def close(self) -> None:
        for task in (self._lookup, *self._watchers):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await asyncio.gather(*(c.aclose() for c in self._clients), return_exceptions=True)


class SentinelConnection(Connection):
    """A connection to whichever node the Sentinels name as master when it (re)connects."""

    def __init__(self, *, locator: SentinelLocator, **kwargs: Any) -> None:
        self.locator = locator
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        super().__init__(host="", port=0, **kwargs)

    async def _connect(self) -> None:
        self.host, self.port = await self.locator.master_address()
        try:
            await super()._connect()
        except BaseException:
            self.locator.invalidate((self.host, self.port))
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        """redis-py's own read path (pub/sub, the instrumented executor): a READONLY reply means this node was
        demoted, so drop the connection and ask the Sentinels again on the next one."""
        try:
            return await super().read_response(*args, **kwargs)
        except redis_errors.ReadOnlyError:
            self.locator.invalidate((self.host, self.port))
            await self.disconnect()
            raise

    def repr_pieces(self) -> list[tuple[str, Any]]:
        return [("service", self.locator.name), *super().repr_pieces()]


class SentinelSSLConnection(SentinelConnection, SSLConnection):
    """:class:`SentinelConnection` over TLS (``rediss+sentinel://``)."""
