"""The operator's own settings, from the environment (``MOBIUS_OPERATOR_*``).

Separate from :class:`mobius_cache.CacheConfig` on purpose: these tune the operator, while a ``CacheConfig``
resource's spec describes the cache. The operator never reads the cache settings from its own environment.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mobius_operator.reconcile import parse_quantity

__all__ = ["DefaultCacheConfig", "OperatorSettings"]

DNS_1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class DefaultCacheConfig(BaseModel):
    """The CacheConfig a Helm release asks its operator to create and own (``MOBIUS_OPERATOR_DEFAULT_CACHECONFIG``).

    The operator owns it, not Helm: Helm cannot create a custom resource in the release that installs its CRD
    except as a hook, and hooks survive `helm uninstall`. Owned by the operator's Deployment, it is
    garbage-collected with the release. The spec is checked by the API server (the CRD's schema) on apply.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(max_length=253, pattern=DNS_1123_SUBDOMAIN)
    spec: dict[str, Any]
    labels: dict[str, str] = Field(default_factory=dict)


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

    default_cacheconfig: DefaultCacheConfig | None = Field(
        default=None,
        description="JSON {name, spec, labels}: the CacheConfig to create, owned by owner_deployment",
    )
    owner_deployment: str | None = Field(
        default=None, description="the operator's own Deployment: the owner of the default CacheConfig"
    )
    namespace: str | None = Field(
        default=None, description="the operator's namespace (the chart sets it from the downward API)"
    )

    @field_validator("redis_memory_limit")
    @classmethod
    def _check_limit(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            parse_quantity(value)
            return value.strip()
        return None

    @model_validator(mode="after")
    def _default_needs_an_owner(self) -> OperatorSettings:
        if self.default_cacheconfig is not None and not (self.owner_deployment and self.namespace):
            raise ValueError(
                "MOBIUS_OPERATOR_DEFAULT_CACHECONFIG needs MOBIUS_OPERATOR_OWNER_DEPLOYMENT and "
                "MOBIUS_OPERATOR_NAMESPACE (its owner, so that it is garbage-collected with the release)"
            )
        return self

    @property
    def memory_limit_bytes(self) -> int | None:
        return parse_quantity(self.redis_memory_limit) if self.redis_memory_limit else None
