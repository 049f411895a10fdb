"""User sessions: ``user:{user_id}:session`` — the one kind of data that must not be silently lost.

Everything else in the cache can be recomputed; a session evicted under memory pressure logs a user out. So:

- Sessions have a sliding TTL: every read extends it (``GETEX``, one round trip), 30 minutes by default.
- Sessions live in a Redis whose ``maxmemory-policy`` is ``noeviction``. Under memory pressure such a Redis
  refuses new writes with an OOM error (raised as ``CacheUnavailableError``, loud and countable) instead of
  evicting existing sessions. Run one for sessions (the chart's ``sessions`` Redis, or any managed Redis with
  that policy) and give it its own ``Cache``.
- ``SessionStore`` checks the policy before its first write and refuses to store sessions in an evicting
  Redis, unless the caller explicitly accepts the risk with ``allow_eviction=True``.
"""

from __future__ import annotations

from typing import Any

from .._client import Cache
from .._exceptions import CacheError

__all__ = ["SessionStore", "SessionStoreUnsafeError"]


class SessionStoreUnsafeError(CacheError):
    """The Redis behind the session store may evict sessions."""


class SessionStore:
    namespace = "user"

    def __init__(self, cache: Cache, *, allow_eviction: bool = False) -> None:
        self.cache = cache
        self.allow_eviction = allow_eviction
        self._checked = False
        self.policy: str | None = None

    @staticmethod
    def key(user_id: str | int) -> str:
        return f"user:{user_id}:session"

    async def check(self) -> dict[str, Any]:
        """The store's eviction safety: ``{"policy": ..., "safe": bool}``. Raises when Redis cannot answer."""
        health = await self.cache.health()
        if not health.get("ok"):
            raise CacheError(f"cannot check the session store: {health.get('error')}")
        self.policy = health.get("policy")
        return {"policy": self.policy, "safe": self.policy == "noeviction"}

    async def _ensure_safe(self) -> None:
        if self._checked or self.allow_eviction:
            return
        verdict = await self.check()
        if not verdict["safe"]:
            raise SessionStoreUnsafeError(
                f"refusing to store sessions in a Redis with maxmemory-policy {verdict['policy']!r}: it may "
                "evict them silently. Use a Redis with 'noeviction' for sessions (see docs/invalidation.md), "
                "or pass allow_eviction=True to accept the risk."
            )
        self._checked = True

    async def get(self, user_id: str | int) -> Any:
        """The session, or ``MISS``; a hit extends its TTL (sliding expiry)."""
        return await self.cache.get(self.key(user_id))

    async def set(self, user_id: str | int, session: Any, ttl: int | None = None) -> int:
        await self._ensure_safe()
        return await self.cache.set(self.key(user_id), session, ttl)

    async def delete(self, user_id: str | int) -> int:
        return await self.cache.invalidate(self.key(user_id))
