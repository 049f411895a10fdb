"""Steady read/write/invalidate load while a Sentinel group's master is SIGKILLed, through the library or a sidecar.

The failover tests assert on the outcome; the failover benchmark (benchmarks/failover.py) reports it. One load
loop drives three operations given as coroutines (``Ops``), so the library and the HTTP sidecar are measured
the same way:

- a writer stores a new key every ~10 ms, readers read recently written keys every ~5 ms, an invalidator
  invalidates pre-stored keys every ~25 ms;
- after ``before`` seconds the master is SIGKILLed; the load goes on until ``after`` seconds past both the
  promotion of a replica and the first successful write;
- then, on the new master (a direct connection): every invalidated key must be gone (the queued ones were
  replayed there), every key whose write was acknowledged after the kill must be there, and the keys that
  were never invalidated must still be there (so the first check means something).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from mobius_cache import Cache, CacheUnavailableError, InvalidationQueuedError
from tests.servers import DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, RedisServer, SentinelGroup

HANG_S = 2.0
OP_DEADLINE_S = 10.0  # an operation still running after this is recorded as a hang and abandoned
INVALIDATION_KEYS = 2000


@dataclass(frozen=True)
class Op:
    kind: str  # read | write | invalidate
    key: str
    start: float  # seconds since the load started
    seconds: float
    outcome: str  # read: hit|hit-near|miss|bypass|error; write: ok|unavailable; invalidate: ok|queued; else failed:<why>


@dataclass(frozen=True)
class Ops:
    """The three operations under load, each returning its outcome (see :class:`Op`), and the key prefix."""

    write: Callable[[str], Awaitable[str]]
    read: Callable[[str], Awaitable[str]]
    invalidate: Callable[[str], Awaitable[str]]
    store_many: Callable[[list[str]], Awaitable[None]]
    drained: Callable[[], Awaitable[bool]]  # True once no invalidation is queued any more
    prefix: str


@dataclass
class FailoverRun:
    ops: list[Op]
    killed_at: float
    promoted_at: float
    old_port: int
    new_port: int
    drained: bool
    lost_invalidations: list[str] = field(default_factory=list)
    lost_writes: list[str] = field(default_factory=list)
    kept_checked: int = 0
    kept_missing: int = 0

    def of(self, kind: str) -> list[Op]:
        return [op for op in self.ops if op.kind == kind]

    @property
    def write_gap_s(self) -> float | None:
        """From the SIGKILL to the start of the first write that succeeded after it."""
        after = [op.start for op in self.of("write") if op.start >= self.killed_at and op.outcome == "ok"]
        return min(after) - self.killed_at if after else None

    @property
    def read_failures(self) -> list[Op]:
        """Reads that did not answer a hit or a miss (a miss, a bypass or a failed-open read is fine)."""
        return [
            op for op in self.of("read") if op.outcome not in ("hit", "hit-near", "miss", "bypass", "error")
        ]

    @property
    def hangs(self) -> list[Op]:
        return [op for op in self.ops if op.seconds > HANG_S]

    def summary(self) -> dict[str, Any]:
        writes_after_kill = [op for op in self.of("write") if op.start >= self.killed_at]
        failed_writes = [op for op in writes_after_kill if op.outcome != "ok"]
        return {
            "down_after_ms": DOWN_AFTER_MS,
            "failover_timeout_ms": FAILOVER_TIMEOUT_MS,
            "killed_at_s": round(self.killed_at, 3),
            "promoted_after_s": round(self.promoted_at - self.killed_at, 3),
            "write_gap_s": None if self.write_gap_s is None else round(self.write_gap_s, 3),
            "max_op_ms": round(max(op.seconds for op in self.ops) * 1000, 1),
            "max_failed_write_ms": round(max((op.seconds for op in failed_writes), default=0.0) * 1000, 1),
            "hangs_over_2s": len(self.hangs),
            "reads": dict(Counter(op.outcome for op in self.of("read"))),
            "read_failures": len(self.read_failures),
            "writes": dict(Counter(op.outcome for op in self.of("write"))),
            "invalidations": dict(Counter(op.outcome for op in self.of("invalidate"))),
            "lost_invalidations": len(self.lost_invalidations),
            "writes_checked_on_new_master": sum(1 for op in writes_after_kill if op.outcome == "ok"),
            "lost_writes": len(self.lost_writes),
            "untouched_keys_checked": self.kept_checked,
            "untouched_keys_missing": self.kept_missing,
            "queue_drained": self.drained,
            "ops": len(self.ops),
        }


async def run_failover(
    group: SentinelGroup, ops: Ops, *, before: float = 1.0, after: float = 2.0, deadline: float = 40.0
) -> FailoverRun:
    """Load, SIGKILL the master after ``before`` s, keep loading until ``after`` s past the recovery."""
    inv_keys = [f"inv:{i}" for i in range(INVALIDATION_KEYS)]
    await ops.store_many(inv_keys)
    old = group.master()
    with group.node_client(old) as c:  # every replica holds them before the kill
        c.execute_command("WAIT", group.replicas, 5000)
    t0 = time.monotonic()
    records: list[Op] = []
    written: list[str] = []
    stop = asyncio.Event()

    async def timed(kind: str, key: str, work: Awaitable[str]) -> None:
        start = time.monotonic()
        try:
            async with asyncio.timeout(OP_DEADLINE_S):
                outcome = await work
        except TimeoutError:
            outcome = "failed:hang"
        except Exception as exc:
            outcome = f"failed:{type(exc).__name__}: {exc}"
        records.append(Op(kind, key, start - t0, time.monotonic() - start, outcome))

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            key = f"w:{i}"
            await timed("write", key, ops.write(key))
            written.append(key)
            i += 1
            await asyncio.sleep(0.01)

    async def reader() -> None:
        rng = random.Random()
        while not stop.is_set():
            key = rng.choice(written[-200:]) if written else "w:0"
            await timed("read", key, ops.read(key))
            await asyncio.sleep(0.005)

    async def invalidator() -> None:
        for key in inv_keys:
            if stop.is_set():
                return
            await timed("invalidate", key, ops.invalidate(key))
            await asyncio.sleep(0.025)

    tasks = [asyncio.ensure_future(t()) for t in (writer, reader, reader, invalidator)]
    try:
        await asyncio.sleep(before)
        old.kill()
        killed_at = time.monotonic() - t0
        new = await asyncio.to_thread(group.wait_failover, old.port)
        promoted_at = time.monotonic() - t0
        while time.monotonic() - t0 < deadline:
            oks = [
                op.start
                for op in records
                if op.kind == "write" and op.start >= killed_at and op.outcome == "ok"
            ]
            now = time.monotonic() - t0
            if oks and now - max(promoted_at, min(oks)) >= after:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    drained = await ops.drained()
    run = FailoverRun(
        ops=sorted(records, key=lambda op: op.start),
        killed_at=killed_at,
        promoted_at=promoted_at,
        old_port=old.port,
        new_port=new.port,
        drained=drained,
    )
    _check_new_master(run, group, new, ops.prefix)
    return run


def _check_new_master(run: FailoverRun, group: SentinelGroup, new: RedisServer, prefix: str) -> None:
    invalidated = {op.key for op in run.of("invalidate") if op.outcome in ("ok", "queued")}
    acknowledged = [op.key for op in run.of("write") if op.start >= run.killed_at and op.outcome == "ok"]
    untouched = [f"inv:{i}" for i in range(INVALIDATION_KEYS) if f"inv:{i}" not in invalidated]
    with group.node_client(new) as c:
        pipe = c.pipeline(transaction=False)
        for key in [*sorted(invalidated), *acknowledged, *untouched]:
            pipe.exists(prefix + key)
        found = pipe.execute()
    inv_found = found[: len(invalidated)]
    ack_found = found[len(invalidated) : len(invalidated) + len(acknowledged)]
    kept_found = found[len(invalidated) + len(acknowledged) :]
    run.lost_invalidations = [k for k, e in zip(sorted(invalidated), inv_found, strict=True) if e]
    run.lost_writes = [k for k, e in zip(acknowledged, ack_found, strict=True) if not e]
    run.kept_checked = len(untouched)
    run.kept_missing = sum(1 for e in kept_found if not e)


# --- the two ways in -------------------------------------------------------------------------------------------
def library_ops(cache: Cache) -> Ops:
    """The load through an in-process :class:`Cache`."""

    async def write(key: str) -> str:
        try:
            await cache.set(key, {"v": key}, ttl=600)
        except CacheUnavailableError:  # the usual error of a write Redis cannot take now
            return "unavailable"
        return "ok"

    async def read(key: str) -> str:
        _value, status = await cache.lookup(key)  # never raises for Redis trouble: a raise is a failure
        return status

    async def invalidate(key: str) -> str:
        try:
            await cache.invalidate(key)
        except InvalidationQueuedError:
            return "queued"
        return "ok"

    async def store_many(keys: list[str]) -> None:
        await cache.set_many([(k, {"v": k}, 600) for k in keys])

    async def drained() -> bool:
        return await cache.invalidator.drain(15.0)

    return Ops(write, read, invalidate, store_many, drained, cache.keys.prefix)


def sidecar_ops(http: httpx.AsyncClient, prefix: str = "mobius:") -> Ops:
    """The load through a sidecar's HTTP API (``http`` has the sidecar as base URL)."""

    async def write(key: str) -> str:
        resp = await http.put(f"/v1/cache/{key}", params={"ttl": 600}, content=b'{"v": 1}')
        if resp.status_code == 204:
            return "ok"
        if resp.status_code == 503 and resp.headers.get("retry-after"):
            return "unavailable"
        return f"failed:{resp.status_code} {resp.text[:200]}"

    async def read(key: str) -> str:
        resp = await http.get(f"/v1/cache/{key}")
        if resp.status_code == 200:
            return "hit"
        if resp.status_code == 404 and resp.headers.get("x-cache") in ("miss", "bypass"):
            return str(resp.headers["x-cache"])
        return f"failed:{resp.status_code} {resp.text[:200]}"

    async def invalidate(key: str) -> str:
        resp = await http.post("/v1/invalidate", json={"keys": [key]})
        if resp.status_code in (200, 202):
            return "ok" if resp.status_code == 200 else "queued"
        return f"failed:{resp.status_code} {resp.text[:200]}"

    async def store_many(keys: list[str]) -> None:
        for i in range(0, len(keys), 500):
            items = [{"key": k, "value": {"v": k}, "ttl": 600} for k in keys[i : i + 500]]
            resp = await http.post("/v1/batch/set", json={"items": items})
            resp.raise_for_status()

    async def drained() -> bool:
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/v1/stats")).json().get("invalidation_queue") == 0:
                    return True
            await asyncio.sleep(0.1)
        return False

    return Ops(write, read, invalidate, store_many, drained, prefix)
