"""Names shared by every part of the runtime: agent types, task and agent states."""

from __future__ import annotations

import enum


class AgentType(enum.StrEnum):
    CODING = "coding"
    TESTING = "testing"
    SECURITY = "security"
    COMPLIANCE = "compliance"
    DOCUMENTATION = "documentation"
    DISCOVERY = "discovery"


class TaskState(enum.StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD_LETTER = "dead_letter"

    @property
    def terminal(self) -> bool:
        return self not in (TaskState.QUEUED, TaskState.LEASED)


class AgentState(enum.StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"
    STALE = "stale"
    DEREGISTERED = "deregistered"


AGENT_TYPES: tuple[str, ...] = tuple(t.value for t in AgentType)
