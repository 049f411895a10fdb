"""The one configuration model of mobius-cache.

The library reads it from the environment (``MOBIUS_*``), the sidecar from the environment plus the policy
file the operator writes, and the operator from a ``CacheConfig`` resource's ``spec`` (camelCase). All three
go through :class:`CacheConfig`, so a value that one of them accepts, the others accept too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._sentinel_url import is_sentinel_url, parse_sentinel_url

__all__ = [
    "EVICTION_POLICIES",
    "CacheConfig",
    "EvictionPolicy",
    "StrategyConfig",
    "parse_memory",
]

_MEMORY_RE = re.compile(
    r"^[ \t]*([0-9]+)[ \t]*(b|k|kb|m|mb|g|gb)?[ \t]*$", re.IGNORECASE
)  # ASCII only, as the CRD
# Redis's own units: "k"/"m"/"g" are powers of 1000, "kb"/"mb"/"gb" powers of 1024 (see redis.conf).
_MEMORY_UNITS = {
    None: 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
}


class EvictionPolicy(StrEnum):
    """Redis's eight ``maxmemory-policy`` values."""

    NOEVICTION = "noeviction"
    ALLKEYS_LRU = "allkeys-lru"
    ALLKEYS_LFU = "allkeys-lfu"
    ALLKEYS_RANDOM = "allkeys-random"
    VOLATILE_LRU = "volatile-lru"
    VOLATILE_LFU = "volatile-lfu"
    VOLATILE_RANDOM = "volatile-random"
    VOLATILE_TTL = "volatile-ttl"


EVICTION_POLICIES: tuple[str, ...] = tuple(p.value for p in EvictionPolicy)


def parse_memory(value: str | int) -> int:
    """Return the byte count of a Redis memory string ("512mb", "1gb", "100000", 0 = no limit).

    Uses Redis's units, so the number matches what ``CONFIG GET maxmemory`` reports after ``CONFIG SET``.
    """
    if isinstance(value, bool):
        raise ValueError("memory must be a string such as '512mb' or a byte count")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("memory must not be negative")
        return value
    match = _MEMORY_RE.match(value)
    if not match:
        raise ValueError(f"invalid memory size {value!r}: use a byte count or a number with b, kb, mb or gb")
    number, unit = match.groups()
    return int(number) * _MEMORY_UNITS[unit.lower() if unit else None]


_BOOL = TypeAdapter(bool)

Serializer = Literal["auto", "json", "msgpack", "text", "bytes", "float32"]


