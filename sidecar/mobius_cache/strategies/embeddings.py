"""Document embeddings: ``document:{document_id}:embedding``.

Embeddings are large, expensive to compute and change only when the document does, so they get a long TTL
(7 days by default) and the ``float32`` serializer: 4 bytes a dimension, little-endian, where JSON spends
~10-20 (``bytes_saved`` reports the difference for a given vector). Each embedding depends on its project's
metadata key and carries the tag ``project:{project_id}``, so a project change removes its embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from .._client import MISS, Cache
from .._envelope import encode

__all__ = ["EmbeddingCache", "bytes_saved"]


def bytes_saved(vector: Sequence[float]) -> dict[str, int]:
    """Stored size of ``vector`` as JSON vs as float32, in bytes (envelope included)."""
    as_json = len(orjson.dumps(list(vector))) + 2
    as_f32 = len(encode(list(vector), "float32"))
    return {"json": as_json, "float32": as_f32, "saved": as_json - as_f32}


class EmbeddingCache:
    namespace = "document"

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    @staticmethod
    def key(document_id: str | int) -> str:
        return f"document:{document_id}:embedding"

    async def get(self, document_id: str | int) -> list[float] | Any:
        """The vector as a list of floats, or ``MISS``."""
        return await self.cache.get(self.key(document_id))

    async def set(
        self, document_id: str | int, vector: Sequence[float], *, project_id: str | int | None = None
    ) -> int:
        tags = [f"project:{project_id}"] if project_id is not None else []
        parents = [f"project:{project_id}:metadata"] if project_id is not None else []
        return await self.cache.set(self.key(document_id), vector, tags=tags, depends_on=parents)

    async def get_many(self, document_ids: Iterable[str | int]) -> dict[str, list[float]]:
        """Vectors by document id (as given, stringified); absent ones are left out. One round trip."""
        ids = [str(d) for d in document_ids]
        found = await self.cache.get_many([self.key(d) for d in ids])
        return {d: found[self.key(d)] for d in ids if found.get(self.key(d), MISS) is not MISS}

    async def invalidate(self, document_id: str | int) -> int:
        return await self.cache.invalidate(self.key(document_id))
