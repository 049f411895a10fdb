"""Every error the cache layer raises, in one tree.

::

    CacheError
    ├── InvalidInputError (also ValueError)    the caller passed something we refuse
    │   ├── InvalidKeyError                      empty, > 512 bytes, whitespace/control characters
    │   ├── InvalidTTLError                      TTL <= 0 or not an integer
    │   ├── ValueTooLargeError                   encoded value above max_value_bytes
    │   └── SerializationError                   a value that cannot be encoded, or stored bytes that cannot be decoded
    ├── CacheConflictError                     what is stored conflicts with the request (INCR on a non-integer)
    └── CacheUnavailableError                  Redis cannot serve the request now; retry later
        ├── CircuitOpenError                     the breaker is open: failed at once, Redis was not asked
        ├── PoolExhaustedError                   no free connection within pool_timeout
        ├── CacheTimeoutError                    Redis did not answer within the socket timeout
        ├── InvalidationQueuedError              an invalidation could not run now; it is queued and replayed
        └── RedisRefusedError                    Redis refused: the server's or the deployment's fault, not the caller's
            ├── RedisLoadingError                  LOADING     still loading its dataset          (outage)
            ├── RedisBusyError                     BUSY        running a long script               (outage)
            ├── RedisMasterDownError               MASTERDOWN  a replica without its primary       (outage)
            ├── RedisReadOnlyError                 READONLY    a read-only replica                 (outage)
            ├── RedisOutOfMemoryError              OOM         maxmemory reached under noeviction
            ├── RedisNoPermissionError             NOPERM      the Redis user's ACL lacks a command or key
            ├── RedisScriptMissingError            NOSCRIPT    the script cache was flushed (reloaded at once)
            └── IndexCorruptedError                BADINDEX    an index key holds something that is not an index

A refusal marked *outage* means "this Redis cannot serve us": the breaker counts it like a lost connection and
``Cache.health()`` reports it. The others leave reads working (an OOM or a missing write permission still lets
reads and deletes through), so they are reported, not counted. Every refusal carries ``redis_code``,
``command`` and ``retry_after`` (seconds, or ``None`` when only a fix of the deployment helps).

redis-py's exceptions are translated in exactly one place (:func:`translate`); nothing is swallowed there.
"""

from __future__ import annotations

import re

from redis import exceptions as redis_errors

