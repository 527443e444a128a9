"""Completions acknowledged together: tasks that finish while a CompleteTasks call is in flight go in the next.

A call per completion costs the orchestrator about as much as the completion itself; under load an agent's tasks
finish in bunches, and one CompleteTasks call acknowledges a bunch (ai_agents/group_commit.py, one call in flight).
An idle agent's single completion goes at once, alone in its call.

Only plain completions go this way. One that hands work on (follow-ups, messages) stays a CompleteTask call: the
follow-ups continue that call's trace (docs/contracts.md, "Traces"). So does a result too large to share a call.
An orchestrator that does not serve CompleteTasks (an older one, during a rolling upgrade) is remembered, and
from then on every completion goes alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import grpc

from ai_agents import convert as c
from ai_agents.client import OrchestratorClient
from ai_agents.domain import MAX_COMPLETIONS_PER_CALL
from ai_agents.group_commit import RUN_ALONE, Answer, GroupCommit
from ai_agents.observability.task_trace import current_trace_context
from ai_agents.v1 import tasks_pb2

log = logging.getLogger(__name__)

# What a completion gains after `takes` measured it: traceparent (55), tracestate (at most 512), their tags and
# lengths, and the item's own tag and length in the request.
_ITEM_OVERHEAD_BYTES = 600
_STATUS_BY_VALUE = {status.value[0]: status for status in grpc.StatusCode}


class CompletionRefused(Exception):
    """The orchestrator's answer to one completion of a batch, when not OK: what CompleteTask would have raised.

    `code()` and `details()` read as on grpc.aio.AioRpcError, so an outcome is handled the same either way.
    """

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


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
        # So that a full call stays within the message limit whatever its completions hold, trace context (added
        # after this check) and each item's framing included.
        self._max_item_bytes = max_request_bytes // MAX_COMPLETIONS_PER_CALL - _ITEM_OVERHEAD_BYTES
        self._group: GroupCommit[tasks_pb2.TaskCompletion, tasks_pb2.CompletionOutcome] = GroupCommit(
            "complete-tasks",
            self._send,
            shared_error=shared_error,
            max_batch=MAX_COMPLETIONS_PER_CALL,
            max_in_flight=1,
        )
        self.unsupported = False

    def takes(self, completion: tasks_pb2.TaskCompletion) -> bool:
        """Whether this completion may share a call (else: CompleteTask)."""
        return not self.unsupported and completion.ByteSize() <= self._max_item_bytes

    async def complete(self, completion: tasks_pb2.TaskCompletion) -> None:
        # Sent in the context of the task's `run task` span: the orchestrator records the completion in its trace.
        traceparent, tracestate = current_trace_context()
        completion.traceparent, completion.tracestate = traceparent or "", tracestate or ""
        try:
            answer = await self._group(completion)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            answer = RUN_ALONE  # a call of its own was refused the same way: CompleteTask it
        if answer is RUN_ALONE:
            result = c.struct_to_dict(completion.result)
            await self._client.complete_task(completion.task_id, completion.lease_token, result)
            return
        assert isinstance(answer, tasks_pb2.CompletionOutcome)
        if answer.code != grpc.StatusCode.OK.value[0]:
            raise CompletionRefused(_STATUS_BY_VALUE.get(answer.code, grpc.StatusCode.UNKNOWN), answer.message)

    async def _send(self, completions: Sequence[tasks_pb2.TaskCompletion]) -> list[Answer[tasks_pb2.CompletionOutcome]]:
        try:
            return list(await self._client.complete_tasks(completions))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED and not self.unsupported:
                self.unsupported = True
                log.warning("the orchestrator does not serve CompleteTasks; completing each task alone")
            raise
