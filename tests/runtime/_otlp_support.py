"""Real processes exporting traces to this test: an OTLP/gRPC receiver, and an orchestrator process that uses it.

Tracing in the runtime is on only with OTEL_EXPORTER_OTLP_ENDPOINT set, so tests that read spans or trace ids
point real `ai-agents` processes at the receiver here and stop them with SIGTERM, which flushes their spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from ai_agents.local.ports import loopback_port_env, server_ports
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

from ._fleet_support import AGENT_IDENTITY_SECRET
from ._orchestrator_process import spawn, stop

# Tracing export that flushes quickly, for every process.
TRACING_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "100"}


@dataclass(frozen=True)
class ExportedSpan:
    """One span as a process exported it; ids in hex, as Jaeger and the JSON logs show them."""

    service: str
    name: str
    kind: str  # SERVER, CLIENT, CONSUMER, ... (the OTLP enum's name without its prefix)
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]  # (trace_id, span_id) of each linked span


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace endpoint that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []

    @property
    def trace_ids(self) -> set[str]:
        return {span.trace_id for span in self.spans}

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ExportedSpan(
                            service=str(resource.get("service.name", "")),
                            name=span.name,
                            kind=span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                        )
                    )
        return trace_service_pb2.ExportTraceServiceResponse()


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[tuple[str, TraceReceiver]]:
    receiver = TraceReceiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"http://127.0.0.1:{port}", receiver
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def orchestrator_process(dsn: str, log_path: Path, **env: str) -> AsyncIterator[dict[str, int]]:
    """`ai-agents orchestrator` on free ports; SIGTERM at the end, so it flushes its spans on the way out."""
    ports = server_ports()
    full_env = {
        **os.environ,
        "AI_AGENTS_DATABASE_URL": dsn,
        **loopback_port_env(ports),
        "AI_AGENTS_AGENT_IDENTITY": "local",
        "AI_AGENTS_AGENT_IDENTITY_SECRET": AGENT_IDENTITY_SECRET,
        "AI_AGENTS_SHUTDOWN_GRACE_SECONDS": "1",
        "AI_AGENTS_DATABASE_POOL_MIN": "1",
        **env,
    }
    proc = spawn(["orchestrator"], full_env, log_path)
    try:
        yield ports
    finally:
        # In a thread: the OTLP receiver runs on this event loop and must answer the exit-time export.
        await asyncio.to_thread(stop, proc)
