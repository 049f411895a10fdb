"""Request and response bodies of the JSON endpoints (they shape the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

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

#: What the cache accepts (mobius_cache._keys): no whitespace (Python's \s, hence \x85) or control characters.
TAG_PATTERN = r"^[^\s\x00-\x1f\x7f\x85]+$"
#: As a tag, and not starting with "~" (reserved for the cache's own index keys).
KEY_PATTERN = r"^[^\s\x00-\x1f\x7f\x85~][^\s\x00-\x1f\x7f\x85]*$"
Key = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=KEY_PATTERN)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=TAG_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("by", "ttl", mode="before", check_fields=False)
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        # JSON true/false are not numbers here (pydantic would read them as 1/0); 1.0 still is.
        if isinstance(value, bool):
            raise ValueError("must be an integer, not a boolean")
        return value


class IncrRequest(_Strict):
    by: int = Field(default=1, ge=-(2**53), le=2**53, description="amount to add (may be negative)")
    ttl: int | None = Field(default=None, gt=0, description="TTL in seconds set when the counter is created")


class IncrReply(BaseModel):
    value: int


class DeletedReply(BaseModel):
    deleted: int = Field(description="number of Redis keys removed")
    queued: int = Field(default=0, description="invalidations queued for replay (Redis unreachable)")


class BatchGetRequest(_Strict):
    keys: list[Key] = Field(max_length=MAX_BATCH, description="logical keys, read in one round trip")


class BatchGetReply(BaseModel):
    hits: dict[str, Any] = Field(
        description='JSON values inline, text as a string, anything else as {"$base64": "..."}'
    )
    misses: list[str]


class BatchItem(_Strict):
    key: Key
    value: Any = Field(description='any JSON value; {"$base64": "..."} stores bytes')
    ttl: int | None = Field(default=None, gt=0, description="seconds; default: the namespace's strategy TTL")
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_BATCH)


class BatchSetRequest(_Strict):
    items: list[BatchItem] = Field(max_length=MAX_BATCH)


class BatchSetReply(BaseModel):
    stored: int


class InvalidateRequest(_Strict):
    # At least one selector must be given (also checked in the route, with a clear message).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["keys"], "properties": {"keys": {"minItems": 1}}},
                {"required": ["pattern"], "properties": {"pattern": {"type": "string"}}},
                {"required": ["tags"], "properties": {"tags": {"minItems": 1}}},
                {"required": ["cascade"], "properties": {"cascade": {"type": "string"}}},
            ]
        },
    )
    keys: list[Key] = Field(default_factory=list, max_length=MAX_BATCH)
    pattern: Key | None = Field(default=None, description="glob inside the prefix, e.g. 'search:*'")
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_BATCH)
    cascade: Key | None = Field(default=None, description="a key removed with everything that depends on it")


class HealthReply(BaseModel):
    status: str


class RefusalInfo(BaseModel):
    """The last refusal by Redis that was the server's or the deployment's fault (within the last minute)."""

    code: str = Field(description="Redis's error code: NOPERM, OOM, READONLY, BUSY, LOADING, MASTERDOWN, ...")
    command: str | None = Field(description="what was refused, e.g. 'EVALSHA set_indexed'")
    detail: str
    outage: bool = Field(description="true when it means this Redis cannot serve us (counted by the breaker)")
    seconds_ago: float


class RedisState(BaseModel):
    up: bool
    circuit: str
    ping_ms: float | None = None
    error: str | None = None
    refused: RefusalInfo | None = None


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
