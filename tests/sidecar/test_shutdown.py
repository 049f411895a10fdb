"""SIGTERM under load: the sidecar stops accepting, finishes every in-flight request, then closes the pool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import httpx

from tests.servers import RedisServer
from tests.sidecar.procs import SidecarProcess

SLOW_UPLOADS = 4
GET_WORKERS = 8


async def _load(proc: SidecarProcess) -> tuple[list[int], list[int], list[str]]:
    started = asyncio.Event()
    upload_started = 0

    async def slow_body() -> AsyncIterator[bytes]:
        nonlocal upload_started
        upload_started += 1
        if upload_started == SLOW_UPLOADS:
            started.set()
        for _ in range(10):  # ~1 s in flight, across the SIGTERM
            yield b"x" * 100
            await asyncio.sleep(0.1)

    stop = asyncio.Event()
    get_statuses: list[int] = []
    refused: list[str] = []

    async def get_worker(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                resp = await client.get("/v1/cache/api:v1:hot")
                get_statuses.append(resp.status_code)
            except (
                httpx.TransportError
            ) as exc:  # refused or closed before the request was sent: after SIGTERM
                refused.append(type(exc).__name__)
                await asyncio.sleep(0.01)

    limits = httpx.Limits(max_connections=SLOW_UPLOADS + GET_WORKERS)
    async with httpx.AsyncClient(base_url=proc.url, timeout=10, limits=limits) as client:
        await client.put("/v1/cache/api:v1:hot", content=b"hot")
        workers = [asyncio.create_task(get_worker(client)) for _ in range(GET_WORKERS)]
        uploads = [
            asyncio.create_task(client.put(f"/v1/cache/api:v1:slow{i}", content=slow_body()))
            for i in range(SLOW_UPLOADS)
        ]
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.sleep(0.2)
        assert proc.proc is not None
        proc.proc.terminate()  # SIGTERM while the uploads are mid-body and GETs keep coming
        upload_statuses = [r.status_code for r in await asyncio.gather(*uploads)]
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*workers)
    return upload_statuses, get_statuses, refused


def test_sigterm_finishes_in_flight_requests(
    redis_server: RedisServer, start_sidecar: Callable[..., SidecarProcess]
) -> None:
    proc = start_sidecar(redis_server.url)
    uploads, gets, refused = asyncio.run(_load(proc))
    assert uploads == [204] * SLOW_UPLOADS  # every in-flight request completed
    assert gets and all(status == 200 for status in gets), sorted(set(gets))
    assert refused  # new requests were turned away once shutdown began
    assert proc.proc is not None
    t0 = time.monotonic()
    code = proc.proc.wait(15)
    assert code in (0, -15), code  # uvicorn re-raises SIGTERM after a clean shutdown
    assert time.monotonic() - t0 < 10
    assert "Redis pool closed" in proc.log()
    with redis_server.client() as r:
        assert all(r.exists(f"mobius:api:v1:slow{i}") for i in range(SLOW_UPLOADS))
