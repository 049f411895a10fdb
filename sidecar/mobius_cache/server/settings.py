"""The sidecar's own settings: where it listens, how it is protected, and what it logs.

The cache's settings (Redis URL, TTLs, strategies, limits) are not repeated here: they come from
:class:`mobius_cache.CacheConfig` (environment) and the policy file the operator writes. Every field reads
``MOBIUS_<NAME>`` from the environment; the command line overrides it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SidecarSettings", "UnsafeBindError", "is_loopback"]


class UnsafeBindError(ValueError):
    """Refusing to serve the cache unauthenticated on an address other pods can reach."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine (or pod) can reach: 127.0.0.0/8, ::1 and ``localhost``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere: treat it as exposed


class SidecarSettings(BaseSettings):
    """Settings of ``mobius-sidecar`` itself (``MOBIUS_SIDECAR_HOST``, ``MOBIUS_POLICY_FILE``, ...)."""

    model_config = SettingsConfigDict(env_prefix="MOBIUS_", extra="ignore", frozen=True)

    sidecar_host: str = Field(default="127.0.0.1", min_length=1, description="address to bind")
    sidecar_port: int = Field(default=8787, ge=0, le=65535, description="TCP port (0 = any free port)")
    sidecar_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="second listener serving only /metrics and /healthz, for in-cluster Prometheus (unset = off)",
    )
    sidecar_metrics_host: str = Field(
        default="0.0.0.0",
        min_length=1,
        description="address of the metrics listener; it never serves /v1/*, so it needs no token",
    )
    sidecar_uds: Path | None = Field(
        default=None,
        description="also listen on this Unix domain socket (e.g. in an emptyDir shared with the app container)",
    )
    sidecar_token: str | None = Field(
        default=None, repr=False, description="when set, /v1/* requires 'Authorization: Bearer <token>'"
    )
    policy_file: Path | None = Field(
        default=None, description="the policy the operator writes (CacheConfig spec as JSON or YAML)"
    )
    policy_poll_interval: float = Field(default=1.0, gt=0, le=60, description="seconds between file checks")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="largest request body accepted (413)")
    max_body_drain_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=0,
        description="a too-large body up to this size is read and discarded, so the client can read its 413",
    )
    body_drain_timeout: float = Field(
        default=5.0, ge=0, le=300, description="longest time spent draining a too-large body"
    )
    tracing: bool = Field(default=False, description="OpenTelemetry server spans + Redis client spans")
    access_log: bool = Field(default=False, description="one log line per request (off: it costs latency)")
    gc_tuning: bool = Field(
        default=True, description="gc.freeze() after start-up and a higher gen-0 threshold (shorter tails)"
    )
    shutdown_timeout: float = Field(
        default=20.0, gt=0, le=600, description="seconds in-flight requests get after SIGTERM"
    )

    @field_validator("sidecar_metrics_port", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip() == "" else value  # MOBIUS_..._PORT= means off

    @field_validator("sidecar_uds", mode="before")
    @classmethod
    def _empty_uds_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip() == "" else value

    @field_validator("sidecar_uds")
    @classmethod
    def _check_uds(cls, value: Path | None) -> Path | None:
        if value is not None and len(str(value).encode()) > 107:
            raise ValueError(
                f"a Unix socket path must be at most 107 bytes, this one is {len(str(value).encode())}"
            )
        return value

    @field_validator("sidecar_token")
    @classmethod
    def _check_token(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None  # an empty MOBIUS_SIDECAR_TOKEN means "no token", as an unset one does
        if any(ch.isspace() or ord(ch) < 32 for ch in value):
            raise ValueError("the token must not contain whitespace or control characters")
        return value

    def check_bind(self) -> None:
        """Refuse a non-loopback API bind without a token (the cache would be open to the network), and a
        metrics port equal to the API port (the two listeners must be told apart by port)."""
        if not is_loopback(self.sidecar_host) and self.sidecar_token is None:
            raise UnsafeBindError(
                f"refusing to bind {self.sidecar_host}: it is not a loopback address and no token is set. "
                "Set MOBIUS_SIDECAR_TOKEN (or --token) to require 'Authorization: Bearer <token>', "
                "or bind 127.0.0.1."
            )
        if self.sidecar_metrics_port and self.sidecar_metrics_port == self.sidecar_port:
            raise UnsafeBindError(
                f"the metrics port {self.sidecar_metrics_port} is also the API port: choose another "
                "MOBIUS_SIDECAR_METRICS_PORT (--metrics-port), or leave it unset to serve /metrics on the API port only"
            )
