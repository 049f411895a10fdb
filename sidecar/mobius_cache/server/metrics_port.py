"""The optional metrics listener: a second socket of the same server that answers only ``/metrics``/``/healthz``.

The API binds loopback, where in-cluster Prometheus cannot reach it. ``MOBIUS_SIDECAR_METRICS_PORT`` opens one
more socket (by default on 0.0.0.0) on the *same* uvicorn server: one process, one event loop, one lifespan,
one graceful shutdown and one registry. :class:`SplitByPort` sends each request by the local port it arrived
on: requests to the metrics port go to :func:`metrics_only_app`, which knows nothing but the registry, so no
route of ``/v1/*`` (nor ``/docs``, ``/readyz``, ...) can be reached there, and exposing it needs no token.

A second uvicorn ``Server`` in the same loop was the alternative; it would install its own signal handlers
over the first one's and need its own start-up and shutdown, for no gain.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .errors import error_payload
from .front import ASGIApp, Receive, Scope, Send

__all__ = ["METRICS_PATHS", "SplitByPort", "metrics_only_app"]

METRICS_PATHS = ("/metrics", "/healthz")
_HEALTHY = b'{"status":"ok"}'


async def _send(
    send: Send,
    status: int,
    content_type: bytes,
    body: bytes,
    head: bool,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


def metrics_only_app(registry: CollectorRegistry) -> ASGIApp:
    """An ASGI app serving the registry at ``/metrics`` and liveness at ``/healthz``, and 404 for the rest."""
    json = b"application/json"

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan belongs to the sidecar app; websockets are refused by the server
        method, path = scope["method"], scope["path"]
        head = method == "HEAD"
        if path not in METRICS_PATHS:
            detail = "the metrics port serves only /metrics and /healthz; the API is on the loopback port"
            await _send(send, 404, json, error_payload("not_found", detail), head)
        elif method not in ("GET", "HEAD"):
            body = error_payload("method_not_allowed", f"only GET and HEAD are allowed on {path}")
            await _send(send, 405, json, body, head, ((b"allow", b"GET, HEAD"),))
        elif path == "/metrics":
            await _send(send, 200, CONTENT_TYPE_LATEST.encode(), generate_latest(registry), head)
        else:
            await _send(send, 200, json, _HEALTHY, head)

    return app


class SplitByPort:
    """Route requests that arrived on ``metrics_port`` to ``metrics_app``; everything else (and lifespan) to ``app``."""

    def __init__(self, app: ASGIApp, *, metrics_port: int, metrics_app: ASGIApp) -> None:
        self.app = app
        self.metrics_port = metrics_port
        self.metrics_app = metrics_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")  # (local address, local port) of the socket the request came in on
        if scope["type"] != "lifespan" and server is not None and server[1] == self.metrics_port:
            await self.metrics_app(scope, receive, send)
        else:
            await self.app(scope, receive, send)
