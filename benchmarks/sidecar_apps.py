"""The two reference servers of the sidecar benchmark (run by uvicorn with ``--factory``).

``naive_app``: what a team would write first: a FastAPI endpoint doing one redis-py GET (the baseline).
``constant_app``: a raw ASGI app answering a constant body (the ceiling of one uvicorn worker).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Response


def naive_app() -> FastAPI:
    client = aioredis.from_url(os.environ["BENCH_REDIS_URL"], max_connections=50)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/v1/cache/{key}")
    async def get(key: str) -> Response:
        value = await client.get("mobius:" + key)
        if value is None:
            return Response(status_code=404)
        return Response(value, media_type="application/octet-stream")

    return app


def constant_app() -> Any:
    body = b"x" * 100
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(body)).encode())]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
