"""The read path (``GET``/``HEAD /v1/cache/{key}``) as one function returning status, headers and body.

It is the sidecar's hottest code: the front door (:mod:`.front`) sends its result as raw ASGI messages, and
the documented FastAPI route returns the same result as a Response. No pydantic and no JSON encoder on a hit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from mobius_cache._envelope import Entry
from mobius_cache._exceptions import CacheError

from .errors import error_for, error_payload

if TYPE_CHECKING:
    from mobius_cache import Cache

__all__ = ["RawResponse", "etag_matches", "read_response"]

Headers = list[tuple[bytes, bytes]]

_JSON = (b"content-type", b"application/json")
_HIT = (b"x-cache", b"hit")
_HIT_NEAR = (b"x-cache", b"hit-near")
_MISS = (b"x-cache", b"miss")
_BYPASS = (b"x-cache", b"bypass")
_MISS_BODY = error_payload("not_found", "no cached value for this key")
_BYPASS_BODY = error_payload("bypass", "Redis is unavailable: treated as a miss")


class RawResponse(NamedTuple):
    status: int
    headers: Headers
    body: bytes


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    if if_none_match.strip() == b"*":
        return True
    # A list of tags; weak comparison (W/ is ignored) as RFC 9110 requires for If-None-Match.
    return any(tag.strip().removeprefix(b"W/") == etag for tag in if_none_match.split(b","))


async def read_response(
    cache: Cache, key: str, *, head: bool = False, if_none_match: bytes | None = None
) -> RawResponse:
    """Look ``key`` up and build the answer: a hit, a 304, a miss, a bypass (Redis down) or an input error."""
    try:
        entry, outcome = await cache.lookup(key)
    except CacheError as exc:
        err = error_for(exc)
        extra = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
        return RawResponse(err.status, [_JSON, *extra], b"" if head else error_payload(err.code, err.detail))
    if not isinstance(entry, Entry):
        # "bypass": the circuit is open; "error": Redis failed this read. Either way Redis did not answer.
        bypass = outcome != "miss"
        body = _BYPASS_BODY if bypass else _MISS_BODY
        return RawResponse(404, [_JSON, _BYPASS if bypass else _MISS], b"" if head else body)
    etag = entry.etag.encode()
    hit = _HIT_NEAR if outcome == "hit-near" else _HIT
    if if_none_match is not None and etag_matches(if_none_match, etag):
        return RawResponse(304, [(b"etag", etag), hit], b"")
    headers: Headers = [(b"content-type", entry.content_type.encode("latin-1")), (b"etag", etag), hit]
    if head:
        ttl = await cache.ttl(key)
        if ttl is not None:
            headers.append((b"x-cache-ttl", str(ttl).encode()))
        # HEAD announces the length the GET body would have.
        headers.append((b"content-length", str(len(entry.data)).encode()))
        return RawResponse(200, headers, b"")
    return RawResponse(200, headers, entry.data)
