"""Request and response bodies of the JSON endpoints (they shape the OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BatchGetReply",
    "BatchGetRequest",
    "BatchItem",
    "BatchSetReply",
    "BatchSetRequest",
    "DeletedReply",
    "HealthReply",
    "IncrReply",
    "IncrRequest",
    "InvalidateRequest",
    "ReadyReply",
]

#: Keys, tags and items in one batch request; bounded so one request cannot monopolise Redis.
MAX_BATCH = 1000

Key = Field(min_length=1, max_length=512)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncrRequest(_Strict):
    by: int = Field(default=1, ge=-(2**63), le=2**63 - 1, description="amount to add (may be negative)")
    ttl: int | None = Field(default=None, description="TTL in seconds set when the counter is created")


class IncrReply(BaseModel):
    value: int


class DeletedReply(BaseModel):
    deleted: int = Field(description="number of Redis keys removed")
    queued: int = Field(default=0, description="invalidations queued for replay (Redis unreachable)")


class BatchGetRequest(_Strict):
    keys: list[str] = Field(max_length=MAX_BATCH, description="logical keys, read in one round trip")


class BatchGetReply(BaseModel):
    hits: dict[str, Any] = Field(
        description='JSON values inline, text as a string, anything else as {"$base64": "..."}'
    )
    misses: list[str]


class BatchItem(_Strict):
    key: str
    value: Any = Field(description='any JSON value; {"$base64": "..."} stores bytes')
    ttl: int | None = Field(default=None, description="seconds; default: the namespace's strategy TTL")
    tags: list[str] = Field(default_factory=list, max_length=MAX_BATCH)


class BatchSetRequest(_Strict):
    items: list[BatchItem] = Field(max_length=MAX_BATCH)


class BatchSetReply(BaseModel):
    stored: int


class InvalidateRequest(_Strict):
    keys: list[str] = Field(default_factory=list, max_length=MAX_BATCH)
    pattern: str | None = Field(default=None, description="glob inside the prefix, e.g. 'search:*'")
    tags: list[str] = Field(default_factory=list, max_length=MAX_BATCH)
    cascade: str | None = Field(default=None, description="a key removed with everything that depends on it")


class HealthReply(BaseModel):
    status: str


class RedisState(BaseModel):
    up: bool
    circuit: str
    ping_ms: float | None = None
    error: str | None = None


class PolicyInfo(BaseModel):
    file: str | None
    hash: str | None
    reloads: int
    error: str | None


class ReadyReply(BaseModel):
    status: str = Field(
        description="'ready' whenever the sidecar serves; Redis being down does not change it"
    )
    redis: RedisState
    policy: PolicyInfo | None
