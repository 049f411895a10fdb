"""mobius-cache: the Redis cache layer of the Mobius platform.

The public API is exactly ``__all__`` (a test checks it). Nothing runs at import.
"""

from ._client import MISS, Cache, SetResult
from ._config import EVICTION_POLICIES, CacheConfig, EvictionPolicy, StrategyConfig, parse_memory
from ._envelope import Entry
from ._exceptions import (
    CacheError,
    CacheTimeoutError,
    CacheUnavailableError,
    CircuitOpenError,
    InvalidationQueuedError,
    InvalidInputError,
    InvalidKeyError,
    InvalidTTLError,
    PoolExhaustedError,
    SerializationError,
    ValueTooLargeError,
)

__all__ = [
    "EVICTION_POLICIES",
    "MISS",
    "Cache",
    "CacheConfig",
    "CacheError",
    "CacheTimeoutError",
    "CacheUnavailableError",
    "CircuitOpenError",
    "Entry",
    "EvictionPolicy",
    "InvalidInputError",
    "InvalidKeyError",
    "InvalidTTLError",
    "InvalidationQueuedError",
    "PoolExhaustedError",
    "SerializationError",
    "SetResult",
    "StrategyConfig",
    "ValueTooLargeError",
    "parse_memory",
]
