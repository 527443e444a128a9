"""The handler interface: run one leased task, return its result (and what it hands on) or raise HandlerError."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ai_agents.config import AgentLive
from ai_agents.handlers._inbox import Inbox
from ai_agents.handoff import FollowUp, OutgoingMessage


class HandlerError(Exception):
    """A task failed. `retryable` failures return to the queue until max_attempts; others fail at once."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class TaskContext:
    task_id: str
    agent_type: str
    payload: dict[str, Any]
    attempt: int
    # Report progress (0..1) while the task runs; also keeps the lease alive.
    report_progress: Callable[[float, str], Awaitable[None]]
    # The messages this agent received (direct, to its type, to all) since its message stream opened.
    inbox: Inbox = field(default_factory=Inbox)
    # The task whose completion requested this one as a follow-up; None for a submitted task.
    parent_task_id: str | None = None


@dataclass(frozen=True, slots=True)
class HandlerResult:
    """A result that hands work on: `follow_ups` are queued and `messages` sent with the completion, in the same
    transaction, exactly once (docs/contracts.md, "Chains"). Returning a plain dict is the same with neither."""

    result: dict[str, Any]
    follow_ups: Sequence[FollowUp] = ()
    messages: Sequence[OutgoingMessage] = ()


class Handler(Protocol):
    async def run(self, task: TaskContext) -> dict[str, Any] | HandlerResult: ...

    def reconfigure(self, live: AgentLive) -> None:
        """Take the live settings that concern this handler; tasks started afterwards use them."""
        ...

    async def close(self) -> None: ...
