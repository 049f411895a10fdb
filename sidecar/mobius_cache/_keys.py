"""Logical keys: validation, the prefix, namespaces and TTL rules.

Callers never add the prefix themselves; the layer does, so two platforms sharing a Redis cannot collide and
pattern invalidation can never reach outside the prefix.
"""

from __future__ import annotations

import re
from typing import Any

from ._config import CacheConfig, StrategyConfig
from ._exceptions import InvalidKeyError, InvalidTTLError

__all__ = ["MAX_KEY_BYTES", "KeySpace", "namespace_of", "validate_key"]

MAX_KEY_BYTES = 512
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
_DEFAULT_STRATEGY = StrategyConfig()


def validate_key(key: Any) -> str:
    """Return ``key`` when it is 1-512 bytes of UTF-8 with no whitespace or control characters."""
    if type(key) is not str:
        raise InvalidKeyError(f"a key must be a string, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("a key must not be empty")
    size = len(key) if key.isascii() else len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(f"a key must be at most {MAX_KEY_BYTES} bytes of UTF-8, this one is {size}")
    if _BAD_CHARS.search(key):
        raise InvalidKeyError(f"a key must not contain whitespace or control characters: {key[:80]!r}")
    if key[0] == "~":
        # <prefix>~tag:... and <prefix>~deps:... are the layer's indexes: a value there would corrupt one.
        raise InvalidKeyError(f"keys starting with '~' are reserved for the cache's indexes: {key[:80]!r}")
    return key


def namespace_of(key: str) -> str:
    """The first segment of a logical key: ``user`` in ``user:42:session``."""
    return key.partition(":")[0]


class KeySpace:
    """Maps logical keys to Redis keys and resolves TTLs, for one configuration (immutable; swapped on reload)."""

    __slots__ = ("_ns_labels", "config", "events_channel", "prefix", "prefix_bytes")

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.prefix = config.cache_prefix
        self.prefix_bytes = self.prefix.encode()
        self.events_channel = f"{self.prefix}events"
        self._ns_labels = frozenset(config.strategies)

    def full(self, key: str) -> str:
        """The Redis key of a logical key (validated)."""
        return self.prefix + validate_key(key)

    def logical(self, redis_key: str | bytes) -> str:
        """The logical key of a Redis key written by this layer."""
        if isinstance(redis_key, bytes):
            redis_key = redis_key.decode("utf-8", "surrogateescape")
        return redis_key[len(self.prefix) :] if redis_key.startswith(self.prefix) else redis_key

    def tag_key(self, tag: str) -> str:
        """The sorted set indexing the keys that carry ``tag`` (member: Redis key, score: expiry in ms)."""
        return f"{self.prefix}~tag:{validate_tag(tag)}"

    def deps_key(self, parent_redis_key: str) -> str:
        """The sorted set of the keys that depend on a parent (member: Redis key, score: expiry in ms)."""
        return f"{self.prefix}~deps:{parent_redis_key}"

    def strategy(self, key: str) -> StrategyConfig:
        return self.config.strategies.get(namespace_of(key), _DEFAULT_STRATEGY)

    def ns_label(self, key: str) -> str:
        """The namespace as a metric label: known strategies by name, everything else as ``other``
        (bounded label cardinality whatever keys callers invent)."""
        ns = key.partition(":")[0]
        return ns if ns in self._ns_labels else "other"

    def resolve_ttl(self, key: str, ttl: Any) -> int:
        """The effective TTL: given → validated and clamped to max_ttl; else the strategy's, else the default."""
        cfg = self.config
        if ttl is None:
            strategy_ttl = self.strategy(key).ttl
            ttl = strategy_ttl if strategy_ttl is not None else cfg.default_ttl
        elif type(ttl) is not int:
            if isinstance(ttl, bool) or not isinstance(ttl, int | float):
                raise InvalidTTLError(f"a TTL must be a whole number of seconds, not {type(ttl).__name__}")
            if ttl != int(ttl):
                raise InvalidTTLError(f"a TTL must be a whole number of seconds, not {ttl}")
            ttl = int(ttl)
        if ttl <= 0:
            raise InvalidTTLError(f"a TTL must be > 0 seconds, not {ttl}")
        return ttl if ttl <= cfg.max_ttl else cfg.max_ttl


def validate_tag(tag: Any) -> str:
    if type(tag) is not str or not tag or len(tag) > 256 or _BAD_CHARS.search(tag):
        raise InvalidKeyError(
            f"a tag must be 1-256 characters without whitespace or control characters: {tag!r}"
        )
    return tag
