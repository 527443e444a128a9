"""What a completed task hands on: follow-up tasks for other agent types and messages to other agents.

One form for every part: a handler returns them (ai_agents.handlers.HandlerResult), the client sends them with
the completion, the orchestrator validates them and the store creates them in the completion's transaction.
Client-safe: imports nothing of the orchestrator or the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A task to queue for `agent_type` once this one succeeds (linked to it as its parent)."""

    agent_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    # 0: the orchestrator's default.
    max_attempts: int = 0


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message sent with the completion. Exactly one audience: one agent, every agent of a type, or all."""

    topic: str
    body: dict[str, Any] = field(default_factory=dict)
    recipient_agent_id: str | None = None
    recipient_type: str | None = None
    to_all: bool = False
