"""OpenTelemetry set-up (``MOBIUS_TRACING=true``): Redis client spans and a tracer for the server spans.

The front door opens one SERVER span per request, named by route template (never by key); redis-py is
patched by opentelemetry-instrumentation-redis, so each Redis command is a CLIENT span beneath it. When the
application has not installed an SDK tracer provider, one is made here: OTLP when
``opentelemetry-exporter-otlp`` is installed (configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables),
the console with ``OTEL_TRACES_EXPORTER=console``, and otherwise none (a warning says so).
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["setup_tracing"]

log = logging.getLogger("mobius_cache.server.tracing")


def _default_provider() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current  # the embedding application configured OpenTelemetry itself
    service = os.environ.get("OTEL_SERVICE_NAME", "mobius-sidecar")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter: Any = None
    if os.environ.get("OTEL_TRACES_EXPORTER", "").lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        except ImportError:
            log.warning(
                "MOBIUS_TRACING is on but no exporter is installed: pip install opentelemetry-exporter-otlp "
                "(or set OTEL_TRACES_EXPORTER=console); spans are dropped"
            )
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def setup_tracing(provider: Any = None) -> tuple[Any, Any]:
    """Instrument redis-py and return ``(tracer, SpanKind.SERVER)`` for the front door."""
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.redis import RedisInstrumentor
    except ImportError as exc:
        raise RuntimeError(
            "MOBIUS_TRACING needs the tracing extra: pip install 'mobius-cache[tracing]'"
        ) from exc
    if provider is None:
        provider = _default_provider()
    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
    return provider.get_tracer("mobius_cache.server"), trace.SpanKind.SERVER
