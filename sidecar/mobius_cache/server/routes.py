"""The documented HTTP API (see docs/sidecar.md). Handlers are thin: parse, call the cache, shape the reply.

``GET``/``HEAD /v1/cache/{key}`` are normally answered by the front door (:mod:`.front`) before FastAPI
routes anything; the routes below describe them in the OpenAPI document and serve them identically when the
front door is not in use (in-process tests, embedding).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mobius_cache._exceptions import CacheError, InvalidationQueuedError

from .errors import ApiError, ErrorBody
from .models import (
    KEY_PATTERN,
    BatchGetReply,
    BatchGetRequest,
    BatchSetReply,
    BatchSetRequest,
    DeletedReply,
    HealthReply,
    IncrReply,
    IncrRequest,
    InvalidateRequest,
    Key,
    ReadyReply,
    Tag,
)
from .reads import read_response
from .values import decode_json_value, encode_for_json, normalize_content_type

if TYPE_CHECKING:
    from mobius_cache import Cache

    from .app import SidecarState

__all__ = ["router"]

router = APIRouter()

KeyParam = Annotated[
    str,
    Path(
        min_length=1,
        max_length=512,
        pattern=KEY_PATTERN,
        description="logical key, e.g. user:42:session (1-512 bytes, no whitespace or control characters); "
        "its first segment selects the namespace strategy",
    ),
]
IfNoneMatch = Annotated[str | None, Header(description="an ETag (GET: 304 if it matches) or * (PUT)")]

_E = {"model": ErrorBody}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_E, "description": "invalid key, TTL or precondition header"},
    401: {**_E, "description": "missing or wrong bearer token (when MOBIUS_SIDECAR_TOKEN is set)"},
    413: {**_E, "description": "request body or value too large"},
    422: {**_E, "description": "malformed or wrongly shaped request"},
    500: {
        **_E,
        "description": "index_corrupted: an index key in Redis holds something else (see docs/sidecar.md)",
    },
    502: {
        **_E,
        "description": "Redis refused for a reason only a fix of the deployment cures: redis_no_permission "
        "(the Redis user's ACL), redis_error (another refusal)",
    },
    503: {
        **_E,
        "description": "Redis is unavailable (cache_unavailable) or cannot serve this now (redis_loading, "
        "redis_busy, redis_read_only, redis_master_down, ...); retry after Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
    507: {
        **_E,
        "description": "redis_out_of_memory: Redis is full (maxmemory under noeviction); nothing was stored",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}
_X_CACHE = {
    "X-Cache": {"description": "hit, miss or bypass (Redis unavailable)", "schema": {"type": "string"}}
}
_ETAG = {"ETag": {"description": "version of the stored value", "schema": {"type": "string"}}}
_ANY_BODY = {"*/*": {"schema": {"type": "string", "format": "binary"}}}


def _state(request: Request) -> SidecarState:
    state: SidecarState = request.app.state.sidecar
    return state


def _cache(request: Request) -> Cache:
    cache = _state(request).cache
    if cache is None:
        raise ApiError(503, "starting", "the sidecar is starting", {"Retry-After": "1"})
    return cache


def _as_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> Response:
    return Response(body, status, headers={k.decode("latin-1"): v.decode("latin-1") for k, v in headers})


@router.get(
    "/v1/cache/{key:path}",
    summary="Read a value",
    response_class=Response,
    responses={
        200: {
            "description": "hit: the stored bytes with their Content-Type",
            "content": _ANY_BODY,
            "headers": {**_X_CACHE, **_ETAG},
        },
        304: {"description": "If-None-Match matched the stored ETag", "headers": {**_X_CACHE, **_ETAG}},
        404: {
            **_E,
            "description": "miss (X-Cache: miss) or Redis unavailable (X-Cache: bypass)",
            "headers": _X_CACHE,
        },
        **_ERRORS,
    },
)
async def get_value(key: KeyParam, request: Request, if_none_match: IfNoneMatch = None) -> Response:
    inm = if_none_match.encode("latin-1") if if_none_match is not None else None
    return _as_response(*await read_response(_cache(request), key, if_none_match=inm))


@router.head(
    "/v1/cache/{key:path}",
    summary="Check a value without its body",
    response_class=Response,
    responses={
        200: {
            "description": "hit; remaining TTL in X-Cache-TTL",
            "headers": {**_X_CACHE, **_ETAG, "X-Cache-TTL": {"schema": {"type": "integer"}}},
        },
        404: {"description": "miss or bypass", "headers": _X_CACHE},
        **_ERRORS,
    },
)
async def head_value(key: KeyParam, request: Request) -> Response:
    return _as_response(*await read_response(_cache(request), key, head=True))


@router.put(
    "/v1/cache/{key:path}",
    summary="Store a value",
    status_code=204,
    response_class=Response,
    openapi_extra={"requestBody": {"required": True, "content": _ANY_BODY}},
    responses={
        204: {
            "description": "stored",
            "headers": {
                **_ETAG,
                "X-Cache-TTL": {
                    "description": "effective TTL (clamped to maxTTL)",
                    "schema": {"type": "integer"},
                },
            },
        },
        412: {**_E, "description": "If-Match or If-None-Match: * did not hold"},
        415: {**_E, "description": "Content-Type is not a media type"},
        **_ERRORS,
    },
)
async def put_value(
    key: KeyParam,
    request: Request,
    ttl: Annotated[
        int | None, Query(gt=0, description="seconds; default: the namespace's strategy TTL")
    ] = None,
    tag: Annotated[list[Tag] | None, Query(description="tag for invalidation (repeatable)")] = None,
    depends_on: Annotated[list[Key] | None, Query(description="parent key (repeatable)")] = None,
    if_match: Annotated[
        str | None, Header(min_length=1, description="store only if the current ETag is this (* = any)")
    ] = None,
    if_none_match: Annotated[
        Literal["*"] | None, Header(description="* = store only if the key is absent")
    ] = None,
) -> Response:
    cache = _cache(request)
    content_type = normalize_content_type(request.headers.get("content-type"))
    if content_type is None:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be a media type such as text/plain")
    if if_none_match is not None and if_match is not None:
        raise ApiError(400, "invalid_precondition", "send either If-Match or If-None-Match, not both")
    if_etag = await _expected_etag(cache, key, if_match) if if_match is not None else None
    result = await cache.set_raw(
        key,
        await request.body(),
        content_type,
        ttl,
        tags=tag or (),
        depends_on=depends_on or (),
        if_absent=if_none_match is not None,
        if_etag=if_etag,
    )
    if not result.stored:
        what = "the key already exists" if if_none_match is not None else "the ETag does not match"
        raise ApiError(412, "precondition_failed", f"not stored: {what}")
    return Response(status_code=204, headers={"ETag": result.etag, "X-Cache-TTL": str(result.ttl)})


async def _expected_etag(cache: Cache, key: str, if_match: str) -> str:
    """The ETag a compare-and-set must see; ``If-Match: *`` means "whatever is stored now"."""
    from mobius_cache import MISS

    if if_match.strip() != "*":
        return if_match.strip().removeprefix("W/")
    entry: Any = await cache.get_entry(key)
    if entry is MISS:
        raise ApiError(412, "precondition_failed", "not stored: the key does not exist")
    etag: str = entry.etag
    return etag


_QUEUED: dict[int | str, dict[str, Any]] = {
    202: {
        "model": DeletedReply,
        "description": "Redis is unreachable: the invalidation is queued and replayed when it is back",
    }
}


async def _invalidation(work: Awaitable[int]) -> Response | DeletedReply:
    """Run an invalidation; one that could not reach Redis is queued by the cache, and we answer 202."""
    try:
        return DeletedReply(deleted=await work)
    except InvalidationQueuedError as exc:
        return JSONResponse({"deleted": 0, "queued": exc.queued}, 202)


@router.delete(
    "/v1/cache/{key:path}",
    summary="Delete a value",
    responses={**_QUEUED, **_ERRORS},
    response_model=DeletedReply,
)
async def delete_value(
    key: KeyParam,
    request: Request,
    cascade: Annotated[bool, Query(description="also remove keys that depend on this one")] = False,
) -> Response | DeletedReply:
    return await _invalidation(_cache(request).delete(key, cascade=cascade))


@router.post(
    "/v1/cache/{key:path}/incr",
    summary="Add to a counter atomically",
    responses={
        409: {**_E, "description": "cache_conflict: the stored value is not an integer counter"},
        **_ERRORS,
    },
)
async def incr_value(key: KeyParam, request: Request, body: IncrRequest | None = None) -> IncrReply:
    body = body or IncrRequest()
    return IncrReply(value=await _cache(request).incr(key, body.by, body.ttl))


@router.post("/v1/batch/get", summary="Read many keys in one round trip", responses=_ERRORS)
async def batch_get(body: BatchGetRequest, request: Request, response: Response) -> BatchGetReply:
    cache = _cache(request)
    keys = list(dict.fromkeys(body.keys))
    entries = await cache.get_entries(keys) if keys else {}
    if cache.circuit_state != "closed":
        response.headers["X-Cache"] = "bypass"
    return BatchGetReply(
        hits={k: encode_for_json(e.data, e.content_type) for k, e in entries.items()},
        misses=[k for k in keys if k not in entries],
    )


@router.post("/v1/batch/set", summary="Store many values in one round trip", responses=_ERRORS)
async def batch_set(body: BatchSetRequest, request: Request) -> BatchSetReply:
    cache = _cache(request)
    items: list[tuple[str, Any, int | None, list[str]]] = []
    for index, item in enumerate(body.items):
        try:
            value = decode_json_value(item.value)
        except ValueError as exc:
            raise ApiError(422, "invalid_value", f"items.{index}.value: {exc}") from None
        items.append((item.key, value, item.ttl, item.tags))
    return BatchSetReply(stored=await cache.set_many(items) if items else 0)


@router.post(
    "/v1/invalidate",
    summary="Invalidate by keys, pattern, tags or cascade",
    responses={**_QUEUED, **_ERRORS},
    response_model=DeletedReply,
)
async def invalidate(body: InvalidateRequest, request: Request) -> Response | DeletedReply:
    if not (body.keys or body.pattern or body.tags or body.cascade):
        raise ApiError(422, "invalid_request", "give at least one of keys, pattern, tags or cascade")
    cache = _cache(request)

    async def run() -> int:
        deleted = 0
        if body.keys:
            deleted += await cache.invalidate_keys(list(dict.fromkeys(body.keys)))
        if body.pattern:
            deleted += await cache.invalidate_pattern(body.pattern)
        if body.tags:
            deleted += await cache.invalidate_tags(*body.tags)
        if body.cascade:
            deleted += await cache.invalidate(body.cascade, cascade=True)
        return deleted

    return await _invalidation(run())


async def redis_state(cache: Cache, limit: float = 1.0) -> dict[str, Any]:
    """Redis as seen from here, within ``limit`` seconds: up/down, circuit, and what health() reports."""
    try:
        health = await asyncio.wait_for(cache.health(), limit)
    except (CacheError, TimeoutError, OSError) as exc:
        health = {"ok": False, "error": str(exc) or type(exc).__name__}
    up = bool(health.pop("ok", False))
    return {"ping_ms": None, "error": None, **health, "up": up, "circuit": cache.circuit_state}


@router.get("/v1/stats", summary="Hit ratio, pool, circuit, Redis memory, slow operations", responses=_ERRORS)
async def stats(request: Request) -> JSONResponse:
    state = _state(request)
    cache = _cache(request)
    redis = await redis_state(cache)
    for repeated in ("pool", "circuit", "invalidation_queue"):  # already at the top level of the stats
        redis.pop(repeated, None)
    body = {**cache.stats(), "redis": redis}
    body["policy"] = state.policy.state.as_dict() if state.policy else None
    return JSONResponse(body)


@router.get("/healthz", summary="Liveness of the process")
async def healthz() -> HealthReply:
    return HealthReply(status="ok")


@router.get("/readyz", summary="Readiness of the sidecar (200 even when Redis is down; see the body)")
async def readyz(request: Request) -> ReadyReply:
    state = _state(request)
    cache = _cache(request)
    redis = await redis_state(cache, limit=0.5)
    keep = {"up", "circuit", "ping_ms", "error", "refused"}
    return ReadyReply.model_validate(
        {
            "status": "ready",
            "redis": {k: v for k, v in redis.items() if k in keep},
            "policy": state.policy.state.as_dict() if state.policy else None,
        }
    )


@router.get(
    "/metrics",
    summary="Prometheus exposition",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(_state(request).registry), media_type=CONTENT_TYPE_LATEST)
