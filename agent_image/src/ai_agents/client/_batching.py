"""Calls made at the same moment go together: one batch call (SubmitTasks, CompleteTasks) instead of a call each.

One batch call is in flight at a time (ai_agents/group_commit.py); items handed in meanwhile form the next. An idle
client's single item goes at once, alone in its call. Each item's outcome carries the status its own unary call
would have answered; a refusal is raised as that call's `grpc.aio.AioRpcError`, so callers handle it the same way.
An orchestrator that does not serve the batch method (an older one, during a rolling upgrade) is remembered: from
then on every item goes as its unary call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import grpc

from ai_agents.group_commit import RUN_ALONE, Answer, GroupCommit

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741 - an item of the batch request
O = TypeVar("O")  # noqa: E741 - its outcome in the batch response

_STATUS_BY_VALUE = {status.value[0]: status for status in grpc.StatusCode}

# What an item gains in a batch request beside its own encoding: trace context (traceparent 55 bytes, tracestate at
# most 512), their tags and lengths, and the item's own tag and length.
ITEM_OVERHEAD_BYTES = 600


def refused(code: int, message: str) -> grpc.aio.AioRpcError:
    """An item's refusal as the error its unary call would have raised."""
    status = _STATUS_BY_VALUE.get(code, grpc.StatusCode.UNKNOWN)
    return grpc.aio.AioRpcError(status, grpc.aio.Metadata(), grpc.aio.Metadata(), details=message)


class CallBatcher(Generic[I, O]):
    """`await batcher(item)` returns the item's outcome from a batch call, or RUN_ALONE: send it as its unary call.

    `send(items)` makes the batch call and returns one outcome per item, in order. An error of the whole call that
    `shared_error` accepts is raised to every caller, as their own calls would likely have failed; after any other
    (a batch of one included), each item runs alone. `item_limit_bytes`: items larger than this run alone, so that
    a full call stays within the message limit (`max_request_bytes`).
    """

    def __init__(
        self,
        method: str,
        send: Callable[[Sequence[I]], Awaitable[Sequence[O]]],
        *,
        max_batch: int,
        max_request_bytes: int,
        shared_error: Callable[[Exception], bool],
    ) -> None:
        self._method = method
        self._send = send
        self._shared_error = shared_error
        self.item_limit_bytes = max_request_bytes // max_batch - ITEM_OVERHEAD_BYTES
        self._group: GroupCommit[I, O] = GroupCommit(
            method, self._call, shared_error=shared_error, max_batch=max_batch, max_in_flight=1
        )
        self.unsupported = False

    def takes(self, size_bytes: int) -> bool:
        """Whether an item of this encoded size may share a call (else: its unary call)."""
        return not self.unsupported and size_bytes <= self.item_limit_bytes

    async def __call__(self, item: I) -> Answer[O]:
        try:
            return await self._group(item)
        except Exception as exc:
            if self._shared_error(exc):
                raise
            # A call of its own failed for the call as a whole (an older orchestrator: UNIMPLEMENTED; a request it
            # could not decode): the unary call gives this item its own answer.
            return RUN_ALONE

    async def _call(self, items: Sequence[I]) -> list[Answer[O]]:
        try:
            return list(await self._send(items))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED and not self.unsupported:
                self.unsupported = True
                log.warning("the orchestrator does not serve %s; sending each item alone", self._method)
            raise
