"""Redis administration for the operator: read, set and verify ``maxmemory`` / ``maxmemory-policy``.

One short-lived connection per reconcile, every call bounded by a timeout, and redis-py's errors translated
here (and only here) into the two failures the operator reports: Redis unreachable (retry later) and Redis
refused (it answered, but did not take or keep the settings).
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

from mobius_operator.reconcile import DesiredSettings, RedisStats, RedisTarget, cluster_members, drift

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
    """Root of the operator's Redis failures."""


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
    """What one ``ensure`` saw: the drift it corrected (name → (before, desired)) and Redis's numbers after."""

    corrected: Mapping[str, tuple[str | None, str]]
    stats: RedisStats


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
    target: RedisTarget, password: str | None, desired: DesiredSettings, *, timeout: float = 5.0
) -> Observation:
    """Make Redis hold ``desired``: read, ``CONFIG SET`` what drifted, verify with ``CONFIG GET``, read INFO.

    For a Redis Cluster, every healthy node (primaries and replicas) is set; a replica promoted later has the
    settings already. Corrections are then keyed ``"<node> <setting>"``.
    """
    if not target.cluster:
        return await _ensure_node(target, password, desired, timeout)
    members = await _translate(target, _cluster_members(target, password, timeout))
    corrected: dict[str, tuple[str | None, str]] = {}
    primaries = []
    for host, port, primary in members:
        node = replace(target, host=host, port=port, cluster=False)
        seen = await _ensure_node(node, password, desired, timeout)
        corrected.update({f"{node.key} {name}": change for name, change in seen.corrected.items()})
        if primary:
            primaries.append(seen.stats)
    return Observation(corrected=corrected, stats=RedisStats.combine(primaries))


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
        stats = RedisStats.from_info(await client.info())
        if left:
            shown = ", ".join(f"{k}={v[0]!r} (wanted {v[1]!r})" for k, v in sorted(left.items()))
            raise RedisRefusedError(
                f"Redis {target.key} does not hold the settings after CONFIG SET: {shown}", stats
            )
        return Observation(corrected=corrected, stats=stats)


async def _translate(target: RedisTarget, work: Awaitable[T]) -> T:
    """Await ``work``, translating redis-py's errors into ours (the one place where that happens)."""
    where = f"Redis {target.key}"
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
