"""One task, one trace: the W3C trace context a task carries from its submit to the run of its handler.

The orchestrator stores the context of the submit's server span with the task (columns `traceparent`,
`tracestate`). Leasing the task starts a `lease task` span as a child of that context, and the lease answer
hands the lease span's context to the agent (`TaskLease.traceparent`/`tracestate`), which runs the task in a
`run task` span, the lease span's child; the outcome call continues the run's trace over gRPC. docs/contracts.md
("Traces") draws the tree.

Child, not only a link (the messaging conventions' default between a queue's producer and consumer): a task is
one message that one handler runs per attempt, never fanned out, and whoever submitted it wants to follow it to
its outcome in one trace. The batched calls, LeaseTasks (many tasks received at once) and CompleteTasks (many
acknowledged at once), keep their own traces; their spans and each task's span there link to each other
(orchestrator/lease_trace.py, orchestrator/batch_item_trace.py).

Always the W3C format, whatever OTEL_PROPAGATORS configures: it is what the columns and the proto fields hold.
This module is shared by both sides, so it imports nothing of the store.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_W3C = TraceContextTextMapPropagator()
_TRACEPARENT = "traceparent"
_TRACESTATE = "tracestate"
# W3C asks that at least 512 characters of tracestate be passed on. A caller's longer one is dropped rather than
# stored with every task: the trace still joins, only vendor entries are lost.
MAX_TRACESTATE_CHARS = 512


def current_trace_context(context: Context | None = None) -> tuple[str | None, str | None]:
    """(traceparent, tracestate) of the span in `context` (default: the current one); (None, None) without one.

    Without a tracer provider (OTEL_EXPORTER_OTLP_ENDPOINT unset) there is no valid span, so nothing is stored.
    """
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None, None  # what injecting would give, without building a carrier per task
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=context)
    tracestate = carrier.get(_TRACESTATE) or None
    if tracestate is not None and len(tracestate) > MAX_TRACESTATE_CHARS:
        tracestate = None
    return carrier.get(_TRACEPARENT) or None, tracestate


def parent_context(traceparent: str | None, tracestate: str | None) -> Context | None:
    """The context to start a span in, from a stored or received traceparent; None when there is none (or it is
    malformed), so the span starts where it would have without one."""
    if not traceparent:
        return None
    carrier = {_TRACEPARENT: traceparent}
    if tracestate:
        carrier[_TRACESTATE] = tracestate
    context = _W3C.extract(carrier)
    # The propagator ignores a malformed traceparent and returns an empty context: treat that as none.
    return context if context else None
