"""Invalidation by key, cascade, glob pattern and tag; the events channel; the replay queue.

Data structures (all under the cache prefix; see docs/invalidation.md for the diagram and costs):

- ``<prefix>~tag:<tag>``      sorted set: member = Redis key carrying the tag, score = its expiry (ms)
- ``<prefix>~deps:<parent>``  sorted set: member = Redis key depending on ``parent``, score = its expiry (ms)

Both are written in the same atomic step as the value (a Lua script; on a cluster, index first, then value),
pruned of expired members on every write, and read in bounded pages (ZRANGE ... LIMIT 500) on invalidation: no
reply is ever unbounded, no command blocks Redis. An invalidation deletes the listed keys first and only then
removes their entries from the index (INDEX_FORGET, which leaves an entry alone when a writer has rewritten it
since), and a cascade removes entries only once every dependent is gone: whatever fails half-way, each key
still cached stays reachable from its index, and the replayed invalidation finds it. Pattern invalidation is
SCAN + UNLINK in batches of 1000, never KEYS, and always inside the prefix.

Every invalidation is published on ``<prefix>events`` so every instance (and any subscriber in any language)
sees it. One that cannot reach Redis is queued (bounded; on overflow the queue collapses into one
invalidation of the whole prefix, so nothing is ever silently lost) and replayed in order when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis

from ._exceptions import (
    CacheError,
    CacheUnavailableError,
    InvalidationQueuedError,
    InvalidInputError,
    redis_error_code,
    translate,
)
from ._keys import validate_key, validate_tag
from ._scripts import INDEX_FORGET

if TYPE_CHECKING:
    from ._client import Cache

__all__ = ["InvalidationOp", "Invalidator"]

log = logging.getLogger("mobius_cache")

BATCH = 500
SCAN_COUNT = 1000
MAX_CASCADE = 100_000
#: Replay back-off while Redis keeps refusing (a missing permission does not heal in 50 ms), seconds.
REPLAY_BACKOFF_CAP = 5.0

#: An index as read: index key -> its (member, score) entries.
Entries = dict[str, list[tuple[str, str]]]


@dataclass(frozen=True)
class InvalidationOp:
    kind: str  # key | cascade | pattern | tag
    items: tuple[str, ...]
    created: float = field(default_factory=time.time)


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class Invalidator:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.queue: deque[InvalidationOp] = deque()
        self.dropped_into_full_flush = 0
        self._listeners: list[Callable[[dict[str, Any]], Any]] = []
        self._sub_task: asyncio.Task[None] | None = None
        self._sub_ready = asyncio.Event()
        self._replay_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # --- public operations -------------------------------------------------------------------------------
    async def by_keys(self, keys: Sequence[str], *, cascade: bool = False) -> int:
        if isinstance(keys, str):
            keys = [keys]
        items = tuple(validate_key(k) for k in keys)
        return await self._run(InvalidationOp("cascade" if cascade else "key", items))

    async def by_pattern(self, pattern: str) -> int:
        if (
            not isinstance(pattern, str)
            or not pattern
            or len(pattern) > 512
            or any(c.isspace() for c in pattern)
        ):
            raise InvalidInputError("a pattern must be a non-empty glob without whitespace, e.g. 'search:*'")
        return await self._run(InvalidationOp("pattern", (pattern,)))

    async def by_tags(self, tags: Sequence[str]) -> int:
        items = tuple(validate_tag(t) for t in tags)
        if not items:
            return 0
        return await self._run(InvalidationOp("tag", items))

    # --- running, queueing, replaying ------------------------------------------------------------------------
    async def _run(self, op: InvalidationOp) -> int:
        if self.queue:
            # Keep order: an invalidation may not overtake an older queued one.
            self._enqueue(op)
            raise InvalidationQueuedError(
                f"{op.kind} invalidation queued behind {len(self.queue) - 1} others until Redis is back",
                len(self.queue),
            )
        try:
            n = await self._apply(op)
        except CacheUnavailableError as exc:
            self._enqueue(op)
            raise InvalidationQueuedError(
                f"Redis is unreachable; the {op.kind} invalidation is queued and will be replayed: {exc}",
                len(self.queue),
            ) from exc
        await self._publish(op, n)
        return n

    def _enqueue(self, op: InvalidationOp) -> None:
        limit = self.cache.config.invalidation_queue_size
        if limit and len(self.queue) >= limit:
            # Overflow: one invalidation of everything under the prefix replaces the queue. Coarse, but
            # nothing that should have been removed can survive.
            self.dropped_into_full_flush += len(self.queue)
            log.error("invalidation queue full (%d): collapsing into one invalidation of the prefix", limit)
            self.queue.clear()
            op = InvalidationOp("pattern", ("*",))
        self.queue.append(op)
        if self._replay_task is None or self._replay_task.done():
            self._replay_task = asyncio.ensure_future(self._replay_loop())
        self._wake.set()

    def on_redis_back(self) -> None:
        self._wake.set()

    async def _replay_loop(self) -> None:
        breaker = self.cache.breaker
        pause = 0.05
        while self.queue:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(pause, breaker.retry_after()) + 0.01)
            while self.queue:
                op = self.queue[0]
                try:
                    n = await self._apply(op)
                except CacheUnavailableError:
                    # Refusals that do not open the circuit (a missing permission, a full Redis) would
                    # otherwise be retried every 50 ms: back off, up to a few seconds.
                    pause = min(REPLAY_BACKOFF_CAP, pause * 2)
                    break
                except CacheError as exc:
                    log.error("dropping an invalidation Redis refused: %s (%s)", op, exc)
                    self.queue.popleft()
                    continue
                pause = 0.05
                self.queue.popleft()
                log.info("replayed a queued %s invalidation (%d keys)", op.kind, n)
                with contextlib.suppress(CacheError):
                    await self._publish(op, n)

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        while self.queue and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.02)
        return not self.queue

    # --- applying ----------------------------------------------------------------------------------------------
    async def _apply(self, op: InvalidationOp) -> int:
        metrics = self.cache.metrics
        if op.kind == "key":
            n = await self._unlink([self.cache.keys.full(k) for k in op.items])
        elif op.kind == "cascade":
            n = await self._cascade([self.cache.keys.full(k) for k in op.items])
        elif op.kind == "pattern":
            n = await self._pattern(op.items[0])
        else:
            n = await self._tags(op.items)
        metrics.invalidations[op.kind] += 1
        return n

    async def _unlink(self, redis_keys: Sequence[str]) -> int:
        if not redis_keys:
            return 0
        cache = self.cache
        total = 0
        if cache.executor.cluster:
            for i in range(0, len(redis_keys), BATCH):
                replies = await cache._exec_many([("UNLINK", k) for k in redis_keys[i : i + BATCH]])
                refused = next((r for r in replies if isinstance(r, Exception)), None)
                if refused is not None:  # never report a key as gone when it is not
                    raise translate(refused, "UNLINK") from refused
                total += sum(int(r) for r in replies)
            return total
        for i in range(0, len(redis_keys), BATCH):
            total += int(await cache._exec("UNLINK", *redis_keys[i : i + BATCH]))
        return total

    async def _read_indexes(self, index_keys: Sequence[str]) -> tuple[Entries, list[str]]:
        """Every (member, score) entry of each index, read in bounded pages without changing anything, all
        indexes in one round trip per page; plus the index keys that hold something that is not an index.

        Pages follow the score (the member's expiry), from the last score seen, inclusive: an entry removed
        meanwhile (pruned, or forgotten by another invalidation) cannot make a page skip one that is still
        there, as rank offsets would. When a whole page is entries already seen (more than a page of them share
        one score), the next one is twice as wide."""
        out: Entries = {}
        corrupted: list[str] = []
        seen: dict[str, set[str]] = {k: set() for k in index_keys}
        pending = {k: ("-inf", BATCH) for k in dict.fromkeys(index_keys)}
        while pending:
            keys = list(pending)
            commands = [
                ("ZRANGE", k, pending[k][0], "+inf", "BYSCORE", "LIMIT", 0, pending[k][1], "WITHSCORES")
                for k in keys
            ]
            replies = await self.cache._exec_many(commands)
            again: dict[str, tuple[str, int]] = {}
            for k, reply in zip(keys, replies, strict=True):
                if isinstance(reply, Exception):
                    if redis_error_code(reply)[0] == "WRONGTYPE":
                        corrupted.append(k)
                        continue
                    raise translate(reply, "ZRANGE") from reply
                page = _entries(reply)
                fresh = [e for e in page if e[0] not in seen[k]]
                seen[k].update(m for m, _ in fresh)
                out.setdefault(k, []).extend(fresh)
                limit = pending[k][1]
                if len(page) >= limit:
                    again[k] = (page[-1][1], BATCH) if fresh else (page[-1][1], limit * 2)
            pending = again
        return out, corrupted

    async def _forget(self, entries: Entries) -> None:
        """Remove these entries from their indexes — those still as read: a rewritten one stays. About BATCH
        entries per script; on a standalone Redis one script covers several indexes (a cascade reads
        thousands of one-entry indexes), on a cluster each index is its own (its own slot)."""
        one_key = self.cache.executor.cluster
        calls = []
        keys: list[str] = []
        args: list[Any] = []
        for index, found in entries.items():
            for i in range(0, len(found), BATCH):
                chunk = found[i : i + BATCH]
                keys.append(index)
                args += [len(chunk), *(a for member, score in chunk for a in (member, score, ""))]
                if one_key or len(args) >= 3 * BATCH or len(keys) >= BATCH:
                    calls.append(self.cache._script(INDEX_FORGET, keys, args))
                    keys, args = [], []
        if keys:
            calls.append(self.cache._script(INDEX_FORGET, keys, args))
        if calls:
            await asyncio.gather(*calls)

    async def _drop_corrupted(self, index_keys: Sequence[str]) -> None:
        """An index key that holds something else indexes nothing: remove it, so that tagged and dependent
        writes (which refuse to write beside it) work again."""
        if index_keys:
            log.warning("removing index keys that held something other than an index: %s", list(index_keys))
            await self._unlink(index_keys)

    async def _tags(self, tags: Sequence[str]) -> int:
        ks = self.cache.keys
        index, corrupted = await self._read_indexes([ks.tag_key(t) for t in tags])
        members = list(dict.fromkeys(m for found in index.values() for m, _ in found))
        n = await self._unlink(members)
        await self._forget(index)  # only now: until its key is gone, each entry must stay
        await self._drop_corrupted(corrupted)
        return n

    async def _cascade(self, roots: Sequence[str]) -> int:
        """Breadth-first over the dependents indexes: one round trip per level (and page), cycle-safe (visited
        set) and bounded (MAX_CASCADE keys). The indexes are left as they are until every key is deleted, so a
        cascade that fails half-way and is replayed from its root still reaches every dependent."""
        ks = self.cache.keys
        visited: set[str] = set(roots)
        frontier = list(roots)
        deleted = 0
        read: Entries = {}
        corrupted: list[str] = []
        while frontier:
            index, bad = await self._read_indexes([ks.deps_key(k) for k in frontier])
            deleted += await self._unlink(frontier)
            read.update(index)
            corrupted += bad
            nxt = []
            for found in index.values():
                for m, _ in found:
                    if m not in visited:
                        visited.add(m)
                        nxt.append(m)
            if len(visited) > MAX_CASCADE:
                log.error("cascade stopped after %d keys (limit %d)", len(visited), MAX_CASCADE)
                deleted += await self._unlink(nxt)
                break
            frontier = nxt
        await self._forget(read)
        await self._drop_corrupted(corrupted)
        return deleted

    async def _pattern(self, pattern: str) -> int:
        cache = self.cache
        match = _glob_escape(cache.keys.prefix) + pattern
        total = 0
        if cache.executor.cluster:
            batch: list[str] = []
            rc = cache.executor.redis  # type: ignore[attr-defined]
            try:
                async for key in rc.scan_iter(match=match, count=SCAN_COUNT):
                    batch.append(key.decode() if isinstance(key, bytes) else key)
                    if len(batch) >= SCAN_COUNT:
                        total += await self._unlink(batch)
                        batch = []
            except CacheError:
                raise
            except Exception as exc:
                raise translate(exc, "SCAN") from exc
            return total + await self._unlink(batch)
        cursor = 0
        while True:
            reply = await cache._exec("SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT)
            cursor = int(reply[0])
            keys = [k.decode() if isinstance(k, bytes) else k for k in reply[1]]
            total += await self._unlink(keys)
            if cursor == 0:
                return total

    # --- events --------------------------------------------------------------------------------------------------
    async def _publish(self, op: InvalidationOp, deleted: int) -> None:
        event = {
            "kind": op.kind,
            "items": list(op.items),
            "deleted": deleted,
            "origin": self.cache.instance_id,
            "ts": time.time(),
        }
        try:
            await self.cache._exec("PUBLISH", self.cache.keys.events_channel, orjson.dumps(event))
            self.cache.metrics.invalidations["event"] += 1
        except CacheError as exc:  # the invalidation itself happened; only the notice is lost
            log.warning("invalidation done but its event was not published: %s", exc)

    def add_listener(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        self._listeners.append(callback)
        if self._sub_task is None:
            self._sub_task = asyncio.ensure_future(self._subscribe_loop())

    async def wait_subscribed(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._sub_ready.wait(), timeout)

    async def _subscribe_loop(self) -> None:
        cfg = self.cache.config
        url = cfg.redis_url.replace("+cluster://", "://")
        while True:
            client = Redis.from_url(
                url,
                password=cfg.redis_password,
                socket_connect_timeout=cfg.redis_socket_connect_timeout,
                socket_keepalive=True,
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.cache.keys.events_channel)
                self._sub_ready.set()
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    try:
                        event = orjson.loads(msg["data"])
                    except orjson.JSONDecodeError:
                        continue
                    await self._dispatch(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._sub_ready.clear()
                log.warning("events subscription lost (%s); reconnecting", exc)
                await asyncio.sleep(min(2.0, cfg.breaker_reset_timeout))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()

    async def _dispatch(self, event: dict[str, Any]) -> None:
        for callback in list(self._listeners):
            try:
                result = callback(event)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("an on_invalidate listener failed")

    async def close(self) -> None:
        for task in (self._sub_task, self._replay_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._sub_task = None


def _entries(reply: Any) -> list[tuple[str, str]]:
    """A ``ZRANGE ... WITHSCORES`` reply as (member, score) pairs: RESP2 gives a flat [member, score, ...]
    list; redis-py may pair them. Scores stay text, as Redis wrote them, for the next page's cursor."""
    if not reply:
        return []
    if isinstance(reply[0], list | tuple):
        return [(_text(p[0]), _text(p[1])) for p in reply]
    return [(_text(m), _text(s)) for m, s in zip(reply[0::2], reply[1::2], strict=True)]


def _text(item: Any) -> str:
    if isinstance(item, bytes):
        return item.decode("utf-8", "surrogateescape")
    if isinstance(item, float):
        return repr(int(item)) if item.is_integer() else repr(item)
    return str(item)
