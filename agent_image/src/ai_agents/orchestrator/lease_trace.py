"""The `lease task` span: where a task's trace (its submit's) meets the LeaseTasks call that delivered it.

A LeaseTasks call is one long poll that may hand out many tasks, each from another trace, so the call keeps its
own trace. For each task it delivers, the orchestrator records one `lease task` span in the task's trace, timed
over the store statement that leased it and linked to the call's server span (and the call's span linked back),
and gives the agent that span's context to run the task in. observability/task_trace.py says why this is a
parent/child chain rather than only links.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from opentelemetry import trace

from ai_agents.observability.task_trace import current_trace_context, parent_context
from ai_agents.store.records import TaskRecord

_tracer = trace.get_tracer(__name__)


def lease_started() -> int:
    """The start of a lease statement, in the clock spans use (ns since the epoch)."""
    return time.time_ns()


def with_lease_spans(tasks: Sequence[TaskRecord], *, agent_id: str, started_ns: int) -> list[TaskRecord]:
    """`tasks` with their trace context replaced by that of a `lease task` span in each task's trace.

    A task submitted without a trace context gets none: its agent then starts the run's trace, as before.
    """
    batch = trace.get_current_span()
    leased: list[TaskRecord] = []
    for task in tasks:
        parent = parent_context(task.traceparent, task.tracestate)
        if parent is None:
            leased.append(task)
            continue
        span = _tracer.start_span(
            "lease task",
            context=parent,
            # The orchestrator, the queue's broker, sends the task (the message) to the agent in the lease answer:
            # a PRODUCER, so the agent's `run task` (CONSUMER) pairs with it the way the messaging conventions pair
            # span kinds, and service graphs draw the orchestrator -> agent edge.
            kind=trace.SpanKind.PRODUCER,
            start_time=started_ns,
            links=[trace.Link(batch.get_span_context())] if batch.get_span_context().is_valid else None,
            attributes={
                "messaging.operation.type": "send",
                "messaging.destination.name": task.agent_type,
                "messaging.message.id": task.task_id,
                "ai_agents.task_id": task.task_id,
                "ai_agents.agent_type": task.agent_type,
                "ai_agents.agent_id": agent_id,
                "ai_agents.attempt": task.attempts,
            },
        )
        span.end()
        # From the call's trace, each task's trace is one link away too.
        batch.add_link(span.get_span_context(), {"ai_agents.task_id": task.task_id})
        traceparent, tracestate = current_trace_context(trace.set_span_in_context(span))
        leased.append(dataclasses.replace(task, traceparent=traceparent, tracestate=tracestate))
    return leased
