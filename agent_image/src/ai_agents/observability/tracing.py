"""OpenTelemetry tracing: exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, otherwise a no-op."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def tracing_enabled() -> bool:
    """Tracing (and so context propagation across gRPC) is on when an OTLP endpoint is configured."""
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def tracer_installed() -> bool:
    """Whether a tracer provider is installed (configure_tracing, or an embedding application's own). Without one
    every span is a no-op, so hot paths ask this to skip building them."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def configure_tracing(service_name: str) -> TracerProvider | None:
    """Install a tracer provider in an entry point; returns it so shutdown can flush spans."""
    if not tracing_enabled():
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
