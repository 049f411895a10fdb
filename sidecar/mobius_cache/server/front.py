"""The sidecar's front door: a plain ASGI layer in front of the FastAPI application.

Everything every request needs happens here, once: the bearer token check for ``/v1/*``, the request body
limit (413 before the application sees a byte too many; see :meth:`Front._too_large` for how the client gets
to read it), HTTP metrics, the optional server span, and the hot
read path (``GET``/``HEAD /v1/cache/{key}``) answered directly from :func:`.reads.read_response` without
FastAPI's routing, validation and response machinery. The FastAPI app keeps the documented routes (and
the OpenAPI document) for everything, including a reference implementation of the read route.

Hottest of all, a ``GET`` that the near cache answers (:meth:`Front._near_hit`) runs no coroutine besides
this one and awaits nothing but the two ``send`` calls: one scan of the headers, a dict lookup in the near
cache, the response. It is the same answer the read path would give (status, headers, body), with
``X-Cache: hit-near``; anything it does not handle (a HEAD, a conditional request that matches, a span to
record, a near miss) goes the ordinary way.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from starlette.routing import Match

from .errors import error_payload
from .reads import etag_matches, read_response
from .routes import router

if TYPE_CHECKING:
    from .app import SidecarState

__all__ = ["CACHE_ROUTE", "Front"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CACHE_PREFIX = "/v1/cache/"
CACHE_ROUTE = "/v1/cache/{key}"
_KEY_AT = len(CACHE_PREFIX)
_HIT_NEAR = (b"x-cache", b"hit-near")
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
_JSON = (b"content-type", b"application/json")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _send_simple(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    send: Send,
    status: int,
    code: str,
    detail: str,
    extra: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    body = error_payload(code, detail)
    headers = [_JSON, (b"content-length", str(len(body)).encode()), *extra]
    await _send_simple(send, status, headers, body)


class Front:
    """Wraps the FastAPI app; ``state`` carries the cache (set by the app's lifespan) and the settings."""

    def __init__(self, app: ASGIApp, state: SidecarState) -> None:
        self.app = app
        self.state = state
        token = state.settings.sidecar_token
        self._expected_auth = f"Bearer {token}".encode() if token else None
        self._max_body = state.settings.max_body_bytes
        self._drain_bytes = state.settings.max_body_drain_bytes
        self._drain_timeout = state.settings.body_drain_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan (and nothing else: no websockets here)
            return
        started = time.perf_counter()
        if scope["method"] == "GET" and await self._near_hit(scope, send, started):
            return
        method: str = scope["method"]
        path: str = scope["path"]
        status = 500
        route = "unmatched"

        async def send_tracking(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        span: AbstractContextManager[Any] = nullcontext()
        tracer = self.state.tracer
        if tracer is not None:
            span = tracer.start_as_current_span(f"{method} {path}", kind=self.state.server_span_kind)
        with span as current:
            try:
                if (
                    self._expected_auth is not None
                    and path.startswith("/v1/")
                    and not self._authorized(scope)
                ):
                    route = "/v1/*"
                    await _send_error(
                        send_tracking,
                        401,
                        "unauthorized",
                        "missing or wrong bearer token",
                        [(b"www-authenticate", b'Bearer realm="mobius-sidecar"')],
                    )
                elif path.startswith(CACHE_PREFIX) and path.endswith("/incr") and method != "POST":
                    # ".../incr" is the counter route: no other method may treat it as part of a key.
                    route = "/v1/cache/{key}/incr"
                    await _send_error(
                        send_tracking,
                        405,
                        "method_not_allowed",
                        "only POST is allowed on .../incr",
                        [(b"allow", b"POST")],
                    )
                elif path.startswith(CACHE_PREFIX) and (method == "GET" or method == "HEAD"):
                    route = CACHE_ROUTE
                    await self._read(scope, send_tracking, head=method == "HEAD")
                else:
                    await self._forward(scope, receive, send_tracking)
                    matched = scope.get("route")
                    route = getattr(matched, "path_format", None) or self._template(scope)
            finally:
                self.state.http_metrics.observe(method, route, status, time.perf_counter() - started)
                if current is not None:
                    current.update_name(f"{method} {route}")
                    current.set_attribute("http.request.method", method)
                    current.set_attribute("http.route", route)
                    current.set_attribute("http.response.status_code", status)

    async def _near_hit(self, scope: Scope, send: Send, started: float) -> bool:
        """Answer a GET from the near cache; False (nothing sent) when it is not that simple."""
        path: str = scope["path"]
        cache = self.state.cache
        if not path.startswith(CACHE_PREFIX) or cache is None or self.state.tracer is not None:
            return False
        auth = inm = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"if-none-match":
                inm = value
        expected = self._expected_auth
        if expected is not None and (auth is None or not hmac.compare_digest(bytes(auth), expected)):
            return False
        if path.endswith("/incr"):
            return False
        entry = cache.near_lookup(path[_KEY_AT:])
        if entry is None:
            return False
        etag = entry.etag.encode()
        if inm is not None and etag_matches(bytes(inm), etag):
            status, body = 304, b""
            headers = [(b"etag", etag), _HIT_NEAR]
        else:
            status, body = 200, entry.data
            headers = [
                (b"content-type", entry.content_type.encode("latin-1")),
                (b"etag", etag),
                _HIT_NEAR,
                (b"content-length", str(len(body)).encode()),
            ]
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            self.state.http_metrics.observe("GET", CACHE_ROUTE, status, time.perf_counter() - started)
        return True

    def _template(self, scope: Scope) -> str:
        """The route template of a request FastAPI did not route (a 413 before it, a 404): never the raw path."""
        for candidate in router.routes:
            match, _ = candidate.matches(scope)
            if match != Match.NONE:
                return str(getattr(candidate, "path_format", "unmatched"))
        return "unmatched"

    def _authorized(self, scope: Scope) -> bool:
        given = _header(scope, b"authorization")
        return given is not None and hmac.compare_digest(given, self._expected_auth or b"")

    async def _read(self, scope: Scope, send: Send, *, head: bool) -> None:
        cache = self.state.cache
        if cache is None:  # only between accept and lifespan start-up, which uvicorn does not allow
            await _send_error(send, 503, "starting", "the sidecar is starting", [(b"retry-after", b"1")])
            return
        key = scope["path"][len(CACHE_PREFIX) :]
        inm = _header(scope, b"if-none-match")
        status, headers, body = await read_response(cache, key, head=head, if_none_match=inm)
        if not head and status != 304:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request to FastAPI, with the body read up front and held to the size limit."""
        if scope["method"] in _BODYLESS:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            await self._too_large(scope, receive, send, received=0, declared=int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                more = bool(message.get("more_body", False))
                await self._too_large(scope, receive, send, received=size, declared=None, more=more)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        received: int,
        declared: int | None,
        more: bool = True,
    ) -> None:
        """Answer 413 so that the client can read it.

        Most clients send the whole body before they read the response. Answering and closing while the body
        still arrives makes the kernel reset the connection, and the client sees a broken pipe instead of the
        413. So the rest of the body is read and thrown away first — at most ``max_body_drain_bytes`` in
        all and for ``body_drain_timeout`` seconds — and the connection stays open. A body announced larger
        than that bound, a client waiting for ``100 Continue`` (it sends nothing until told to), one that
        stalls or one whose body overruns the bound get the 413 at once (or when the bound is hit) with
        ``Connection: close``. Nothing is buffered: the limit on what the application sees is unchanged.
        """
        expects_continue = (_header(scope, b"expect") or b"").lower() == b"100-continue"
        drained = not more
        if more and not expects_continue and (declared is None or declared <= self._drain_bytes):
            drained = await self._drain(receive, received)
        await _send_error(
            send,
            413,
            "body_too_large",
            f"the request body exceeds {self._max_body} bytes (MOBIUS_MAX_BODY_BYTES)",
            [] if drained else [(b"connection", b"close")],
        )

    async def _drain(self, receive: Receive, received: int) -> bool:
        """Read and discard the rest of the body, within the bounds; True when it was read to its end."""
        try:
            async with asyncio.timeout(self._drain_timeout):
                while received <= self._drain_bytes:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away
                        return False
                    received += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return received <= self._drain_bytes
        except TimeoutError:
            return False
        return False
