"""Every error the cache layer raises, in one tree.

::

    CacheError
    ├── InvalidInputError (also ValueError)    the caller passed something we refuse
    │   ├── InvalidKeyError                      empty, > 512 bytes, whitespace/control characters
    │   ├── InvalidTTLError                      TTL <= 0 or not an integer
    │   ├── ValueTooLargeError                   encoded value above max_value_bytes
    │   └── SerializationError                   a value that cannot be encoded, or stored bytes that cannot be decoded
    └── CacheUnavailableError                  Redis cannot serve the request now; retry later
        ├── CircuitOpenError                     the breaker is open: failed at once, Redis was not asked
        ├── PoolExhaustedError                   no free connection within pool_timeout
        ├── CacheTimeoutError                    Redis did not answer within the socket timeout
        └── InvalidationQueuedError              an invalidation could not run now; it is queued and replayed

redis-py's exceptions are translated in exactly one place (:func:`translate`); nothing is swallowed there.
"""

from __future__ import annotations

from redis import exceptions as redis_errors

__all__ = [
    "CacheError",
    "CacheTimeoutError",
    "CacheUnavailableError",
    "CircuitOpenError",
    "InvalidInputError",
    "InvalidKeyError",
    "InvalidTTLError",
    "InvalidationQueuedError",
    "PoolExhaustedError",
    "SerializationError",
    "ValueTooLargeError",
    "translate",
]


class CacheError(Exception):
    """Root of every mobius-cache error."""


class InvalidInputError(CacheError, ValueError):
    """The caller's input is refused; the message says why. Not retryable."""


class InvalidKeyError(InvalidInputError):
    pass


class InvalidTTLError(InvalidInputError):
    pass


class ValueTooLargeError(InvalidInputError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"value is {size} bytes encoded; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class SerializationError(InvalidInputError):
    pass


class CacheUnavailableError(CacheError):
    """Redis could not serve the operation. Reads never raise it (they miss); writes do."""


class CircuitOpenError(CacheUnavailableError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Redis is unavailable (circuit open); retry in {retry_after:.1f}s")
        self.retry_after = retry_after


class PoolExhaustedError(CacheUnavailableError):
    pass


class CacheTimeoutError(CacheUnavailableError):
    pass


class InvalidationQueuedError(CacheUnavailableError):
    """The invalidation did not reach Redis; it is queued and will be replayed when Redis is back."""

    def __init__(self, message: str, queued: int) -> None:
        super().__init__(message)
        self.queued = queued


def translate(exc: BaseException) -> CacheError:
    """Map a redis-py (or socket) error onto our tree. The original stays attached as ``__cause__``."""
    if isinstance(exc, CacheError):
        return exc
    if isinstance(exc, redis_errors.MaxConnectionsError) or (
        isinstance(exc, redis_errors.ConnectionError) and "No connection available" in str(exc)
    ):
        err: CacheError = PoolExhaustedError(f"no free Redis connection: {exc}")
    elif isinstance(exc, redis_errors.ReadOnlyError):
        err = CacheUnavailableError(
            f"Redis is read-only here (a replica, or a master demoted by a failover; reconnecting): {exc}"
        )
    elif isinstance(exc, _CLUSTER_TRANSIENT):
        err = CacheUnavailableError(f"Redis Cluster cannot serve this now (failover?): {exc}")
    elif isinstance(exc, redis_errors.TimeoutError | TimeoutError):
        err = CacheTimeoutError(f"Redis did not answer in time: {exc or type(exc).__name__}")
    elif isinstance(exc, redis_errors.ConnectionError | ConnectionError | OSError):
        err = CacheUnavailableError(f"cannot reach Redis: {exc}")
    elif isinstance(exc, redis_errors.ResponseError):
        msg = str(exc)
        if isinstance(exc, redis_errors.OutOfMemoryError) or msg.startswith("OOM"):
            err = CacheUnavailableError(f"Redis is out of memory (maxmemory reached under noeviction): {msg}")
        else:
            err = CacheError(f"Redis refused the command: {msg}")
    else:
        err = CacheError(f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


#: Cluster replies that mean "not now" (a failover in progress), not "your command is wrong".
_CLUSTER_TRANSIENT: tuple[type[BaseException], ...] = (
    redis_errors.ClusterError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    redis_errors.RedisClusterException,
)

#: Errors that say "Redis could not serve it", worth a retry and counted by the breaker.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
    *_CLUSTER_TRANSIENT,
)
