"""Redis administration for the operator: read, set and verify ``maxmemory`` / ``maxmemory-policy``.

One short-lived connection per node and reconcile, every call bounded by a timeout, and redis-py's errors
translated here (and only here) into the two failures the operator reports: Redis unreachable (retry later)
and Redis refused (it answered, but did not take or keep the settings).

A Redis Cluster or a Sentinel-monitored group is several servers, each with its own maxmemory: every node is
configured (the cluster's from ``CLUSTER NODES``; behind Sentinel, the master and the replicas the Sentinels
list), so a replica promoted later has the settings already. Each node's result is reported (``NodeState``);
a node flagged down is skipped (and configured on the first reconcile after it returns), and the reconcile
fails when any other node did not take the settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mobius_cache._sentinel import SentinelLocator
from mobius_operator.reconcile import (
    DesiredSettings,
    NodeState,
    RedisStats,
    RedisTarget,
    cluster_members,
    drift,
)

T = TypeVar("T")

__all__ = [
    "Observation",
    "RedisAdminError",
    "RedisAuthError",
    "RedisRefusedError",
    "RedisUnreachableError",
    "ensure",
]

SETTINGS = ("maxmemory", "maxmemory-policy")


class RedisAdminError(Exception):
    """Root of the operator's Redis failures. ``nodes``: each node's state, when several were tried."""

    nodes: tuple[NodeState, ...] = ()


class RedisUnreachableError(RedisAdminError):
    """No answer: connection refused, timed out, or authentication failed."""


class RedisAuthError(RedisUnreachableError):
    """Redis answered but refused the credentials (wrong or missing password)."""


class RedisRefusedError(RedisAdminError):
    """Redis answered but refused the command, or ``CONFIG GET`` shows other values after ``CONFIG SET``."""

    def __init__(self, message: str, stats: RedisStats | None = None) -> None:
        super().__init__(message)
        self.stats = stats


@dataclass(frozen=True)
class Observation:
    """What one ``ensure`` saw: the drift it corrected (name → (before, desired)), Redis's numbers after, and
    every node's state."""

    corrected: Mapping[str, tuple[str | None, str]]
    stats: RedisStats
    nodes: tuple[NodeState, ...] = ()
    role: str = "master"


@dataclass(frozen=True)
class Member:
    """One data node of a cluster or of a Sentinel group."""

    host: str
    port: int
    role: str  # master | replica
    down: bool = False
    why_down: str = ""


