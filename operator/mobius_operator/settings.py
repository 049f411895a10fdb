"""The operator's own settings, from the environment (``MOBIUS_OPERATOR_*``).

Separate from :class:`mobius_cache.CacheConfig` on purpose: these tune the operator, while a ``CacheConfig``
resource's spec describes the cache. The operator never reads the cache settings from its own environment.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mobius_operator.reconcile import parse_quantity

__all__ = ["OperatorSettings"]


class OperatorSettings(BaseSettings):
    """``MOBIUS_OPERATOR_RECONCILE_INTERVAL=30`` etc."""

    model_config = SettingsConfigDict(env_prefix="MOBIUS_OPERATOR_", extra="ignore", frozen=True)

    reconcile_interval: float = Field(
        default=30.0,
        gt=0,
        le=86400,
        description="seconds between re-assertions (drift check) of each resource",
    )
    redis_timeout: float = Field(
        default=5.0, gt=0, le=120, description="connect and command timeout for Redis"
    )
    redis_memory_limit: str | None = Field(
        default=None,
        description="the Redis container's memory limit (e.g. 2Gi); maxMemory above it is refused as InvalidSpec",
    )
    retry_backoff: float = Field(
        default=1.0, gt=0, le=600, description="first retry delay when Redis is down"
    )
    retry_backoff_cap: float = Field(default=60.0, gt=0, le=3600, description="longest retry delay")
    kube_timeout: float = Field(
        default=10.0, gt=0, le=300, description="timeout of the operator's own API calls"
    )

    @field_validator("redis_memory_limit")
    @classmethod
    def _check_limit(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_quantity(value)
            return value.strip()
        return None

    @property
    def memory_limit_bytes(self) -> int | None:
        return parse_quantity(self.redis_memory_limit) if self.redis_memory_limit else None
