"""The store's records as ai_agents.v1 messages, for the gRPC API (the orchestrator's side of convert.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from ai_agents.convert import AGENT_STATE, AGENT_TYPE, TASK_STATE, dict_to_struct
from ai_agents.orchestrator import validation
from ai_agents.store.records import (
    AgentRecord,
    AllocationRecord,
    MessageRecord,
    ResourceUsageRecord,
    TaskRecord,
)
from ai_agents.v1 import agents_pb2, messaging_pb2, resources_pb2, tasks_pb2


def stored_to_struct(value: dict[str, Any], *, field: str) -> struct_pb2.Struct:
    """A stored payload, result or body as a Struct that every reader decodes; never raises.

    Rows stored before the door checked depth and numbers may hold what protobuf cannot carry: reads show
    such parts as "<unencodable: reason>" strings instead of failing (documented in docs/contracts.md).
    """
    if validation.stored_value_problem(value, field=field) is not None:
        value = validation.replace_unencodable(value)
    try:
        return dict_to_struct(value)
    except Exception as exc:  # a value the check above missed must still not fail a read
        return dict_to_struct({"unencodable": validation.placeholder(f"{field}: {type(exc).__name__}")})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_PER_DAY = 86_400


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    # Arithmetic on the timedelta, not Timestamp.FromDatetime: a task carries four timestamps, and protobuf's
    # pure-Python conversion was a measurable part of encoding one (bench/README.md, "Spans only when traced").
    if value is None:
        return None
    if value.tzinfo is None:  # as FromDatetime reads a naive datetime: UTC
        value = value.replace(tzinfo=UTC)
    since = value - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=since.days * _SECONDS_PER_DAY + since.seconds, nanos=since.microseconds * 1000
    )


def task_to_proto(task: TaskRecord) -> tasks_pb2.Task:
    return tasks_pb2.Task(
        task_id=task.task_id,
        agent_type=AGENT_TYPE.to_proto(task.agent_type),
        state=TASK_STATE.to_proto(task.state),
        payload=stored_to_struct(task.payload, field="payload"),
        result=stored_to_struct(task.result, field="result") if task.result is not None else None,
        error=task.error,
        priority=task.priority,
        idempotency_key=task.idempotency_key or "",
        attempts=task.attempts,
        max_attempts=task.max_attempts,
        lease_owner=task.lease_owner or "",
        lease_expires_at=_ts(task.lease_expires_at),
        progress=task.progress,
        progress_message=task.progress_message,
        created_at=_ts(task.created_at),
        updated_at=_ts(task.updated_at),
        finished_at=_ts(task.finished_at),
        parent_task_id=task.parent_task_id or "",
        child_task_ids=task.child_task_ids,
    )


def agent_to_proto(agent: AgentRecord) -> agents_pb2.Agent:
    return agents_pb2.Agent(
        agent_id=agent.agent_id,
        agent_type=AGENT_TYPE.to_proto(agent.agent_type),
        state=AGENT_STATE.to_proto(agent.state),
        labels=agent.labels,
        capacity=agent.capacity,
        address=agent.address,
        version=agent.version,
        registered_at=_ts(agent.registered_at),
        last_heartbeat_at=_ts(agent.last_heartbeat),
        running=agent.running,
    )


def message_to_proto(message: MessageRecord) -> messaging_pb2.Message:
    return messaging_pb2.Message(
        message_id=message.message_id,
        sender=message.sender,
        recipient_agent_id=message.recipient_agent_id or "",
        recipient_type=AGENT_TYPE.to_proto(message.recipient_type),
        to_all=message.to_all,
        topic=message.topic,
        body=stored_to_struct(message.body, field="body"),
        created_at=_ts(message.created_at),
        sender_task_id=message.sender_task_id or "",
    )


def allocation_to_proto(allocation: AllocationRecord) -> resources_pb2.Allocation:
    return resources_pb2.Allocation(
        allocation_id=allocation.allocation_id,
        agent_id=allocation.agent_id,
        agent_type=AGENT_TYPE.to_proto(allocation.agent_type),
        resource=allocation.resource,
        amount=allocation.amount,
        created_at=_ts(allocation.created_at),
    )


def usage_to_proto(usage: ResourceUsageRecord) -> resources_pb2.ResourceUsage:
    return resources_pb2.ResourceUsage(
        agent_type=AGENT_TYPE.to_proto(usage.agent_type),
        resource=usage.resource,
        allocated=usage.allocated,
        quota=usage.quota,
    )
