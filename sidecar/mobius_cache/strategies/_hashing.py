"""Deterministic hashes for keys built from free-form input (queries, request parameters).

The same logical input must give the same key in every process and every language, so nothing here
depends on Python's randomized ``hash()`` or on dict order.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["normalize_query", "params_hash", "query_hash"]

_SPACES = re.compile(r"\s+")


def normalize_query(query: str) -> str:
    """NFKC, case-folded, whitespace collapsed and trimmed: "  Café  LATTE" and "café latte" are one query."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", query).casefold()).strip()


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def query_hash(query: str, filters: Mapping[str, Any] | None = None) -> str:
    """24 hex characters identifying a normalized query plus its filters (sorted)."""
    payload = {"q": normalize_query(query), "f": dict(filters or {})}
    return _digest(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS))


def params_hash(params: Mapping[str, Any] | None) -> str:
    """24 hex characters identifying request parameters regardless of their order. ``None`` values are
    dropped (``?a=1`` and ``?a=1&b=`` mean the same to most APIs); list order is kept (it is meaningful)."""
    clean = {str(k): v for k, v in (params or {}).items() if v is not None}
    return _digest(orjson.dumps(clean, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS))
