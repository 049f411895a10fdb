"""mobius-cache: the Redis cache layer of the Mobius platform.

The public API is exactly ``__all__`` (a test checks it). Nothing runs at import.
"""

from ._client import MISS, Cache, SetResult
from ._config import EVICTION_POLICIES, CacheConfig, EvictionPolicy, StrategyConfig, parse_memory
from ._envelope import Entry
from ._exceptions import (
    CacheConflictError,
    CacheError,
    CacheTimeoutError,
    CacheUnavailableError,
    CircuitOpenError,
    IndexCorruptedError,
    InvalidationQueuedError,
    InvalidInputError,
    InvalidKeyError,
    InvalidTTLError,
    PoolExhaustedError,
    RedisBusyError,
    RedisLoadingError,
    RedisMasterDownError,
    RedisNoPermissionError,
    RedisOutOfMemoryError,
    RedisReadOnlyError,
    RedisRefusedError,
    RedisScriptMissingError,
    SerializationError,
    ValueTooLargeError,
)

__all__ = [
    "EVICTION_POLICIES",
    "MISS",
    "Cache",
    "CacheConfig",
    "CacheConflictError",
    "CacheError",
    "CacheTimeoutError",
    "CacheUnavailableError",
    "CircuitOpenError",
    "Entry",
    "EvictionPolicy",
    "IndexCorruptedError",
    "InvalidInputError",
    "InvalidKeyError",
    "InvalidTTLError",
    "InvalidationQueuedError",
    "PoolExhaustedError",
    "RedisBusyError",
    "RedisLoadingError",
    "RedisMasterDownError",
    "RedisNoPermissionError",
    "RedisOutOfMemoryError",
    "RedisReadOnlyError",
    "RedisRefusedError",
    "RedisScriptMissingError",
    "SerializationError",
    "SetResult",
    "StrategyConfig",
    "ValueTooLargeError",
    "parse_memory",
]
