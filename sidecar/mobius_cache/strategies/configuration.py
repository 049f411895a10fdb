"""Configuration: ``config:{name}``.

Read on every request, changed rarely: a long TTL (24 h), warmed at start-up so the first requests do not
all miss, and invalidated by the ``config_changed`` event (which every instance sees on the events channel)
rather than by waiting for the TTL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .._client import Cache
from .warming import WarmReport, warm

__all__ = ["ConfigCache"]

Loader = Callable[[str], Awaitable[Any]]


class ConfigCache:
    namespace = "config"

    def __init__(self, cache: Cache, loader: Loader) -> None:
        self.cache = cache
        self.loader = loader

    @staticmethod
    def key(name: str) -> str:
        return f"config:{name}"

    async def get(self, name: str) -> Any:
        """Cache-aside through the loader, single-flight per name."""
        return await self.cache.get_or_set(self.key(name), lambda: self.loader(name))

    async def warm(self, names: Iterable[str], *, concurrency: int = 8) -> WarmReport:
        names = list(names)
        by_key = {self.key(n): n for n in names}
        return await warm(self.cache, list(by_key), lambda k: self.loader(by_key[k]), concurrency=concurrency)

    async def invalidate(self, name: str) -> int:
        return await self.cache.invalidate(self.key(name))