class StrategyConfig(BaseModel):
    """Per-namespace policy: the first key segment (``user`` in ``user:42:session``) selects it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    ttl: int | None = Field(default=None, gt=0, description="TTL in seconds; None = the default TTL")
    sliding: bool = Field(default=False, description="reads extend the TTL (GETEX), e.g. sessions")
    serializer: Serializer = Field(default="auto", description="how values of this namespace are encoded")
    evictable: bool = Field(
        default=True, description="False: stored so Redis never silently evicts it (see docs/invalidation.md)"
    )
    warm: bool = Field(default=False, description="warmed at start-up by the strategy's warmer")
    near: bool = Field(
        default=True,
        description="hot values of this namespace are kept in process memory (the near cache); "
        "default: true, false for sliding namespaces",
    )

    @model_validator(mode="before")
    @classmethod
    def _near_follows_sliding(cls, data: Any) -> Any:
        # A near hit never reaches Redis, so it could not extend a sliding TTL: a sliding namespace is not
        # near-cached unless it says so (and then it is refused below).
        if isinstance(data, Mapping) and "near" not in data and "sliding" in data:
            try:
                sliding = _BOOL.validate_python(
                    data["sliding"]
                )  # as the field will parse it ("yes", "1", ...)
            except ValidationError:
                return data  # the field's own error says what is wrong
            if sliding:
                return {**data, "near": False}
        return data

    @model_validator(mode="after")
    def _check_near(self) -> StrategyConfig:
        if self.near and self.sliding:
            raise ValueError(
                "near: a sliding namespace cannot be near-cached (a near hit would not extend its TTL in Redis)"
            )
        return self


def _default_strategies() -> dict[str, StrategyConfig]:
    return {
        "document": StrategyConfig(ttl=7 * 24 * 3600, serializer="float32"),
        "search": StrategyConfig(ttl=300),
        "user": StrategyConfig(ttl=1800, sliding=True, evictable=False, near=False),
        "api": StrategyConfig(ttl=60),
        "config": StrategyConfig(ttl=86400, warm=True),
        "project": StrategyConfig(ttl=3600),
    }


class CacheConfig(BaseSettings):
    """Settings of the cache layer. Environment names are ``MOBIUS_`` + the upper-case field name."""

    model_config = SettingsConfigDict(
        env_prefix="MOBIUS_",
        extra="ignore",
        frozen=True,
        validate_default=True,
    )

    # --- the seed's names -------------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(default=50, ge=1, le=10_000)
    redis_min_connections: int = Field(default=10, ge=0, le=10_000)
    redis_socket_timeout: float = Field(default=5.0, gt=0, le=300)
    redis_socket_connect_timeout: float = Field(default=5.0, gt=0, le=300)
    default_ttl: int = Field(default=3600, gt=0)
    max_ttl: int = Field(default=86400, gt=0)
    cache_prefix: str = Field(default="mobius:", max_length=64)
    max_memory: str = "1gb"
    eviction_policy: EvictionPolicy = EvictionPolicy.ALLKEYS_LRU

    # --- what the features need ---------------------------------------------------------------------
    redis_password: str | None = Field(default=None, repr=False)
    redis_sentinel_username: str | None = Field(
        default=None, description="username for the Sentinels of a redis+sentinel:// URL (not the data nodes)"
    )
    redis_sentinel_password: str | None = Field(
        default=None,
        repr=False,
        description="password for the Sentinels of a redis+sentinel:// URL (the data nodes use redis_password)",
    )
    pool_timeout: float = Field(
        default=1.0, ge=0, le=60, description="how long an operation waits for a free connection"
    )
    max_value_bytes: int = Field(default=1024 * 1024, ge=1, description="largest encoded value accepted")
    compress_threshold: int = Field(
        default=16 * 1024, ge=0, description="compress values larger than this (0 = never)"
    )
    slow_op_threshold_ms: float = Field(default=10.0, ge=0, description="log operations slower than this")
    retry_attempts: int = Field(default=2, ge=0, le=10, description="retries of a connection error")
    retry_backoff: float = Field(
        default=0.02, ge=0, le=10, description="first retry delay, doubled each time"
    )
    retry_backoff_cap: float = Field(default=0.5, ge=0, le=60)
    breaker_failure_threshold: int = Field(default=3, ge=1, le=1000)
    breaker_reset_timeout: float = Field(
        default=2.0, gt=0, le=600, description="seconds the circuit stays open before one probe"
    )
    invalidation_queue_size: int = Field(default=10_000, ge=0)
    autopipeline: bool = Field(default=True, description="coalesce concurrent commands into pipelines")
    near_cache: bool = Field(
        default=True, description="keep hot values in process memory, kept coherent by Redis client tracking"
    )
    near_cache_max_bytes: str | int = Field(
        default="64mb", description="memory bound of the near cache (Redis units: 64mb = 64 MiB)"
    )
    strategies: dict[str, StrategyConfig] = Field(default_factory=_default_strategies)

    @field_validator("strategies", mode="before")
    @classmethod
    def _merge_strategies(cls, value: Any) -> Any:
        """Strategies merge with the defaults wherever they come from: naming a namespace changes that one
        only, and only in the fields it names (``{"user": {"ttl": 60}}`` keeps sessions sliding)."""
        if not isinstance(value, Mapping):
            return value  # the model's own error says what is wrong
        merged: dict[str, Any] = {ns: s.model_dump() for ns, s in _default_strategies().items()}
        for ns, given in value.items():
            if isinstance(given, StrategyConfig):
                given = given.model_dump(include=given.model_fields_set)
            if not isinstance(given, Mapping):
                merged[ns] = given  # refused by validation, naming the namespace
                continue
            base = dict(merged.get(ns, {}))
            if "sliding" in given and "near" not in given:
                base.pop("near", None)  # re-derived from the new sliding value
            merged[ns] = {**base, **given}
        return merged

    @field_validator("near_cache_max_bytes")
    @classmethod
    def _check_near_bytes(cls, value: str | int) -> str | int:
        if parse_memory(value) < 1:
            raise ValueError(
                "the near cache needs at least 1 byte (set MOBIUS_NEAR_CACHE=off to turn it off)"
            )
        return value

    @field_validator("max_memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        parse_memory(value)
        return value

    @field_validator("cache_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if any(ch.isspace() or ord(ch) < 32 for ch in value) or "*" in value or "?" in value:
            raise ValueError("the prefix must not contain whitespace, control or glob characters")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if is_sentinel_url(value):
            parse_sentinel_url(value)  # its ValueError says what is wrong
            return value
        schemes = (
            "redis://",
            "rediss://",
            "unix://",
            "redis+cluster://",
            "rediss+cluster://",
            "redis+sentinel://",
            "rediss+sentinel://",
        )
        if not value.startswith(schemes):
            raise ValueError(f"redis_url must start with one of {', '.join(schemes)}")
        return value

    @model_validator(mode="after")
    def _check_bounds(self) -> CacheConfig:
        if self.default_ttl > self.max_ttl:
            raise ValueError(f"default_ttl ({self.default_ttl}) must not exceed max_ttl ({self.max_ttl})")
        if self.redis_min_connections > self.redis_max_connections:
            raise ValueError("redis_min_connections must not exceed redis_max_connections")
        # A strategy TTL above max_ttl is not an error: it is clamped at use, so lowering maxTTL never breaks
        # a stored policy.
        for name in self.strategies:
            if not name or ":" in name or any(ch.isspace() or ord(ch) < 32 for ch in name):
                raise ValueError(f"strategy name {name!r} must be a non-empty key segment without ':'")
        return self

    # --- derived values -------------------------------------------------------------------------------
    @property
    def max_memory_bytes(self) -> int:
        return parse_memory(self.max_memory)

    @property
    def near_cache_bytes(self) -> int:
        return parse_memory(self.near_cache_max_bytes)

    @property
    def cluster(self) -> bool:
        return "+cluster://" in self.redis_url

    @property
    def sentinel(self) -> bool:
        return is_sentinel_url(self.redis_url)

    # --- the CRD's camelCase shape -----------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], **overrides: Any) -> CacheConfig:
        """Build from a ``CacheConfig`` resource's ``spec`` (or the policy document the operator writes).

        Unknown top-level fields are ignored (the CRD schema rejects them at the API server); ``overrides``
        (snake_case) win over the spec, e.g. the sidecar's own Redis URL.
        """
        values: dict[str, Any] = {}
        for camel, snake in SPEC_FIELDS.items():
            if camel in spec and spec[camel] is not None:
                values[snake] = spec[camel]
        redis = spec.get("redis") or {}
        if isinstance(redis, Mapping):
            if redis.get("url"):
                values["redis_url"] = redis["url"]
            elif redis.get("host"):
                values["redis_url"] = f"redis://{redis['host']}:{int(redis.get('port', 6379))}/0"
        if "strategies" in spec and spec["strategies"] is not None:
            values["strategies"] = spec["strategies"]  # merged over the defaults by the model
        values.update(overrides)
        # _env_parse_none_str etc. are irrelevant here: init values beat the environment.
        return cls(**values)

    def to_spec(self) -> dict[str, Any]:
        """The camelCase policy document (the inverse of :meth:`from_spec`, without secrets)."""
        doc: dict[str, Any] = {camel: getattr(self, snake) for camel, snake in SPEC_FIELDS.items()}
        doc["evictionPolicy"] = str(self.eviction_policy)
        doc["strategies"] = {
            name: s.model_dump(exclude_defaults=True) for name, s in sorted(self.strategies.items())
        }
        return doc


#: CRD ``spec`` field → model field. The CRD schema, the operator and the sidecar's policy file share it.
SPEC_FIELDS: dict[str, str] = {
    "maxMemory": "max_memory",
    "evictionPolicy": "eviction_policy",
    "defaultTTL": "default_ttl",
    "maxTTL": "max_ttl",
    "keyPrefix": "cache_prefix",
    "maxValueBytes": "max_value_bytes",
    "compressThreshold": "compress_threshold",
    "slowOpThresholdMs": "slow_op_threshold_ms",
}
