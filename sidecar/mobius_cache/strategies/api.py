"""API responses: ``api:v1:{endpoint}:{params_hash}``.

Short TTL (60 s). The parameters hash ignores parameter order and ``None`` values, so ``?b=2&a=1`` and
``?a=1&b=2`` share an entry. Responses are tagged by the resources they show (``resource:{kind}:{id}``),
so updating a document removes every cached response that included it, whatever the endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .._client import Cache
from ._hashing import params_hash

__all__ = ["ApiResponseCache", "resource_tag"]

_ENDPOINT = re.compile(r"^[A-Za-z0-9_.\-/]{1,200}$")


def resource_tag(kind: str, resource_id: str | int) -> str:
    return f"resource:{kind}:{resource_id}"


class ApiResponseCache:
    namespace = "api"

    def __init__(self, cache: Cache, version: str = "v1") -> None:
        self.cache = cache
        self.version = version

    def key(self, endpoint: str, params: Mapping[str, Any] | None = None) -> str:
        """``endpoint`` like ``documents/list`` (slashes become dots so the key keeps its segments)."""
        if not _ENDPOINT.match(endpoint):
            raise ValueError(f"endpoint must be 1-200 characters of [A-Za-z0-9_.-/]: {endpoint!r}")
        return f"api:{self.version}:{endpoint.strip('/').replace('/', '.')}:{params_hash(params)}"

    async def get(self, endpoint: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.cache.get(self.key(endpoint, params))

    async def set(
        self,
        endpoint: str,
        params: Mapping[str, Any] | None,
        response: Any,
        *,
        resources: Iterable[tuple[str, str | int]] = (),
        ttl: int | None = None,
    ) -> int:
        tags = [resource_tag(kind, rid) for kind, rid in resources]
        return await self.cache.set(self.key(endpoint, params), response, ttl, tags=tags)

    async def invalidate_resource(self, kind: str, resource_id: str | int) -> int:
        return await self.cache.invalidate_tags(resource_tag(kind, resource_id))
