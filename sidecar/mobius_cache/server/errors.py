"""Errors as the API promises them: JSON ``{"error": "<code>", "detail": "<message>"}``, never a stack trace.

The cache layer's exception tree is mapped onto HTTP statuses here, in one table, for both the FastAPI routes
and the lean hot path.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from pydantic import BaseModel

from mobius_cache._exceptions import (
    CacheError,
    CacheUnavailableError,
    CircuitOpenError,
    InvalidInputError,
    InvalidKeyError,
    InvalidTTLError,
    SerializationError,
    ValueTooLargeError,
)

__all__ = ["ApiError", "ErrorBody", "error_for", "error_payload"]

#: The Retry-After (seconds) sent with a 503 when the error does not say how long to wait.
DEFAULT_RETRY_AFTER = 1


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
    if isinstance(exc, CacheUnavailableError):
        retry_after: Any = getattr(exc, "retry_after", DEFAULT_RETRY_AFTER)
        if isinstance(exc, CircuitOpenError):
            retry_after = exc.retry_after
        seconds = max(1, math.ceil(float(retry_after or DEFAULT_RETRY_AFTER)))
        return ApiError(503, "cache_unavailable", str(exc), {"Retry-After": str(seconds)})
    # Redis refused a command (e.g. INCR on a non-integer value): the request cannot succeed as sent.
    return ApiError(409, "cache_conflict", str(exc))
