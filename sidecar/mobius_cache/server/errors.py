"""Errors as the API promises them: JSON ``{"error": "<code>", "detail": "<message>"}``, never a stack trace.

The cache layer's exception tree is mapped onto HTTP statuses here, in one table, for both the FastAPI routes
and the lean hot path. A Redis refusal that is the server's or the deployment's fault is a 5xx with its own
code (:data:`REFUSALS`), never the 409 that says the client caused it.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from pydantic import BaseModel

from mobius_cache._exceptions import (
    CacheConflictError,
    CacheError,
    CacheUnavailableError,
    CircuitOpenError,
    InvalidInputError,
    InvalidKeyError,
    InvalidTTLError,
    RedisRefusedError,
    SerializationError,
    ValueTooLargeError,
)

__all__ = ["REFUSALS", "ApiError", "ErrorBody", "error_for", "error_payload"]

#: The Retry-After (seconds) sent with a 503 when the error does not say how long to wait.
DEFAULT_RETRY_AFTER = 1

#: Redis error code -> (status, error code). 503: this Redis cannot serve the request now, retry (Retry-After).
#: 507: it is full (noeviction): nothing was stored, a retry may work once keys expire. 502: it refused for a
#: reason only a fix of the deployment cures (a missing ACL permission). 500: an index key of ours holds
#: something else. Any other refusal is 502 ``redis_error``.
REFUSALS: dict[str, tuple[int, str]] = {
    "LOADING": (503, "redis_loading"),
    "BUSY": (503, "redis_busy"),
    "MASTERDOWN": (503, "redis_master_down"),
    "READONLY": (503, "redis_read_only"),
    "NOSCRIPT": (503, "redis_noscript"),
    "MISCONF": (503, "redis_misconf"),
    "NOREPLICAS": (503, "redis_no_replicas"),
    "OOM": (507, "redis_out_of_memory"),
    "NOPERM": (502, "redis_no_permission"),
    "BADINDEX": (500, "index_corrupted"),
}


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str
    detail: str


class ApiError(Exception):
    """An error response decided by the sidecar itself (auth, body size, preconditions, media types)."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def error_payload(code: str, detail: str) -> bytes:
    return orjson.dumps({"error": code, "detail": detail})


def error_for(exc: CacheError) -> ApiError:
    """The HTTP answer to a cache-layer error."""
    if isinstance(exc, InvalidKeyError):
        return ApiError(400, "invalid_key", str(exc))
    if isinstance(exc, InvalidTTLError):
        return ApiError(400, "invalid_ttl", str(exc))
    if isinstance(exc, ValueTooLargeError):
        return ApiError(413, "value_too_large", str(exc))
    if isinstance(exc, SerializationError):
        return ApiError(400, "invalid_value", str(exc))
    if isinstance(exc, InvalidInputError):
        return ApiError(400, "invalid_input", str(exc))
    if isinstance(exc, RedisRefusedError):
        status, code = REFUSALS.get(exc.redis_code, (502, "redis_error"))
        headers = {} if exc.retry_after is None else {"Retry-After": _seconds(exc.retry_after)}
        return ApiError(status, code, str(exc), headers)
    if isinstance(exc, CacheUnavailableError):
        retry_after: Any = getattr(exc, "retry_after", DEFAULT_RETRY_AFTER)
        if isinstance(exc, CircuitOpenError):
            retry_after = exc.retry_after
        return ApiError(503, "cache_unavailable", str(exc), {"Retry-After": _seconds(retry_after)})
    if isinstance(exc, CacheConflictError):
        # What is stored conflicts with the request (INCR on a value that is not an integer counter).
        return ApiError(409, "cache_conflict", str(exc))
    return ApiError(500, "cache_error", str(exc))


def _seconds(retry_after: Any) -> str:
    return str(max(1, math.ceil(float(retry_after or DEFAULT_RETRY_AFTER))))
