"""Where a task's trace meets the batch call that carried it: the `submit task` and `complete task` spans.

A SubmitTasks or CompleteTasks call carries tasks of many traces at once, so, like LeaseTasks, it keeps its own
trace. Each item carries the caller's span context (the client's span submitting it, the agent's `run task`); the
orchestrator records the item in a SERVER span of the item's own trace, linked to the call's server span, and the
call's span linked back. An item without a context: a submission starts a trace of its own, as an untraced
SubmitTask does; a completion is recorded in the call's trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import context as otel_context
from opentelemetry import trace

from ai_agents.observability.task_trace import parent_context

_tracer = trace.get_tracer(__name__)


class ItemSpan:
    """One item's span (None when the item is not traced) and its task, once known: a submission learns its
    task id only after the insert, and the batch's link back names it."""

    __slots__ = ("span", "task_id")

    def __init__(self, span: trace.Span | None) -> None:
        self.span = span
        self.task_id: str | None = None

    def set_task(self, task_id: str) -> None:
        self.task_id = task_id
        if self.span is not None:
            self.span.set_attribute("ai_agents.task_id", task_id)


@contextlib.contextmanager
def _item_span(name: str, *, traceparent: str, tracestate: str, own_trace: bool) -> Iterator[ItemSpan]:
    # Only under a recorded call span (the callers below check): there is a trace to link the item to.
    batch = trace.get_current_span()
    parent = parent_context(traceparent, tracestate)
    if parent is None and not own_trace:  # an item that stays in the call's context
        yield ItemSpan(None)
        return
    with _tracer.start_as_current_span(
        name,
        # An empty context starts a new trace.
        context=parent if parent is not None else otel_context.Context(),
        # The orchestrator serving this item: its SERVER side, under the caller's span.
        kind=trace.SpanKind.SERVER,
        links=[trace.Link(batch.get_span_context())],
    ) as span:
        item = ItemSpan(span)
        yield item
        batch.add_link(span.get_span_context(), {"ai_agents.task_id": item.task_id} if item.task_id else None)


class _Untraced(ItemSpan):
    """The item of a call that is not traced: nothing to record, so one shared instance serves every item."""

    __slots__ = ()

    def set_task(self, task_id: str) -> None:
        pass


# Without tracing, entering an item's span costs nothing: per item, a generator-based context manager was a
# measurable part of a batched call (bench/README.md, "Spans only when traced").
_UNTRACED_SUBMISSION: contextlib.AbstractContextManager[ItemSpan] = contextlib.nullcontext(_Untraced(None))
_UNTRACED_COMPLETION: contextlib.AbstractContextManager[None] = contextlib.nullcontext()


def completion_span(*, task_id: str, traceparent: str, tracestate: str) -> contextlib.AbstractContextManager[None]:
    """Run one completion of a CompleteTasks call in its task's trace (the current context is the call's)."""
    if not trace.get_current_span().is_recording():
        return _UNTRACED_COMPLETION
    return _completion_span(task_id=task_id, traceparent=traceparent, tracestate=tracestate)


@contextlib.contextmanager
def _completion_span(*, task_id: str, traceparent: str, tracestate: str) -> Iterator[None]:
    with _item_span("complete task", traceparent=traceparent, tracestate=tracestate, own_trace=False) as item:
        item.set_task(task_id)
        yield


def submission_span(*, traceparent: str, tracestate: str) -> contextlib.AbstractContextManager[ItemSpan]:
    """Run one submission of a SubmitTasks call where the task's trace starts; `set_task` on what it yields once
    the task is known."""
    if not trace.get_current_span().is_recording():
        return _UNTRACED_SUBMISSION
    return _item_span("submit task", traceparent=traceparent, tracestate=tracestate, own_trace=True)
