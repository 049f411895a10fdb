"""``Cache``: the async cache client every other part of mobius-cache stands on.

Reads fail open (a miss) when Redis cannot answer; writes and invalidations raise ``CacheUnavailableError``,
and an invalidation that could not reach Redis is queued and replayed when it returns (see ``_invalidation``).
All Redis errors pass through :meth:`Cache._exec`, which retries connection errors within a budget, feeds the
circuit breaker (with lost connections and the refusals that mean "this Redis cannot serve us"), translates
the error once and reports refusals (see ``_refusals``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry
from redis import exceptions as redis_errors

from ._breaker import CLOSED, OPEN, CircuitBreaker
from ._config import CacheConfig
from ._envelope import (
    Entry,
    decode,
    decode_entry,
    decode_entry_kind,
    decode_foreign,
    decode_payload,
    encode,
    encode_raw,
    etag_of,
)
from ._exceptions import (
    CONNECTION_ERRORS,
    CacheConflictError,
    CacheError,
    CacheUnavailableError,
    CircuitOpenError,
    InvalidInputError,
    PoolExhaustedError,
    RedisRefusedError,
    RedisScriptMissingError,
    SerializationError,
    translate,
)
from ._invalidation import Invalidator
from ._keys import KeySpace, validate_key
from ._metrics import Metrics
from ._near import NearCache
from ._pool import Executor, make_executor
from ._refusals import RefusalLog
from ._scripts import INCR_TTL, INDEX_ADD, INDEX_FORGET, SCRIPT_NAMES, SET_INDEXED, Script
from ._tracking import READ_WITH_TTL, Tracker, connection_factory, tracking_supported

__all__ = ["MISS", "Cache", "SetResult"]

log = logging.getLogger("mobius_cache")
T = TypeVar("T")


class _Miss:
    """The type of :data:`MISS`. Falsy, a singleton, and never equal to a cached value (``None`` included)."""

    __slots__ = ()
    _instance: _Miss | None = None

    def __new__(cls) -> _Miss:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "MISS"

    def __reduce__(self) -> str:
        return "MISS"


#: Returned by reads when the key is absent (or Redis could not answer). A cached ``None`` is a hit.
MISS: Final = _Miss()


@dataclass(frozen=True, slots=True)
class SetResult:
    stored: bool
    ttl: int
    etag: str


class Cache:
    """A pooled async Redis cache. Use ``async with Cache(config) as cache:`` or ``await cache.start()``.

    ``registry``: the prometheus-client registry the metrics are exported on (default: the global one).
    """

    def __init__(
        self, config: CacheConfig | None = None, *, registry: CollectorRegistry | None = None
    ) -> None:
        self._config = config or CacheConfig()
        self._ks = KeySpace(self._config)
        self._registry = registry
        self.instance_id = uuid.uuid4().hex[:12]
        self.metrics = Metrics(self._config.slow_op_threshold_ms / 1000, gauges=self._gauges)
        self._breaker = CircuitBreaker(
            self._config.breaker_failure_threshold,
            self._config.breaker_reset_timeout,
            on_change=self._on_circuit_change,
        )
        self._executor: Executor = make_executor(
            self._config.redis_url,
            password=self._config.redis_password,
            max_size=self._config.redis_max_connections,
            min_size=self._config.redis_min_connections,
            pool_timeout=self._config.pool_timeout,
            socket_timeout=self._config.redis_socket_timeout,
            connect_timeout=self._config.redis_socket_connect_timeout,
            autopipeline=self._config.autopipeline,
            sentinel_username=self._config.redis_sentinel_username,
            sentinel_password=self._config.redis_sentinel_password,
        )
        locator = self._executor.endpoint.locator
        if locator is not None:  # a new master is there: probe it now rather than after the open window
            locator.on_switch(lambda _address: self._breaker.probe_now())
        self._loads: dict[str, asyncio.Future[Any]] = {}
        self._redis_info: dict[str, Any] = {}
        self.refusals = RefusalLog()
        self.invalidator = Invalidator(self)
        self._started = False
        self._near: NearCache | None = None
        self._tracker: Tracker | None = None
        self.near_off_reason: str | None = None
        self._setup_near()
        self.metrics.near = self.near_stats

    def _setup_near(self) -> None:
        """The near cache exists only where it can be kept coherent (see ``_tracking``)."""
        cfg = self._config
        factory = connection_factory(self._executor)
        if not cfg.near_cache:
            self.near_off_reason = "turned off (MOBIUS_NEAR_CACHE=off)"
        elif cfg.cluster:
            self.near_off_reason = "off on Redis Cluster: tracking per node is not implemented"
        elif not tracking_supported() or factory is None:
            self.near_off_reason = "off: needs hiredis >= 3 for RESP3 push messages"
        else:
            self._near = NearCache(cfg.near_cache_bytes)
            self._tracker = Tracker(self._near, factory, self._ks.prefix)
            return
        log.info("near cache %s", self.near_off_reason)

    # --- life cycle ---------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, *, registry: CollectorRegistry | None = None, **overrides: Any) -> Cache:
        """A cache configured from ``MOBIUS_*`` environment variables (``overrides`` win)."""
        return cls(CacheConfig(**overrides), registry=registry)

    async def start(self) -> Cache:
        if not self._started:
            self._started = True
            self.metrics.register(self._registry)
            await self._executor.start()
            if self._tracker is not None:
                self._tracker.start()
        return self

    async def close(self) -> None:
        if self._started:
            self._started = False
            if self._tracker is not None:
                await self._tracker.close()
            await self.invalidator.close()
            self.metrics.unregister(self._registry)
            await self._executor.close()

    async def __aenter__(self) -> Cache:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def config(self) -> CacheConfig:
        return self._config

    @property
    def keys(self) -> KeySpace:
        return self._ks

    @property
    def executor(self) -> Executor:
        return self._executor

    def update_config(self, config: CacheConfig) -> None:
        """Apply a new policy (TTLs, strategies, prefix, limits) without reconnecting. Connection settings
        (URL, pool size, timeouts) are fixed for the life of the cache: a change there needs a new ``Cache``."""
        fixed = (
            "redis_url",
            "redis_password",
            "redis_sentinel_username",
            "redis_sentinel_password",
            "redis_max_connections",
            "redis_socket_timeout",
            "redis_socket_connect_timeout",
        )
        changed = [f for f in fixed if getattr(config, f) != getattr(self._config, f)]
        if changed:
            log.warning("ignoring changes to %s: they need a restart", ", ".join(changed))
            config = config.model_copy(update={f: getattr(self._config, f) for f in changed})
        prefix_changed = config.cache_prefix != self._config.cache_prefix
        self._config = config
        self._ks = KeySpace(config)
        if self._near is not None:
            # Strategies (near or not, namespaces' labels) may have changed: start the near cache afresh.
            self._near.flush()
            if prefix_changed and self._tracker is not None:
                self._tracker.restart(config.cache_prefix)
        self.metrics.slow_threshold_s = config.slow_op_threshold_ms / 1000
        self._breaker.threshold = config.breaker_failure_threshold
        self._breaker.reset_timeout = config.breaker_reset_timeout

    # --- the one place that talks to Redis ---------------------------------------------------------------
    async def _exec(self, *args: Any) -> Any:
        """Run one command: breaker check, bounded retries of connection errors with jittered exponential
        backoff, error translation. Timeouts are not retried (the command may have run; a retry would double
        the wait). Redis error replies are not connection failures and do not trip the breaker, except the
        refusals that say this Redis cannot serve us now (LOADING, BUSY, READONLY, MASTERDOWN)."""
        breaker = self._breaker
        if not breaker.closed and not breaker.allow():
            await asyncio.sleep(0)  # a loop that only hits an open circuit must still let other tasks run
            raise CircuitOpenError(breaker.retry_after())
        attempt = 0
        while True:
            try:
                reply = await self._executor.execute(*args)
            except PoolExhaustedError:
                raise
            except CONNECTION_ERRORS as exc:
                err = translate(exc, _command_name(args))
                if isinstance(err, PoolExhaustedError):
                    raise err from exc
                breaker.record_failure()
                retryable = not isinstance(exc, TimeoutError | redis_errors.TimeoutError)
                if not retryable or attempt >= self._config.retry_attempts or not breaker.allow():
                    self.refusals.note(err)
                    raise err from exc
                attempt += 1
                await asyncio.sleep(self._backoff(attempt))
            except redis_errors.ResponseError as exc:  # Redis answered: the connection is fine
                err = translate(exc, _command_name(args))
                self._account(err)
                raise err from exc
            else:
                if breaker.failures:
                    breaker.record_success()
                return reply

    async def _exec_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Several commands in one round trip. Per-command Redis errors come back as exception objects."""
        breaker = self._breaker
        if not breaker.closed and not breaker.allow():
            await asyncio.sleep(0)
            raise CircuitOpenError(breaker.retry_after())
        try:
            replies = await self._executor.execute_many(commands)
        except PoolExhaustedError:
            raise
        except CONNECTION_ERRORS as exc:
            breaker.record_failure()
            raise translate(exc) from exc
        failed = next((i for i, r in enumerate(replies) if isinstance(r, CONNECTION_ERRORS)), None)
        if failed is not None:
            breaker.record_failure()
            err = translate(replies[failed], _command_name(commands[failed]))
            self.refusals.note(err)
            raise err from replies[failed]
        refused = [
            translate(r, _command_name(c))
            for c, r in zip(commands, replies, strict=True)
            if isinstance(r, redis_errors.ResponseError)
        ]
        if not refused:
            breaker.record_success()
        for err in refused:
            self._account(err)
        return replies

    def _account(self, err: CacheError) -> None:
        """Redis answered with an error: the breaker hears a failure only when it means this Redis cannot
        serve us; a refusal is reported either way."""
        if isinstance(err, RedisRefusedError) and err.outage:
            self._breaker.record_failure()
        else:
            self._breaker.record_success()
        self.refusals.note(err)

    async def _script(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self._exec("EVALSHA", script.sha, len(keys), *keys, *args)
        except RedisScriptMissingError:
            # Redis lost its script cache (SCRIPT FLUSH, a restart, a failover): EVAL sends the source, which
            # also loads it again for the next EVALSHA. A NOSCRIPT never reaches the caller.
            return await self._exec("EVAL", script.source, len(keys), *keys, *args)

    def _backoff(self, attempt: int) -> float:
        cfg = self._config
        ceiling = min(cfg.retry_backoff_cap, cfg.retry_backoff * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter": never zero, never above the cap

    def _on_circuit_change(self, old: int, new: int) -> None:
        log.warning("circuit %s -> %s", _state_name(old), _state_name(new))
        if new == CLOSED:
            self.invalidator.on_redis_back()

    @property
    def circuit_state(self) -> str:
        return self._breaker.name

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    # --- reads ------------------------------------------------------------------------------------------
    async def get(self, key: str, default: Any = MISS) -> Any:
        """The cached value, or ``default`` (:data:`MISS`) when absent or when Redis cannot answer."""
        value, _status = await self._read(key, False)
        return default if value is MISS else value

    async def get_entry(self, key: str) -> Entry | _Miss:
        """The stored payload with its content type and ETag (what the sidecar serves), or :data:`MISS`."""
        entry, _status = await self._read(key, True)
        return entry  # type: ignore[no-any-return]

    async def lookup(self, key: str) -> tuple[Entry | _Miss, str]:
        """``(entry or MISS, status)`` with status ``hit``, ``hit-near`` (from the near cache), ``miss``,
        ``bypass`` (circuit open) or ``error``."""
        return await self._read(key, True)

    def near_lookup(self, key: str) -> Entry | None:
        """The near cache's entry for ``key`` (counted as a hit), or None: no I/O, no await (the sidecar's
        fastest path). A key that is not valid is simply not there."""
        near = self._near
        if near is None:
            return None
        slot = near.get(self._ks.prefix + key)
        if slot is None:
            return None
        self.metrics.requests[slot.hit_key] += 1
        return slot.entry

    async def _read(self, key: str, as_entry: bool) -> tuple[Any, str]:
        ks = self._ks
        fk = ks.prefix + validate_key(key)
        near = self._near
        if near is not None:
            slot = near.get(fk)
            if slot is not None:
                if as_entry:
                    self.metrics.requests[slot.hit_key] += 1
                    return slot.entry, "hit-near"
                try:
                    value = slot.value()
                except SerializationError:
                    near.invalidate([fk])  # answered (and counted) by the Redis read below
                else:
                    self.metrics.requests[slot.hit_key] += 1
                    return value, "hit-near"
        ns = ks.ns_label(key)
        strategy = ks.strategy(key)
        if near is not None and strategy.near and near.live:
            return await self._read_and_fill(near, key, fk, ns, as_entry)
        t0 = time.perf_counter()
        try:
            if strategy.sliding:
                raw = await self._exec("GETEX", fk, "EX", ks.resolve_ttl(key, None))
            else:
                raw = await self._exec("GET", fk)
        except CacheError as exc:
            status = "bypass" if isinstance(exc, CircuitOpenError) else "error"
            self.metrics.requests[(ns, "get", status)] += 1
            if status == "error":  # a failed read took real time (a timeout, retries): it belongs in latency
                self.metrics.observe("get", time.perf_counter() - t0, key)
                log.warning("cache read failed, answering a miss: %s", exc)
            return MISS, status
        if raw is None:
            self.metrics.requests[(ns, "get", "miss")] += 1
            self.metrics.observe("get", time.perf_counter() - t0, key)
            return MISS, "miss"
        try:
            value = decode_entry(raw) if as_entry else decode(raw)
        except (SerializationError, ValueError) as exc:
            self.metrics.requests[(ns, "get", "error")] += 1
            log.warning("stored value of %r cannot be decoded, answering a miss: %s", key, exc)
            return MISS, "error"
        self.metrics.requests[(ns, "get", "hit")] += 1
        self.metrics.observe("get", time.perf_counter() - t0, key)
        return value, "hit"

    async def _read_and_fill(
        self, near: NearCache, key: str, fk: str, ns: str, as_entry: bool
    ) -> tuple[Any, str]:
        """A near miss: read value and remaining TTL in one round trip, and keep the value unless an
        invalidation of the key (or a flush) arrived while the read was in flight (see ``_near``)."""
        fill = near.begin(fk)
        t0 = time.perf_counter()
        try:
            reply = await self._script(READ_WITH_TTL, [fk], [])
        except CacheError as exc:
            if fill is not None:
                near.abort(fill)
            status = "bypass" if isinstance(exc, CircuitOpenError) else "error"
            self.metrics.requests[(ns, "get", status)] += 1
            if status == "error":
                self.metrics.observe("get", time.perf_counter() - t0, key)
                log.warning("cache read failed, answering a miss: %s", exc)
            return MISS, status
        raw, pttl = reply[0], int(reply[1])
        if raw is None:
            if fill is not None:
                near.abort(fill)
            self.metrics.requests[(ns, "get", "miss")] += 1
            self.metrics.observe("get", time.perf_counter() - t0, key)
            return MISS, "miss"
        try:
            entry, foreign = decode_entry_kind(raw)
            if as_entry:
                value: Any = entry
            else:
                value = decode_foreign(entry.data) if foreign else decode_payload(entry.format, entry.data)
        except (SerializationError, ValueError) as exc:
            if fill is not None:
                near.abort(fill)
            self.metrics.requests[(ns, "get", "error")] += 1
            log.warning("stored value of %r cannot be decoded, answering a miss: %s", key, exc)
            return MISS, "error"
        if fill is not None:
            near.finish(fill, entry, foreign, pttl, (ns, "get", "hit"))
        self.metrics.requests[(ns, "get", "hit")] += 1
        self.metrics.observe("get", time.perf_counter() - t0, key)
        return value, "hit"

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The hits among ``keys`` (misses are absent), in one round trip (per slot on a cluster)."""
        entries = await self._get_many(keys, False)
        return entries

    async def get_entries(self, keys: Iterable[str]) -> dict[str, Entry]:
        return await self._get_many(keys, True)

    async def _get_many(self, keys: Iterable[str], as_entry: bool) -> dict[str, Any]:
        ks = self._ks
        logical = list(dict.fromkeys(keys))
        if not logical:
            return {}
        full = [ks.full(k) for k in logical]
        out: dict[str, Any] = {}
        near = self._near
        if near is not None and near.live:  # near hits are served here; the rest is read (not filled)
            rest = []
            for k, fk in zip(logical, full, strict=True):
                slot = near.get(fk)
                if slot is None:
                    rest.append((k, fk))
                    continue
                try:
                    out[k] = slot.entry if as_entry else slot.value()
                except SerializationError:
                    near.invalidate([fk])
                    rest.append((k, fk))
                    continue
                self.metrics.requests[(ks.ns_label(k), "get_many", "hit")] += 1
            if not rest:
                return out
            logical, full = [k for k, _ in rest], [fk for _, fk in rest]
        t0 = time.perf_counter()
        try:
            if self._executor.cluster:
                replies = await self._exec_many([("GET", fk) for fk in full])
            else:
                replies = await self._exec("MGET", *full)
        except CacheError as exc:
            status = "bypass" if isinstance(exc, CircuitOpenError) else "error"
            for k in logical:
                self.metrics.requests[(ks.ns_label(k), "get_many", status)] += 1
            return out
        for k, raw in zip(logical, replies, strict=True):
            ns = ks.ns_label(k)
            if raw is None or isinstance(raw, Exception):
                self.metrics.requests[(ns, "get_many", "miss")] += 1
                continue
            try:
                out[k] = decode_entry(raw) if as_entry else decode(raw)
            except (SerializationError, ValueError):
                self.metrics.requests[(ns, "get_many", "error")] += 1
                continue
            self.metrics.requests[(ns, "get_many", "hit")] += 1
        self.metrics.observe("get_many", time.perf_counter() - t0)
        return out

    async def exists(self, key: str) -> bool:
        return bool(await self._exec("EXISTS", self._ks.full(key)))

    async def ttl(self, key: str) -> int | None:
        """Remaining seconds; ``None`` when the key is absent; -1 when it has no expiry."""
        remaining = int(await self._exec("TTL", self._ks.full(key)))
        return None if remaining == -2 else remaining

    # --- writes -----------------------------------------------------------------------------------------
    async def set(
        self,
        key: str,
        value: Any,
        ttl: int | None = None,
        *,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
    ) -> int:
        """Store ``value``; returns the effective TTL (clamped to ``max_ttl``). Tags and dependencies are
        indexed in the same atomic step (see docs/invalidation.md)."""
        ks = self._ks
        fk = ks.full(key)
        eff_ttl = ks.resolve_ttl(key, ttl)
        stored = self._encode(key, value)
        await self._store(key, fk, stored, eff_ttl, tags, depends_on, "")
        return eff_ttl

    async def add(self, key: str, value: Any, ttl: int | None = None, *, tags: Sequence[str] = ()) -> bool:
        """Store only if the key is absent (SET NX). True when stored."""
        ks = self._ks
        fk = ks.full(key)
        eff_ttl = ks.resolve_ttl(key, ttl)
        stored = self._encode(key, value)
        return await self._store(key, fk, stored, eff_ttl, tags, (), "NX")

    async def compare_and_set(
        self, key: str, expected: Any, value: Any, ttl: int | None = None, *, etag: str | None = None
    ) -> bool:
        """Replace the value only if it is still ``expected`` (as read from the cache) — or, given ``etag``,
        only if the stored value still has that ETag. Atomic on the server. True when replaced."""
        ks = self._ks
        fk = ks.full(key)
        eff_ttl = ks.resolve_ttl(key, ttl)
        if etag is None:
            etag = etag_of(self._encode(key, expected))
        return await self._store(key, fk, self._encode(key, value), eff_ttl, (), (), etag.strip('"'))

    async def set_raw(
        self,
        key: str,
        data: bytes,
        content_type: str,
        ttl: int | None = None,
        *,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
        if_absent: bool = False,
        if_etag: str | None = None,
    ) -> SetResult:
        """Store bytes with their content type (the sidecar's PUT), optionally only-if-absent or CAS."""
        ks = self._ks
        fk = ks.full(key)
        eff_ttl = ks.resolve_ttl(key, ttl)
        cfg = self._config
        stored = encode_raw(
            data, content_type, limit=cfg.max_value_bytes, compress_over=cfg.compress_threshold
        )
        cond = "NX" if if_absent else (if_etag.strip().strip('"') if if_etag else "")
        ok = await self._store(key, fk, stored, eff_ttl, tags, depends_on, cond)
        return SetResult(ok, eff_ttl, etag_of(stored))

    def _encode(self, key: str, value: Any) -> bytes:
        cfg = self._config
        serializer = self._ks.strategy(key).serializer
        if serializer != "auto" and (
            isinstance(value, str | bytes | bytearray | memoryview)
            or (
                serializer == "float32"
                and not isinstance(value, list | tuple)
                and not hasattr(value, "astype")
            )
        ):
            # A namespace's serializer is for its structured values; text and bytes always store as
            # themselves, and a non-vector in the embeddings namespace (e.g. metadata) still stores.
            serializer = "auto"
        return encode(value, serializer, limit=cfg.max_value_bytes, compress_over=cfg.compress_threshold)

    async def _store(
        self,
        key: str,
        fk: str,
        stored: bytes,
        ttl: int,
        tags: Sequence[str],
        depends_on: Sequence[str],
        cond: str,
    ) -> bool:
        ks = self._ks
        if isinstance(tags, str) or isinstance(depends_on, str):
            raise InvalidInputError("tags and depends_on take a list of strings, not one string")
        index_keys = [ks.tag_key(t) for t in tags] + [ks.deps_key(ks.full(p)) for p in depends_on]
        ns = ks.ns_label(key)
        t0 = time.perf_counter()
        try:
            if self._near is not None:
                self._near_drop([fk])  # also in the finally below: the fill guard is set for this write
            if not index_keys and not cond:
                await self._exec("SET", fk, stored, "EX", ttl)
                ok = True
            elif not index_keys and cond == "NX":
                ok = (await self._exec("SET", fk, stored, "EX", ttl, "NX")) is not None
            elif self._executor.cluster:
                ok = await self._store_cluster(fk, stored, ttl, index_keys, cond)
            else:
                ok = bool(await self._script(SET_INDEXED, [fk, *index_keys], [stored, ttl, cond]))
        except CacheError as exc:
            self.metrics.requests[(ns, "set", "error")] += 1
            if not isinstance(exc, CircuitOpenError):
                self.metrics.observe("set", time.perf_counter() - t0, key)
            raise
        finally:
            if self._near is not None:
                self._near_drop([fk])
        self.metrics.requests[(ns, "set", "ok" if ok else "skipped")] += 1
        self.metrics.observe("set", time.perf_counter() - t0, key)
        return ok

    async def _store_cluster(
        self, fk: str, stored: bytes, ttl: int, index_keys: list[str], cond: str
    ) -> bool:
        """Cluster: the value and its index entries live in different slots, so no single atomic step exists.
        The index entries are written first, each by a script that checks it can (its clock, type and ACL)
        before writing and reports what it replaced: a value is never visible without them. When anything
        after that is refused — another index, the value's write, its condition — the entries written are put
        back as they were (INDEX_FORGET), so a refused write leaves nothing behind. Only when the outcome is
        unknown (a timeout, a lost connection: the value may be stored) do the entries stay, since an entry
        without its value costs a no-op UNLINK later while a value without its entry would be stale."""
        results = await asyncio.gather(
            *(self._script(INDEX_ADD, [ik], [fk, ttl]) for ik in index_keys), return_exceptions=True
        )
        written = [(ik, r) for ik, r in zip(index_keys, results, strict=True) if isinstance(r, list)]
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        value_unknown = False
        if failure is None:  # every entry is written: now the value
            try:
                if cond:
                    ok = bool(await self._script(SET_INDEXED, [fk], [stored, ttl, cond]))
                else:
                    await self._exec("SET", fk, stored, "EX", ttl)
                    ok = True
            except (RedisRefusedError, CacheConflictError, CircuitOpenError, PoolExhaustedError) as exc:
                failure, ok = exc, False  # refused, or never sent: certainly not written
            except CacheError as exc:
                failure, ok, value_unknown = exc, False, True
            if ok:
                return True
        if not value_unknown:
            await self._undo_index(fk, written)
        if failure is None:
            return False  # the condition did not hold
        if isinstance(failure, CacheError):
            raise failure
        raise translate(failure, "EVALSHA index_add") from failure

    async def _undo_index(self, fk: str, written: Sequence[tuple[str, Any]]) -> None:
        """Put index entries back as they were before INDEX_ADD (``written``: its replies per index key)."""
        calls = []
        for ik, (score, old) in written:
            old_score = old.decode() if isinstance(old, bytes) else str(old)
            calls.append(self._script(INDEX_FORGET, [ik], [1, fk, score, old_score]))
        try:
            await asyncio.gather(*calls)
        except CacheError as exc:
            log.error(
                "could not take back the index entries of %r after its write failed (%s); they only cause "
                "a needless UNLINK when invalidated",
                fk,
                exc,
            )

    async def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any] | tuple[str, Any, int | None] | Sequence[Any]],
    ) -> int:
        """Store many values in one round trip. ``items``: a mapping, or (key, value[, ttl[, tags]]) tuples.
        Everything is validated and encoded before anything is sent."""
        rows = list(items.items()) if isinstance(items, Mapping) else list(items)
        ks = self._ks
        commands: list[tuple[Any, ...]] = []
        tagged: list[tuple[str, str, bytes, int, Sequence[str]]] = []
        for row in rows:
            if not isinstance(row, tuple | list) or not 2 <= len(row) <= 4:
                raise InvalidInputError("set_many takes (key, value[, ttl[, tags]]) tuples or a mapping")
            key, value = row[0], row[1]
            ttl = row[2] if len(row) > 2 else None
            tags = row[3] if len(row) > 3 else ()
            fk = ks.full(key)
            eff = ks.resolve_ttl(key, ttl)
            stored = self._encode(key, value)
            if tags:
                tagged.append((key, fk, stored, eff, tags))
            else:
                commands.append(("SET", fk, stored, "EX", eff))
        if not rows:
            return 0
        t0 = time.perf_counter()
        try:
            if commands:
                replies = await self._exec_many(commands)
                errors = [r for r in replies if isinstance(r, Exception)]
                if errors:
                    raise translate(errors[0], "SET")
            if tagged:  # issued together, so implicit pipelining sends the scripts in one write too
                await asyncio.gather(
                    *(self._store(k, fk, st, eff, tg, (), "") for k, fk, st, eff, tg in tagged)
                )
        finally:
            if self._near is not None:
                self._near_drop([c[1] for c in commands])
        for row in rows:
            self.metrics.requests[(ks.ns_label(row[0]), "set_many", "ok")] += 1
        self.metrics.observe("set_many", time.perf_counter() - t0)
        return len(rows)

    async def delete(self, key: str, *, cascade: bool = False) -> int:
        """Remove a key (and, with ``cascade``, everything that depends on it). Returns how many were removed."""
        return await self.invalidate(key, cascade=cascade)

    async def incr(self, key: str, by: int = 1, ttl: int | None = None) -> int:
        """Atomic counter. The TTL is set when the counter is created (a fixed window), never extended."""
        if isinstance(by, bool) or not isinstance(by, int):
            raise InvalidInputError(f"incr takes an integer increment, not {type(by).__name__}")
        ks = self._ks
        fk = ks.full(key)
        eff = ks.resolve_ttl(key, ttl)
        t0 = time.perf_counter()
        try:
            value = await self._script(INCR_TTL, [fk], [by, eff])
        except CacheConflictError as exc:
            raise CacheConflictError(
                f"{key!r} holds a value that is not an integer counter, or the result would overflow ({exc})"
            ) from exc
        except CacheError as exc:
            if self._near is not None:
                self._near_drop([fk])
            self.metrics.requests[(ks.ns_label(key), "incr", "error")] += 1
            if not isinstance(exc, CircuitOpenError):
                self.metrics.observe("incr", time.perf_counter() - t0, key)
            raise
        if self._near is not None:
            self._near_drop([fk])
        self.metrics.requests[(ks.ns_label(key), "incr", "ok")] += 1
        self.metrics.observe("incr", time.perf_counter() - t0, key)
        return int(value)

    # --- invalidation (see _invalidation.py) ---------------------------------------------------------------
    async def invalidate(self, key: str, *, cascade: bool = False) -> int:
        return await self.invalidate_keys([key], cascade=cascade)

    async def invalidate_keys(self, keys: Sequence[str], *, cascade: bool = False) -> int:
        if isinstance(keys, str):
            keys = [keys]
        try:
            return await self._near_settled(self.invalidator.by_keys(keys, cascade=cascade), cascade)
        finally:
            if self._near is not None:
                self._near_drop([self._ks.prefix + k for k in keys if isinstance(k, str)])

    async def invalidate_pattern(self, pattern: str) -> int:
        return await self._near_settled(self.invalidator.by_pattern(pattern), True)

    async def invalidate_tags(self, *tags: str) -> int:
        return await self._near_settled(self.invalidator.by_tags(tags), True)

    # --- near cache hooks ------------------------------------------------------------------------------------
    def _near_drop(self, redis_keys: Sequence[str]) -> None:
        """A write or delete through this instance: its own copy goes (and reads in flight are spoiled)."""
        if self._near is not None:
            self._near.invalidate(redis_keys)

    async def _near_settled(self, work: Awaitable[int], barrier: bool) -> int:
        """Run an invalidation; when it removed keys this instance cannot name (tags, pattern, cascade), wait
        until tracking has delivered their invalidations before returning (a PING barrier), so this
        instance never serves what it has just been told is gone. A failed barrier flushes the near cache."""
        near, tracker = self._near, self._tracker
        try:
            result = await work
        except BaseException:
            if barrier and near is not None:
                near.flush()  # the invalidation may have half-run: be safe
            raise
        if (
            barrier
            and near is not None
            and tracker is not None
            and near.live
            and not await tracker.sync(timeout=max(1.0, self._config.redis_socket_timeout))
        ):
            near.flush()
        return result

    def near_stats(self) -> dict[str, Any]:
        """The near cache's counters and state (also in ``stats()["near"]`` and the metrics)."""
        if self._near is None or self._tracker is None:
            return {"enabled": False, "reason": self.near_off_reason}
        return {"enabled": True, **self._near.stats(), "tracking": self._tracker.stats()}

    async def wait_near(self, timeout: float = 5.0) -> bool:
        """Wait until the near cache is live (tracking established); False after ``timeout`` or when off."""
        if self._tracker is None:
            return False
        return await self._tracker.wait_established(timeout)

    def on_invalidate(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        """Call ``callback(event)`` for every invalidation published by any instance on this Redis."""
        self.invalidator.add_listener(callback)

    # --- patterns ---------------------------------------------------------------------------------------
    async def get_or_set(
        self, key: str, loader: Callable[[], Awaitable[T] | T], ttl: int | None = None, **set_kwargs: Any
    ) -> T:
        """Cache-aside with single-flight: concurrent misses of one key in this process call ``loader`` once.
        A cache that cannot store the value does not fail the caller (the loaded value is returned)."""
        value = await self.get(key)
        if value is not MISS:
            return value  # type: ignore[no-any-return]
        fk = self._ks.prefix + key
        pending = self._loads.get(fk)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loads[fk] = fut
        try:
            produced = loader()
            result: T = await produced if inspect.isawaitable(produced) else produced
            try:
                await self.set(key, result, ttl, **set_kwargs)
            except CacheUnavailableError as exc:
                log.warning("loaded %r but could not cache it: %s", key, exc)
            fut.set_result(result)
            return result
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters get it, nobody else needs to
            raise
        finally:
            del self._loads[fk]

    async def write_through(
        self, key: str, value: T, writer: Callable[[T], Awaitable[Any] | Any], ttl: int | None = None
    ) -> int:
        """Write the source of truth first, then the cache. If the cache write fails, the key is invalidated
        (queued for replay if Redis is unreachable) and the failure is raised: never a stale value left."""
        result = writer(value)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            await result
        try:
            return await self.set(key, value, ttl)
        except CacheError as exc:
            with contextlib.suppress(CacheError):  # on failure it is queued for replay; reported below
                await self.invalidate(key)
            raise CacheUnavailableError(
                f"{key!r} was written to the source of truth but not to the cache; the cached copy was "
                f"invalidated (or queued for invalidation): {exc}"
            ) from exc

    def cached(
        self,
        ttl: int | None = None,
        key: str | Callable[..., str] | None = None,
        *,
        tags: Sequence[str] = (),
    ) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Awaitable[T]]]:
        from ._decorator import make_cached

        return make_cached(self, ttl, key, tags)

    # --- health and stats -------------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """Ping latency, Redis memory and identity, pool and circuit, and the last refusal (``refused``, see
        ``_refusals``). Never raises: errors are reported. ``ok`` is False when Redis cannot serve us: it does
        not answer, answers with an error (LOADING, BUSY...), or is a read-only replica."""
        out: dict[str, Any] = {
            "ok": False,
            "circuit": self.circuit_state,
            "pool": self._executor.pool_stats(),
            "invalidation_queue": len(self.invalidator.queue),
        }
        try:
            t0 = time.perf_counter()
            await self._exec("PING")
            out["ping_ms"] = round((time.perf_counter() - t0) * 1000, 3)
            info = await self._info()
            out.update(info)
            if info.get("role") == "slave":
                out["error"] = (
                    "this Redis is a read-only replica (role: slave): writes and invalidations need the primary"
                )
            else:
                out["ok"] = True
        except CacheError as exc:
            out["error"] = str(exc)
        locator = self._executor.endpoint.locator
        if locator is not None:
            current = locator.current
            out["sentinel"] = {
                "master_name": locator.name,
                "master": f"{current[0]}:{current[1]}" if current else None,
                "lookups": locator.lookups,
                "switches": locator.switches,
            }
        out["refused"] = self.refusals.report()
        return out

    async def _info(self) -> dict[str, Any]:
        if self._executor.cluster:
            rc = self._executor.redis  # type: ignore[attr-defined]
            try:
                per_node: dict[str, Any] = await rc.info(target_nodes=rc.PRIMARIES)
            except Exception as exc:
                raise translate(exc) from exc
            nodes = [n for n in per_node.values() if isinstance(n, dict)] or [per_node]
            first = nodes[0]
            info = {
                "used_memory": sum(int(n.get("used_memory", 0)) for n in nodes),
                "maxmemory": sum(int(n.get("maxmemory", 0)) for n in nodes),
                "policy": first.get("maxmemory_policy"),
                "version": first.get("redis_version"),
                "role": "cluster",
                "primaries": len(nodes),
                "keys": sum(int((n.get("db0") or {}).get("keys", 0)) for n in nodes),
                "evicted_keys": sum(int(n.get("evicted_keys", 0)) for n in nodes),
            }
        else:
            text = await self._exec("INFO", "memory", "server", "replication", "stats", "keyspace")
            db0 = text.get("db0", {}) if isinstance(text, dict) else None  # redis-py parsed it already
            fields = _parse_info(text)
            if db0 is None:
                db = fields.get("db0", "")
                db0 = dict(p.split("=", 1) for p in db.split(",")) if db else {}
            keys = int(db0.get("keys", 0))
            info = {
                "used_memory": int(fields.get("used_memory", 0)),
                "maxmemory": int(fields.get("maxmemory", 0)),
                "policy": fields.get("maxmemory_policy"),
                "version": fields.get("redis_version"),
                "role": fields.get("role"),
                "keys": keys,
                "evicted_keys": int(fields.get("evicted_keys", 0)),
                "keyspace_hits": int(fields.get("keyspace_hits", 0)),
                "keyspace_misses": int(fields.get("keyspace_misses", 0)),
            }
        self._redis_info = info
        return info

    def stats(self) -> dict[str, Any]:
        per_ns = self.metrics.hits_misses()
        hits = sum(r["hit"] for r in per_ns.values())
        misses = sum(r["miss"] + r["bypass"] + r["error"] for r in per_ns.values())
        namespaces = {
            ns: {**r, "hit_ratio": _ratio(r["hit"], r["hit"] + r["miss"] + r["bypass"] + r["error"])}
            for ns, r in sorted(per_ns.items())
        }
        return {
            "hits": hits,
            "misses": misses,
            "hit_ratio": _ratio(hits, hits + misses),
            "namespaces": namespaces,
            "pool": self._executor.pool_stats(),
            "circuit": self.circuit_state,
            "slow_ops": dict(self.metrics.slow),
            "invalidations": dict(self.metrics.invalidations),
            "invalidation_queue": len(self.invalidator.queue),
            "refusals": dict(self.refusals.counts),
            "near": self.near_stats(),
        }

    def _gauges(self) -> dict[str, Any]:
        row: dict[str, Any] = dict(self._executor.pool_stats())
        row["circuit"] = self._breaker.state
        row["queue"] = len(self.invalidator.queue)
        row["used_memory"] = self._redis_info.get("used_memory")
        row["maxmemory"] = self._redis_info.get("maxmemory")
        return row


def _command_name(args: Sequence[Any]) -> str:
    """What a command is called in messages: ``SET``, or ``EVALSHA set_indexed`` for our scripts."""
    name = str(args[0]).upper() if args else "?"
    if name in ("EVALSHA", "EVAL") and len(args) > 1:
        return f"{name} {SCRIPT_NAMES.get(args[1], 'script')}"
    return name


def _parse_info(text: Any) -> dict[str, str]:
    if isinstance(text, dict):
        return {k: v if isinstance(v, str) else str(v) for k, v in text.items()}
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out: dict[str, str] = {}
    for line in str(text).splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0


def _state_name(state: int) -> str:
    return {CLOSED: "closed", OPEN: "open"}.get(state, "half-open")
