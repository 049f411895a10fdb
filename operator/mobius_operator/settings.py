"""The operator's own settings, from the environment (``MOBIUS_OPERATOR_*``, and ``MOBIUS_INJECTOR_*`` for the
sidecar injector).

Separate from :class:`mobius_cache.CacheConfig` on purpose: these tune the operator, while a ``CacheConfig``
resource's spec describes the cache. The operator never reads the cache settings from its own environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mobius_operator.injection import RedisSource, SidecarTemplate
from mobius_operator.reconcile import parse_quantity

__all__ = ["DefaultCacheConfig", "InjectorSettings", "OperatorSettings"]

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


class InjectorSettings(BaseSettings):
    """The sidecar injector's settings (``MOBIUS_INJECTOR_*``), set by the chart from its values.

    Off by default: an operator run outside the chart serves no webhook. When on, everything a sidecar needs must
    be given (image, Redis URL, the webhook's TLS files); a missing piece stops the operator with a message.
    JSON values (resources, security context) are the chart's own YAML values rendered as JSON.
    """

    model_config = SettingsConfigDict(env_prefix="MOBIUS_INJECTOR_", extra="ignore", frozen=True)

    enabled: bool = Field(default=False, description="serve the mutating admission webhook")
    listen_host: str = Field(default="127.0.0.1", min_length=1, description="address of the webhook server")
    listen_port: int = Field(default=9443, ge=1, le=65535, description="port of the webhook server (HTTPS)")
    cert_file: Path | None = Field(default=None, description="the webhook server's certificate (PEM)")
    key_file: Path | None = Field(default=None, description="its private key (PEM)")
    cert_check_interval: float = Field(
        default=10.0, gt=0, le=3600, description="seconds between checks for a renewed certificate"
    )
    failure_policy: Literal["Ignore", "Fail"] = Field(
        default="Ignore",
        description="the webhook's failurePolicy: with Fail a pod with bad annotations is denied, "
        "with Ignore it is admitted without the sidecar and a warning",
    )
    image: str = Field(default="", description="the sidecar image")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    port: int = Field(default=8787, ge=1024, le=65535, description="the sidecar's loopback API port")
    metrics_port: int = Field(default=9787, ge=0, le=65535, description="its metrics port; 0 = none")
    resources: dict[str, dict[str, str | int | float]] = Field(
        default_factory=dict, description="container resources (JSON)"
    )
    security_context: dict[str, Any] = Field(
        default_factory=dict, description="container security context (JSON)"
    )
    client_label: str = Field(default="", description="label (set to 'true') the Redis NetworkPolicy admits")
    redis_url: str = Field(default="", description="Redis of pods that name no CacheConfig")
    redis_secret_name: str = Field(default="", description="Secret with that Redis's password ('' = none)")
    redis_secret_key: str = Field(default="password", min_length=1, description="key of the password")
    redis_ca_volume: dict[str, Any] = Field(
        default_factory=dict,
        description="volume source (JSON) with ca.crt of a TLS Redis, mounted at /etc/mobius/redis-ca ({} = none)",
    )
    default_config: str = Field(
        default="", description="CacheConfig whose <name>-policy ConfigMap pods that name none mount"
    )
    restart_uninjected: list[str] = Field(
        default_factory=list,
        description="Deployments in the operator's namespace to restart once if their pods missed injection "
        "(the chart's example app, created in the same moment as the injector)",
    )
    namespace: str = Field(default="", description="the operator's namespace (from the downward API)")
    lookup_timeout: float = Field(
        default=2.0, gt=0, le=30, description="timeout of the CacheConfig read during an admission"
    )

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> InjectorSettings:
        if self.enabled:
            missing = [
                f"MOBIUS_INJECTOR_{name.upper()}"
                for name in ("image", "redis_url", "cert_file", "key_file")
                if not getattr(self, name)
            ]
            if missing:
                raise ValueError(f"the injector is enabled but these are not set: {', '.join(missing)}")
            if self.metrics_port == self.port:
                raise ValueError("MOBIUS_INJECTOR_METRICS_PORT must differ from MOBIUS_INJECTOR_PORT")
        return self

    def template(self) -> SidecarTemplate:
        """What every injected sidecar gets (``injection.SidecarTemplate``)."""
        return SidecarTemplate(
            image=self.image,
            image_pull_policy=self.image_pull_policy,
            redis=RedisSource(
                url=self.redis_url,
                secret_name=self.redis_secret_name or None,
                secret_key=self.redis_secret_key,
            ),
            port=self.port,
            metrics_port=self.metrics_port or None,
            resources=self.resources,
            security_context=self.security_context,
            client_label=self.client_label or None,
            default_config=self.default_config or None,
            deny_invalid=self.failure_policy == "Fail",
            redis_ca_volume=self.redis_ca_volume or None,
        )