@asynccontextmanager
async def connect(target: RedisTarget, password: str | None, timeout: float) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(
        host=target.host,
        port=target.port,
        db=target.db,
        username=target.username,
        password=password,
        ssl=target.tls,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # No client-side retries: kopf retries the whole reconcile with backoff, and each attempt stays
        # bounded by ``timeout`` (redis-py's default would retry 3 times with up to 10 s of backoff).
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    try:
        yield client
    finally:
        await client.aclose()


async def ensure(
    target: RedisTarget,
    password: str | None,
    desired: DesiredSettings,
    *,
    timeout: float = 5.0,
    sentinel_password: str | None = None,
) -> Observation:
    """Make Redis hold ``desired``: read, ``CONFIG SET`` what drifted, verify with ``CONFIG GET``, read INFO.

    For a cluster or a Sentinel group, every node (see the module docstring); corrections are then keyed
    ``"<node> <setting>"`` and the numbers are the primaries' (summed) or the master's.
    """
    if target.sentinel is not None:
        members = await _translate(target, _sentinel_members(target, sentinel_password, timeout))
    elif target.cluster:
        found = await _translate(target, _cluster_members(target, password, timeout))
        members = [Member(h, p, "master" if primary else "replica") for h, p, primary in found]
    else:
        seen = await _ensure_node(target, password, desired, timeout)
        node = NodeState(target.key, seen.role, "Applied")
        return Observation(corrected=seen.corrected, stats=seen.stats, nodes=(node,), role=seen.role)
    return await _ensure_members(target, members, password, desired, timeout)


async def _ensure_members(
    target: RedisTarget,
    members: list[Member],
    password: str | None,
    desired: DesiredSettings,
    timeout: float,
) -> Observation:
    corrected: dict[str, tuple[str | None, str]] = {}
    primaries: list[RedisStats] = []
    nodes: list[NodeState] = []
    failures: list[RedisAdminError] = []
    for member in members:
        address = f"{member.host}:{member.port}"
        if member.down:
            nodes.append(NodeState(address, member.role, "Down", member.why_down))
            continue
        node = replace(target, host=member.host, port=member.port, cluster=False, sentinel=None)
        try:
            seen = await _ensure_node(node, password, desired, timeout)
        except RedisAdminError as exc:
            failures.append(exc)
            nodes.append(NodeState(address, member.role, _state_of(exc), str(exc)))
            continue
        nodes.append(NodeState(address, member.role, "Applied"))
        corrected.update({f"{node.key} {name}": change for name, change in seen.corrected.items()})
        if member.role == "master":
            primaries.append(seen.stats)
    if failures:
        worst = next((f for f in failures if isinstance(f, RedisRefusedError)), failures[0])
        failed = [n.address for n in nodes if not n.ok]
        message = f"{len(failed)} of {len(nodes)} nodes of {target.key} did not take the settings: {worst}"
        error: RedisAdminError
        if isinstance(worst, RedisRefusedError):
            error = RedisRefusedError(message, RedisStats.combine(primaries) if primaries else None)
        else:
            error = type(worst)(message)
        error.nodes = tuple(nodes)
        raise error
    return Observation(corrected=corrected, stats=RedisStats.combine(primaries), nodes=tuple(nodes))


def _state_of(exc: RedisAdminError) -> str:
    if isinstance(exc, RedisAuthError):
        return "AuthenticationFailed"
    if isinstance(exc, RedisUnreachableError):
        return "Unreachable"
    return "Refused"


async def _sentinel_members(
    target: RedisTarget, sentinel_password: str | None, timeout: float
) -> list[Member]:
    """The master and replicas the Sentinels know (replicas they flag down are reported, not tried)."""
    assert target.sentinel is not None
    locator = SentinelLocator(
        target.sentinel, username=target.sentinel_username, password=sentinel_password, timeout=timeout
    )
    try:
        topology = await locator.topology()
    finally:
        await locator.close()
    return [Member(n.host, n.port, n.role, n.down, f"flagged by the Sentinels: {n.flags}") for n in topology]


async def _cluster_members(
    target: RedisTarget, password: str | None, timeout: float
) -> list[tuple[str, int, bool]]:
    async with connect(target, password, timeout) as client:
        members = cluster_members(await client.execute_command("CLUSTER NODES"))  # type: ignore[no-untyped-call]
    if not members:
        raise RedisRefusedError(f"Redis Cluster {target.key} lists no healthy node")
    return members


async def _ensure_node(
    target: RedisTarget, password: str | None, desired: DesiredSettings, timeout: float
) -> Observation:
    return await _translate(target, _set_and_verify(target, password, desired, timeout))


async def _set_and_verify(
    target: RedisTarget, password: str | None, desired: DesiredSettings, timeout: float
) -> Observation:
    async with connect(target, password, timeout) as client:
        corrected = drift(desired, await _config_get(client))
        left = corrected
        for _ in range(2):  # a second try when someone else wrote in between (verify saw their value)
            if not left:
                break
            for name, value in desired.as_config().items():
                await client.config_set(name, value)
            left = drift(desired, await _config_get(client))
        info = await client.info()
        stats = RedisStats.from_info(info)
        if left:
            shown = ", ".join(f"{k}={v[0]!r} (wanted {v[1]!r})" for k, v in sorted(left.items()))
            raise RedisRefusedError(
                f"Redis {target.key} does not hold the settings after CONFIG SET: {shown}", stats
            )
        role = "replica" if info.get("role") == "slave" else "master"
        return Observation(corrected=corrected, stats=stats, role=role)


async def _translate(target: RedisTarget, work: Awaitable[T]) -> T:
    """Await ``work``, translating redis-py's errors into ours (the one place where that happens)."""
    where = f"Redis {target.key}" if target.sentinel is None else f"the Sentinels of {target.key}"
    try:
        return await work
    except RedisAdminError:
        raise
    except redis_errors.AuthenticationError as exc:
        raise RedisAuthError(f"{where}: authentication failed: {exc}") from exc
    except redis_errors.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise RedisAuthError(f"{where}: authentication failed: {exc}") from exc
        raise RedisRefusedError(f"{where} refused the command: {exc}") from exc
    except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError, TimeoutError) as exc:
        raise RedisUnreachableError(f"cannot reach {where}: {exc or type(exc).__name__}") from exc
    except redis_errors.RedisError as exc:
        raise RedisRefusedError(f"{where}: {type(exc).__name__}: {exc}") from exc


async def _config_get(client: aioredis.Redis) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in SETTINGS:
        reply: Mapping[Any, Any] = await client.config_get(name)
        values.update({str(k): str(v) for k, v in reply.items()})
    return values
