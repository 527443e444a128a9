"""Completions acknowledged together: tasks that finish while a CompleteTasks call is in flight go in the next.

A call per completion costs the orchestrator about as much as the completion itself; under load an agent's tasks
finish in bunches, and one CompleteTasks call acknowledges a bunch (ai_agents/client/_batching.py). An idle
agent's single completion goes at once, alone in its call.

Only plain completions go this way. One that hands work on (follow-ups, messages) stays a CompleteTask call: the
follow-ups continue that call's trace (docs/contracts.md, "Traces"). So does a result too large to share a call.
"""

from __future__ import annotations

from collections.abc import Callable

from ai_agents import convert as c
from ai_agents.client import OrchestratorClient
from ai_agents.client._batching import CallBatcher, refused
from ai_agents.domain import MAX_COMPLETIONS_PER_CALL
from ai_agents.group_commit import RUN_ALONE
from ai_agents.observability.task_trace import current_trace_context
from ai_agents.v1 import tasks_pb2


class CompletionBatcher:
    """`await batcher.complete(item)` completes one task, raising what CompleteTask would have raised.

    `shared_error` names the errors of a whole call that each completion retries itself (the agent's transient
    errors); after any other, each completion of that call goes alone as a CompleteTask call, and gets exactly
    CompleteTask's answer.
    """

    def __init__(
        self,
        client: OrchestratorClient,
        *,
        max_request_bytes: int,
        shared_error: Callable[[Exception], bool],
    ) -> None:
        self._client = client
        self._batcher: CallBatcher[tasks_pb2.TaskCompletion, tasks_pb2.CompletionOutcome] = CallBatcher(
            "CompleteTasks",
            client.complete_tasks,
            max_batch=MAX_COMPLETIONS_PER_CALL,
            max_request_bytes=max_request_bytes,
            shared_error=shared_error,
        )

    def takes(self, completion: tasks_pb2.TaskCompletion) -> bool:
        """Whether this completion may share a call (else: CompleteTask)."""
        return self._batcher.takes(completion.ByteSize())

    async def complete(self, completion: tasks_pb2.TaskCompletion) -> None:
        # Sent in the context of the task's `run task` span: the orchestrator records the completion in its trace.
        traceparent, tracestate = current_trace_context()
        completion.traceparent, completion.tracestate = traceparent or "", tracestate or ""
        answer = await self._batcher(completion)
        if answer is RUN_ALONE:
            result = c.struct_to_dict(completion.result)
            await self._client.complete_task(completion.task_id, completion.lease_token, result)
            return
        assert isinstance(answer, tasks_pb2.CompletionOutcome)
        if answer.code:
            raise refused(answer.code, answer.message)
