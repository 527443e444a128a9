"""Spans around the task store's statements, so a task's trace shows where its time went in PostgreSQL.

One span per caller, not per statement: under group commit (ai_agents/group_commit.py) many callers share one
statement, and each caller's span (its wait for the batch included) belongs to that caller's trace. No-op spans
unless an entry point installed a tracer provider (OTEL_EXPORTER_OTLP_ENDPOINT set).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

_tracer = trace.get_tracer(__name__)


# What a caller outside any recorded span gets: a span that records nothing, entered and left at no cost.
_UNRECORDED: AbstractContextManager[trace.Span] = nullcontext(trace.INVALID_SPAN)


def store_span(operation: str, statement: str, **attributes: AttributeValue) -> AbstractContextManager[trace.Span]:
    """`store <operation>`: a client span of PostgreSQL's (database semantic conventions: system, table, verb).

    Only under a recorded span (the caller's server span): a child of an unrecorded one is never sampled, and
    starting a no-op span per statement was a measurable part of a task's cost without tracing.
    """
    if not trace.get_current_span().is_recording():
        return _UNRECORDED
    return _tracer.start_as_current_span(
        f"store {operation}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "db.system.name": "postgresql",
            "db.collection.name": "tasks",
            "db.operation.name": statement,
            **{f"ai_agents.{name}": value for name, value in attributes.items()},
        },
    )
