"""Search results: ``search:{query_hash}:results:{page}``.

Results go stale when the project's documents or index change, so they get a short TTL (5 minutes) and two
tags: ``project:{project_id}`` (any document change) and ``index:{project_id}:{index_version}`` (a rebuilt
index). The query hash is deterministic over the normalized query and its filters, so "Café  latte" and
"café latte" share an entry in every process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .._client import Cache
from ._hashing import query_hash
from .warming import WarmReport, warm

__all__ = ["SearchCache"]


class SearchCache:
    namespace = "search"

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    @staticmethod
    def key(query: str, page: int = 1, filters: Mapping[str, Any] | None = None) -> str:
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise ValueError(f"page must be an integer >= 1, not {page!r}")
        return f"search:{query_hash(query, filters)}:results:{page}"

    @staticmethod
    def tags(project_id: str | int, index_version: str | int | None = None) -> list[str]:
        tags = [f"project:{project_id}"]
        if index_version is not None:
            tags.append(f"index:{project_id}:{index_version}")
        return tags

    async def get(self, query: str, page: int = 1, filters: Mapping[str, Any] | None = None) -> Any:
        return await self.cache.get(self.key(query, page, filters))

    async def set(
        self,
        query: str,
        results: Any,
        *,
        project_id: str | int,
        page: int = 1,
        filters: Mapping[str, Any] | None = None,
        index_version: str | int | None = None,
        ttl: int | None = None,
    ) -> int:
        return await self.cache.set(
            self.key(query, page, filters), results, ttl, tags=self.tags(project_id, index_version)
        )

    async def warm(
        self,
        queries: Sequence[tuple[str, str | int]],
        search: Callable[[str, int], Awaitable[Any]],
        *,
        pages: int = 1,
        concurrency: int = 8,
    ) -> WarmReport:
        """Warm known-hot queries: ``queries`` are (query, project_id); ``search(query, page)`` loads a page."""
        plan: dict[str, tuple[str, int, str | int]] = {}
        for query, project_id in queries:
            for page in range(1, pages + 1):
                plan[self.key(query, page)] = (query, page, project_id)
        return await warm(
            self.cache,
            list(plan),
            lambda k: search(plan[k][0], plan[k][1]),
            concurrency=concurrency,
            tags_for=lambda k: self.tags(plan[k][2]),
        )

    async def invalidate_project(self, project_id: str | int) -> int:
        return await self.cache.invalidate_tags(f"project:{project_id}")

    async def invalidate_index(self, project_id: str | int, index_version: str | int) -> int:
        return await self.cache.invalidate_tags(f"index:{project_id}:{index_version}")
