"""Rows of the store as typed, immutable records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ai_agents.domain import AgentState, TaskState


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class TaskRecord:
    task_id: str
    agent_type: str
    state: TaskState
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error: str
    priority: int
    idempotency_key: str | None
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_token: int | None
    lease_expires_at: datetime | None
    progress: float
    progress_message: str
    created_at: datetime
    updated_at: datetime
    first_leased_at: datetime | None
    leased_at: datetime | None
    finished_at: datetime | None
    # The W3C trace context the task's next step continues (observability/task_trace.py): as stored, the
    # submit's; in what the orchestrator hands an agent, its lease span's. None when that call was not traced.
    traceparent: str | None = None
    tracestate: str | None = None
    # The chain (store/follow_ups.py): the task whose completion created this one, and those this one's created.
    parent_task_id: str | None = None
    child_task_ids: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> TaskRecord:
        parent = row["parent_task_id"]
        return cls(
            task_id=str(row["task_id"]),
            agent_type=row["agent_type"],
            # The column holds the enum's values (a CHECK constraint keeps it so).
            state=TaskState(row["state"]),
            payload=_json(row["payload"]),
            result=_json(row["result"]),
            error=row["error"],
            priority=row["priority"],
            idempotency_key=row["idempotency_key"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            lease_owner=row["lease_owner"],
            lease_token=row["lease_token"],
            lease_expires_at=row["lease_expires_at"],
            progress=row["progress"],
            progress_message=row["progress_message"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            first_leased_at=row["first_leased_at"],
            leased_at=row["leased_at"],
            finished_at=row["finished_at"],
            traceparent=row["traceparent"],
            tracestate=row["tracestate"],
            parent_task_id=str(parent) if parent is not None else None,
            child_task_ids=tuple(str(child) for child in row["child_task_ids"] or ()),
        )


@dataclass(frozen=True, slots=True)
class AgentRecord:
    agent_id: str
    agent_type: str
    # stale is derived from the last heartbeat, never stored
    state: AgentState
    labels: dict[str, str]
    capacity: int
    address: str
    version: str
    running: int
    registered_at: datetime
    last_heartbeat: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> AgentRecord:
        return cls(
            agent_id=row["agent_id"],
            agent_type=row["agent_type"],
            state=AgentState(row["effective_state"]),
            labels=_json(row["labels"]),
            capacity=row["capacity"],
            address=row["address"],
            version=row["version"],
            running=row["running"],
            registered_at=row["registered_at"],
            last_heartbeat=row["last_heartbeat"],
        )


@dataclass(frozen=True, slots=True)
class MessageRecord:
    message_id: int
    sender: str
    recipient_agent_id: str | None
    recipient_type: str | None
    to_all: bool
    topic: str
    body: dict[str, Any]
    created_at: datetime
    # The task whose completion sent it (store/follow_ups.py); None for SendMessage and BroadcastMessage.
    sender_task_id: str | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> MessageRecord:
        sender_task_id = row["sender_task_id"]
        return cls(
            message_id=row["message_id"],
            sender=row["sender"],
            recipient_agent_id=row["recipient_agent_id"],
            recipient_type=row["recipient_type"],
            to_all=row["to_all"],
            topic=row["topic"],
            body=_json(row["body"]),
            created_at=row["created_at"],
            sender_task_id=str(sender_task_id) if sender_task_id is not None else None,
        )


@dataclass(frozen=True, slots=True)
class AllocationRecord:
    allocation_id: str
    agent_id: str
    agent_type: str
    resource: str
    amount: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> AllocationRecord:
        return cls(
            allocation_id=str(row["allocation_id"]),
            agent_id=row["agent_id"],
            agent_type=row["agent_type"],
            resource=row["resource"],
            amount=row["amount"],
            created_at=row["created_at"],
        )


@dataclass(frozen=True, slots=True)
class ResourceUsageRecord:
    agent_type: str
    resource: str
    allocated: int
    quota: int


@dataclass(frozen=True, slots=True)
class TypeCounts:
    """Tasks per state and agents per state for one agent type."""

    agent_type: str
    tasks: dict[TaskState, int]
    agents: dict[AgentState, int]
