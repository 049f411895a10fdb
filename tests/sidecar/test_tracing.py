"""OpenTelemetry: a server span per request (named by route template), Redis client spans beneath it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mobius_cache import CacheConfig
from mobius_cache.server.app import create_app
from mobius_cache.server.settings import SidecarSettings
from tests.servers import RedisServer


@pytest.fixture
def uninstrument_after() -> Iterator[None]:
    """Tracing patches redis-py process-wide; undo it so later tests in this worker get the lean client."""
    yield
    instrumentor = RedisInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


async def test_server_spans_per_request(shared_redis: RedisServer, uninstrument_after: None) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    front = create_app(
        SidecarSettings(tracing=True),
        config=CacheConfig(redis_url=shared_redis.url, cache_prefix="trace:"),
        tracer_provider=provider,
    )
    api = front.app
    async with api.router.lifespan_context(api):  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=front)
        async with httpx.AsyncClient(transport=transport, base_url="http://sidecar") as client:
            assert (await client.put("/v1/cache/tr:1", content=b"x")).status_code == 204
            assert (await client.get("/v1/cache/tr:1")).status_code == 200
            assert (await client.get("/v1/cache/tr:2")).status_code == 404
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind == SpanKind.SERVER]
    names = [s.name for s in server]
    assert names == ["PUT /v1/cache/{key}", "GET /v1/cache/{key}", "GET /v1/cache/{key}"]
    clients = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert [s.name for s in clients] == ["SET", "GET", "GET"]
    assert all(s.attributes["db.system"] == "redis" for s in clients)
    # Each Redis span is a child of its request's server span.
    for client_span, server_span in zip(clients, server, strict=True):
        assert client_span.parent is not None and client_span.parent.span_id == server_span.context.span_id
    assert [s.attributes["http.response.status_code"] for s in server] == [204, 200, 404]
    assert all("tr:1" not in s.name for s in server)  # keys stay out of span names


async def test_tracing_off_by_default(shared_redis: RedisServer) -> None:
    front = create_app(SidecarSettings(), config=CacheConfig(redis_url=shared_redis.url))
    assert front.state.tracer is None
