"""The application factory: ``create_app(settings)`` returns the ASGI app; nothing runs at import.

The lifespan opens the cache (a Redis outage at start-up does not stop the sidecar: reads bypass, writes 503
until Redis answers), starts the policy watcher, and freezes the start-up heap out of the cyclic GC's reach.
On shutdown (after uvicorn has drained in-flight requests) it stops the watcher and closes the pool.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException
from starlette.routing import Match

from mobius_cache._config import CacheConfig
from mobius_cache._exceptions import CacheError, CacheUnavailableError, RedisRefusedError

from .errors import ApiError, error_for
from .front import Front
from .metrics import HttpMetrics
from .policy import PolicyWatcher
from .routes import router
from .settings import SidecarSettings
from .tracing import setup_tracing

if TYPE_CHECKING:
    from mobius_cache import Cache

__all__ = ["SidecarState", "create_app"]

log = logging.getLogger("mobius_cache.server")

#: Young-generation threshold after start-up: fewer, still short, collections (see docs/sidecar.md).
GC_GEN0_THRESHOLD = 50_000


@dataclass
class SidecarState:
    """Everything the routes and the front door share; ``cache`` exists between start-up and shutdown."""

    settings: SidecarSettings
    config: CacheConfig
    registry: CollectorRegistry
    http_metrics: HttpMetrics
    cache: Cache | None = None
    policy: PolicyWatcher | None = None
    tracer: Any = None
    server_span_kind: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse({"error": err.code, "detail": err.detail}, err.status, headers=err.headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _allowed_methods(request: Request) -> str:
    """Every method of every route on this path (Starlette lists only the first route's methods)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return _error_response(exc)

    async def on_cache_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CacheError)
        err = error_for(exc)
        if err.status >= 500 and not isinstance(exc, RedisRefusedError):  # refusals: the cache logs them
            log.warning("cache unavailable: %s", exc)
        return _error_response(err)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _error_response(ApiError(422, "invalid_request", _validation_detail(exc)))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else code
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return _error_response(ApiError(exc.status_code, code, detail, headers))

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return _error_response(ApiError(500, "internal", "unexpected error; see the sidecar log"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(CacheError, on_cache_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def _initial_config(
    settings: SidecarSettings, config: CacheConfig | None
) -> tuple[CacheConfig, PolicyWatcher | None]:
    base = config or CacheConfig()
    if settings.policy_file is None:
        return base, None
    watcher = PolicyWatcher(
        settings.policy_file,
        redis_url=base.redis_url,
        apply=lambda c: None,
        interval=settings.policy_poll_interval,
    )
    return watcher.initial() or base, watcher


def create_app(
    settings: SidecarSettings | None = None,
    *,
    config: CacheConfig | None = None,
    registry: CollectorRegistry | None = None,
    tracer_provider: Any = None,
) -> Front:
    """Build the sidecar. ``config`` defaults to ``CacheConfig()`` (environment), overlaid by the policy."""
    settings = settings or SidecarSettings()
    registry = registry or CollectorRegistry()
    initial, watcher = _initial_config(settings, config)
    state = SidecarState(
        settings=settings,
        config=initial,
        registry=registry,
        http_metrics=HttpMetrics(registry),
        policy=watcher,
    )
    if settings.tracing or tracer_provider is not None:
        state.tracer, state.server_span_kind = setup_tracing(tracer_provider)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from mobius_cache import Cache

        cache = Cache(state.config, registry=registry)
        try:
            await cache.start()
        except CacheUnavailableError as exc:
            log.warning("Redis is not reachable at start-up (%s); serving in degraded mode until it is", exc)
        state.cache = cache
        if watcher is not None:
            watcher.apply = cache.update_config
            watcher.start()
        if settings.gc_tuning:
            # Everything allocated so far lives as long as the process: keep it out of every GC pass, and
            # collect the young generation less often (each pass is short; their number makes the tail).
            gc.collect()
            gc.freeze()
            _, gen1, gen2 = gc.get_threshold()
            gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
        log.info("mobius-sidecar ready on %s:%s", settings.sidecar_host, settings.sidecar_port)
        try:
            yield
        finally:
            if watcher is not None:
                await watcher.stop()
            state.cache = None
            await cache.close()
            log.info("mobius-sidecar stopped; Redis pool closed")

    api = FastAPI(
        title="mobius-sidecar",
        version="1",
        summary="The mobius-cache layer over HTTP on localhost.",
        description='Errors are JSON {"error": code, "detail": message}. See docs/sidecar.md.',
        lifespan=lifespan,
    )
    api.state.sidecar = state
    _install_error_handlers(api)
    api.include_router(router)
    _add_bearer_scheme(api)
    return Front(api, state)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query or header parameter is absent, never JSON ``null``: drop the null alternative."""
    options = schema.get("anyOf")
    if not options:
        return schema
    kept = [o for o in options if o.get("type") != "null"]
    if len(kept) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**kept[0], **rest}


def _add_bearer_scheme(api: FastAPI) -> None:
    """Document the optional bearer token on /v1/* (enforced by the front door when a token is set)."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=api.title,
                version=api.version,
                summary=api.summary,
                description=api.description,
                routes=api.routes,
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "required on /v1/* when MOBIUS_SIDECAR_TOKEN is set",
                }
            }
            for path, ops in schema.get("paths", {}).items():
                for op in ops.values():
                    for param in op.get("parameters", ()):
                        param["schema"] = _without_null(param["schema"])
                    if path.startswith("/v1/"):
                        op["security"] = [{}, {"bearerAuth": []}]
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
