"""The `complete task` span: where a task's trace meets the CompleteTasks call that completed it with others.

A CompleteTasks call completes tasks from many traces at once, so, like LeaseTasks, it keeps its own trace. Each
completion carries the context of the agent's `run task` span; the orchestrator records that completion in a
`complete task` span in the task's trace (the parent of its `store complete`), linked to the call's server span,
and the call's span linked back. A completion without a context is recorded in the call's trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import trace

from ai_agents.observability.task_trace import parent_context

_tracer = trace.get_tracer(__name__)


@contextlib.contextmanager
def completion_span(*, task_id: str, traceparent: str, tracestate: str) -> Iterator[None]:
    """Run one completion of a batch in its task's trace (the current context is the call's)."""
    batch = trace.get_current_span()
    parent = parent_context(traceparent, tracestate)
    if parent is None or not batch.is_recording():
        # Untraced agent, or no tracer here: whatever the completion records stays in the call's context.
        yield
        return
    with _tracer.start_as_current_span(
        "complete task",
        context=parent,
        # The orchestrator serving this task's completion: its SERVER side, under the agent's run of the task.
        kind=trace.SpanKind.SERVER,
        links=[trace.Link(batch.get_span_context())],
        attributes={"ai_agents.task_id": task_id},
    ) as span:
        batch.add_link(span.get_span_context(), {"ai_agents.task_id": task_id})
        yield
