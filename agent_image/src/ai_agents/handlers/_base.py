"""The handler interface: run one leased task, return its result or raise HandlerError."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ai_agents.config import AgentLive


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


class Handler(Protocol):
    async def run(self, task: TaskContext) -> dict[str, Any]: ...

    def reconfigure(self, live: AgentLive) -> None:
        """Take the live settings that concern this handler; tasks started afterwards use them."""
        ...

    async def close(self) -> None: ...
