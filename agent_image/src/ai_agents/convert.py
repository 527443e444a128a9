"""Conversions between the store's records and ai_agents.v1 messages (used by the gRPC API and the client)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from ai_agents.orchestrator import validation
from ai_agents.store.records import (
    AgentRecord,
    AllocationRecord,
    MessageRecord,
    ResourceUsageRecord,
    TaskRecord,
)
from ai_agents.v1 import agents_pb2, common_pb2, messaging_pb2, resources_pb2, tasks_pb2

_AGENT_TYPE_PREFIX = "AGENT_TYPE_"
_TASK_STATE_PREFIX = "TASK_STATE_"
_AGENT_STATE_PREFIX = "AGENT_STATE_"


def agent_type_to_str(value: int) -> str:
    """AGENT_TYPE_CODING -> "coding"; UNSPECIFIED (or an unknown number) -> ""."""
    if value == common_pb2.AGENT_TYPE_UNSPECIFIED:
        return ""
    try:
        name = common_pb2.AgentType.Name(cast("common_pb2.AgentType.ValueType", value))
        return str(name)[len(_AGENT_TYPE_PREFIX) :].lower()
    except ValueError:
        return f"#{value}"


def agent_type_to_proto(value: str | None) -> common_pb2.AgentType.ValueType:
    # int(...) and 0 are plain ints at run time; the stubs' ValueType is a NewType of int.
    return cast(
        "common_pb2.AgentType.ValueType",
        int(common_pb2.AgentType.Value(_AGENT_TYPE_PREFIX + value.upper())) if value else 0,
    )


def task_state_to_str(value: int) -> str:
    if value == tasks_pb2.TASK_STATE_UNSPECIFIED:
        return ""
    try:
        name = tasks_pb2.TaskState.Name(cast("tasks_pb2.TaskState.ValueType", value))
        return str(name)[len(_TASK_STATE_PREFIX) :].lower()
    except ValueError:
        return f"#{value}"


def task_state_to_proto(value: str) -> tasks_pb2.TaskState.ValueType:
    return cast("tasks_pb2.TaskState.ValueType", int(tasks_pb2.TaskState.Value(_TASK_STATE_PREFIX + value.upper())))


def agent_state_to_str(value: int) -> str:
    if value == agents_pb2.AGENT_STATE_UNSPECIFIED:
        return ""
    try:
        name = agents_pb2.AgentState.Name(cast("agents_pb2.AgentState.ValueType", value))
        return str(name)[len(_AGENT_STATE_PREFIX) :].lower()
    except ValueError:
        return f"#{value}"


def agent_state_to_proto(value: str) -> agents_pb2.AgentState.ValueType:
    return cast(
        "agents_pb2.AgentState.ValueType", int(agents_pb2.AgentState.Value(_AGENT_STATE_PREFIX + value.upper()))
    )


def struct_to_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as Python values (numbers as floats, like json_format), keeping NaN and infinities as floats.

    json_format.MessageToDict raises on NaN/Infinity; kept as floats, the validator refuses them by field path.
    """
    return {key: _value_to_python(item) for key, item in value.fields.items()}


def _value_to_python(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value_to_python(item) for item in value.list_value.values]
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None  # null_value, or no kind set


def dict_to_struct(value: dict[str, Any] | None) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    if value:
        struct.update(value)
    return struct


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


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def task_to_proto(task: TaskRecord) -> tasks_pb2.Task:
    return tasks_pb2.Task(
        task_id=task.task_id,
        agent_type=agent_type_to_proto(task.agent_type),
        state=task_state_to_proto(task.state),
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
    )


def agent_to_proto(agent: AgentRecord) -> agents_pb2.Agent:
    return agents_pb2.Agent(
        agent_id=agent.agent_id,
        agent_type=agent_type_to_proto(agent.agent_type),
        state=agent_state_to_proto(agent.state),
        labels=agent.labels,
        capacity=agent.capacity,
        address=agent.address,
        version=agent.version,
        registered_at=_ts(agent.registered_at),
        last_heartbeat_at=_ts(agent.last_heartbeat),
    )


def message_to_proto(message: MessageRecord) -> messaging_pb2.Message:
    return messaging_pb2.Message(
        message_id=message.message_id,
        sender=message.sender,
        recipient_agent_id=message.recipient_agent_id or "",
        recipient_type=agent_type_to_proto(message.recipient_type),
        to_all=message.to_all,
        topic=message.topic,
        body=stored_to_struct(message.body, field="body"),
        created_at=_ts(message.created_at),
    )


def allocation_to_proto(allocation: AllocationRecord) -> resources_pb2.Allocation:
    return resources_pb2.Allocation(
        allocation_id=allocation.allocation_id,
        agent_id=allocation.agent_id,
        agent_type=agent_type_to_proto(allocation.agent_type),
        resource=allocation.resource,
        amount=allocation.amount,
        created_at=_ts(allocation.created_at),
    )


def usage_to_proto(usage: ResourceUsageRecord) -> resources_pb2.ResourceUsage:
    return resources_pb2.ResourceUsage(
        agent_type=agent_type_to_proto(usage.agent_type),
        resource=usage.resource,
        allocated=usage.allocated,
        quota=usage.quota,
    )


_ENUM_FIELDS = ("agent_type", "state", "recipient_type")


def message_to_dict(message: Any) -> dict[str, Any]:
    """A proto message as the JSON the HTTP API returns: snake_case keys, enum names as lowercase words."""
    data = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return cast("dict[str, Any]", _lower_enums(data))  # a dict in gives a dict out


def _lower_enums(value: Any) -> Any:
    if isinstance(value, list):
        return [_lower_enums(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in _ENUM_FIELDS and isinstance(item, str):
            out[key] = item.split("_", 2)[-1].lower() if item.endswith("UNSPECIFIED") is False else ""
        elif key in ("payload", "result", "body", "labels", "stats"):
            out[key] = item  # user data: never rewritten
        else:
            out[key] = _lower_enums(item)
    return out
