"""Names and limits shared by every part of the runtime: agent types, task and agent states, batch sizes."""

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

# Completions in one CompleteTasks call: the orchestrator refuses more, and an agent sends no more. An agent's tasks
# that finish together are bounded by its concurrency in practice; the bound keeps a call's statement and answer
# small.
MAX_COMPLETIONS_PER_CALL = 64
# Submissions in one SubmitTasks call, for the same reasons; a client sends no more.
MAX_SUBMISSIONS_PER_CALL = 64