__all__ = [
    "CacheConflictError",
    "CacheError",
    "CacheTimeoutError",
    "CacheUnavailableError",
    "CircuitOpenError",
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


class CacheConflictError(CacheError):
    """What is stored conflicts with the request: INCR on a value that is not an integer counter, a command
    on a key that holds another type. The caller's doing (or another writer's), not Redis's; not retryable."""


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


class RedisRefusedError(CacheUnavailableError):
    """Redis answered, and refused, for a reason that is the server's or the deployment's, not the caller's.

    A write refused this way stored nothing: the scripts check everything that can be refused before their
    first write (see ``_scripts``). Subclasses name the common causes; others (``MISCONF``, ``NOREPLICAS``,
    an unknown error) are this class itself, with ``redis_code`` saying which."""

    #: Redis's error code (the first word of its error reply).
    default_code = "ERR"
    #: Seconds after which a retry may succeed; ``None``: only a fix of the deployment helps.
    default_retry_after: float | None = None
    #: True when this Redis cannot serve us at all: counted by the breaker, reported by ``health()``.
    outage = False

    def __init__(
        self,
        message: str,
        *,
        redis_code: str | None = None,
        command: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.redis_code = redis_code or self.default_code
        self.command = command
        self.retry_after = retry_after if retry_after is not None else self.default_retry_after


class RedisLoadingError(RedisRefusedError):
    default_code, default_retry_after, outage = "LOADING", 1.0, True


class RedisBusyError(RedisRefusedError):
    default_code, default_retry_after, outage = "BUSY", 1.0, True


class RedisMasterDownError(RedisRefusedError):
    default_code, default_retry_after, outage = "MASTERDOWN", 1.0, True


class RedisReadOnlyError(RedisRefusedError):
    default_code, default_retry_after, outage = "READONLY", 1.0, True


class RedisOutOfMemoryError(RedisRefusedError):
    default_code, default_retry_after = "OOM", 1.0


class RedisNoPermissionError(RedisRefusedError):
    default_code = "NOPERM"


class RedisScriptMissingError(RedisRefusedError):
    default_code, default_retry_after = "NOSCRIPT", 1.0


class IndexCorruptedError(RedisRefusedError):
    default_code = "BADINDEX"


#: Redis error code → (class, what it means for us). ``MISCONF`` and ``NOREPLICAS`` refuse writes until the
#: server's disk or replicas recover, so a retry may help.
_REFUSALS: dict[str, tuple[type[RedisRefusedError], str, float | None]] = {
    "LOADING": (
        RedisLoadingError,
        "Redis is loading its dataset and refuses commands until it is done",
        None,
    ),
    "BUSY": (RedisBusyError, "Redis is busy running a script and answers nothing else until it ends", None),
    "MASTERDOWN": (
        RedisMasterDownError,
        "this Redis is a replica that lost its primary and does not serve stale data",
        None,
    ),
    "READONLY": (
        RedisReadOnlyError,
        "this Redis is a read-only replica: writes and invalidations need the primary (check the Redis URL, "
        "or wait for the failover)",
        None,
    ),
    "OOM": (RedisOutOfMemoryError, "Redis is out of memory (maxmemory reached under noeviction)", None),
    "NOPERM": (
        RedisNoPermissionError,
        "the Redis user lacks a permission this operation needs (fix its ACL)",
        None,
    ),
    "NOSCRIPT": (RedisScriptMissingError, "Redis does not have the script loaded", None),
    "BADINDEX": (
        IndexCorruptedError,
        "an index key holds something that is not an index; invalidating that tag or parent removes it",
        None,
    ),
    "MISCONF": (RedisRefusedError, "Redis refuses writes: it cannot persist to disk", 1.0),
    "NOREPLICAS": (RedisRefusedError, "Redis refuses writes: too few replicas are connected", 1.0),
}

#: redis-py strips the code from the message of the errors it has a class for.
_CODE_OF_CLASS: tuple[tuple[type[BaseException], str], ...] = (
    (redis_errors.OutOfMemoryError, "OOM"),
    (redis_errors.ReadOnlyError, "READONLY"),
    (redis_errors.NoPermissionError, "NOPERM"),
    (redis_errors.NoScriptError, "NOSCRIPT"),
    (redis_errors.BusyLoadingError, "LOADING"),
    (redis_errors.MasterDownError, "MASTERDOWN"),
)

#: What Redis 7 says (with code ERR) when a script calls a command its user may not run.
_SCRIPT_ACL_DENIAL = "user executing the script can't run this command"
_SCRIPT_SUFFIX = re.compile(r"\s*script: [0-9a-f]{40}, on @user_script:\d+\.?$")
_CODE_WORD = re.compile(r"^[A-Z][A-Z_]+(?= |$)")
#: Replies that say the caller's request conflicts with the stored data.
_CONFLICT_CODES = frozenset({"WRONGTYPE"})
_CONFLICT_PHRASES = ("not an integer or out of range", "would overflow", "is not a valid float")


def redis_error_code(exc: BaseException) -> tuple[str, str]:
    """``(code, message)`` of a Redis error reply, the message without the code and without the script
    location Redis appends to errors raised inside a script."""
    message = _SCRIPT_SUFFIX.sub("", str(exc)).strip()
    for cls, code in _CODE_OF_CLASS:
        if isinstance(exc, cls):
            return code, message.removeprefix(code + " ")
    match = _CODE_WORD.match(message)
    if match:
        return match.group(0), message[match.end() :].strip()
    if _SCRIPT_ACL_DENIAL in message:
        return "NOPERM", message
    return "ERR", message


def translate(exc: BaseException, command: str | None = None) -> CacheError:
    """Map a redis-py (or socket) error onto our tree. ``command`` names what was sent (``SET``,
    ``EVALSHA set_indexed``) for the message. The original stays attached as ``__cause__``."""
    if isinstance(exc, CacheError):
        return exc
    where = f"{command}: " if command else ""
    if isinstance(exc, redis_errors.MaxConnectionsError) or (
        isinstance(exc, redis_errors.ConnectionError) and "No connection available" in str(exc)
    ):
        err: CacheError = PoolExhaustedError(f"no free Redis connection: {exc}")
    elif isinstance(exc, redis_errors.ResponseError | redis_errors.BusyLoadingError):
        err = _from_reply(exc, command, where)
    elif isinstance(exc, _CLUSTER_TRANSIENT):
        err = CacheUnavailableError(f"Redis Cluster cannot serve this now (failover?): {where}{exc}")
    elif isinstance(exc, redis_errors.TimeoutError | TimeoutError):
        err = CacheTimeoutError(f"Redis did not answer in time: {where}{exc or type(exc).__name__}")
    elif isinstance(exc, redis_errors.ConnectionError | ConnectionError | OSError):
        err = CacheUnavailableError(f"cannot reach Redis: {where}{exc}")
    else:
        err = CacheError(f"{type(exc).__name__}: {where}{exc}")
    err.__cause__ = exc
    return err


def _from_reply(exc: BaseException, command: str | None, where: str) -> CacheError:
    code, message = redis_error_code(exc)
    refusal = _REFUSALS.get(code)
    if refusal is not None:
        cls, meaning, retry_after = refusal
        return cls(
            f"{meaning} [{where}{code} {message}]", redis_code=code, command=command, retry_after=retry_after
        )
    if isinstance(exc, _CLUSTER_TRANSIENT):  # TRYAGAIN, CLUSTERDOWN: a failover in progress
        return CacheUnavailableError(f"Redis Cluster cannot serve this now (failover?): {where}{exc}")
    if code in _CONFLICT_CODES or any(p in message for p in _CONFLICT_PHRASES):
        return CacheConflictError(f"{where}{code} {message}")
    return RedisRefusedError(f"Redis refused {where}{code} {message}", redis_code=code, command=command)


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
