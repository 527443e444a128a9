"""The one JSON form of a task and an agent: what the HTTP API answers and the CLI prints, byte for byte.

The HTTP API holds store records and the CLI holds ai_agents.v1 messages; each only picks the fields
(`task_json_of_message` here, the record side in ai_agents.orchestrator.http_api) and this module decides how
every value is written, so the two cannot drift apart. The rules (docs/contracts.md, openapi.json):

- every key is always present; a value that is not set (yet) is null: a timestamp not reached, no result,
  no lease owner, no idempotency key, no parent task. `child_task_ids` is a list, empty until set; `error`
  and `progress_message` are text, empty until set.
- timestamps: RFC 3339 in UTC with microseconds (PostgreSQL's precision) and `Z`, e.g.
  `2025-01-02T03:04:05.000006Z`.
- progress: the shortest decimal of the single-precision number the API carries (0.3, not 0.30000001192092896).
- numbers inside payloads, results and labels: whole numbers within +-2**53 as integers, others as doubles;
  object keys sorted. A protobuf Struct holds only doubles and neither it nor jsonb keeps the sender's key
  order, so this is the one form both sides can produce from what they hold.

Client-safe: imports nothing of the orchestrator or the store (tests/runtime/test_layers.py).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from ai_agents.convert import AGENT_STATE, AGENT_TYPE, TASK_STATE, struct_to_dict
from ai_agents.v1 import agents_pb2, tasks_pb2

# A Struct number is a double, which carries every integer up to 2**53 exactly.
_MAX_EXACT_INTEGER = 2**53


def dumps(value: Any) -> str:
    """The text of an answer. UTF-8 rather than \\uXXXX escapes: a list page's byte budget is measured on
    PostgreSQL's JSON text, which keeps non-ASCII characters as UTF-8, so the answer is the size the budget
    counted (escapes could triple it)."""
    return json.dumps(value, ensure_ascii=False)


def rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def single_precision(value: float) -> float:
    """The shortest decimal that is the same single-precision number (the proto field and the column are 32-bit)."""
    if not math.isfinite(value):
        return value
    single = struct.pack("<f", value)
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == single:
            return candidate
    return value


def user_data(value: Any) -> Any:
    """A payload, result or label map in its one form: whole numbers as integers, keys sorted."""
    if isinstance(value, dict):
        return {key: user_data(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [user_data(item) for item in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        negative_zero = value == 0 and math.copysign(1.0, value) < 0  # as an integer it would lose its sign
        whole = value.is_integer() and abs(value) <= _MAX_EXACT_INTEGER and not negative_zero
        return int(value) if whole else value
    if isinstance(value, int) and abs(value) > _MAX_EXACT_INTEGER:
        # What a Struct carries of it (PostgreSQL hands back 1e23 as the integer 10**23); a row stored before the
        # door may hold one past a double's range, which is shown as stored.
        try:
            return float(value)
        except OverflowError:
            return value
    return value


def task_json(
    *,
    task_id: str,
    agent_type: str,
    state: str,
    payload: dict[str, Any],
    result: dict[str, Any] | None,
    error: str,
    priority: int,
    idempotency_key: str | None,
    attempts: int,
    max_attempts: int,
    lease_owner: str | None,
    lease_expires_at: datetime | None,
    progress: float,
    progress_message: str,
    created_at: datetime,
    updated_at: datetime,
    finished_at: datetime | None,
    parent_task_id: str | None,
    child_task_ids: Sequence[str],
) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "agent_type": agent_type,
        "state": state,
        "payload": user_data(payload),
        "result": user_data(result) if result is not None else None,
        "error": error,
        "priority": priority,
        # "" is no key and no owner: an empty key is never stored and an agent id is never empty.
        "idempotency_key": idempotency_key or None,
        "attempts": attempts,
        "max_attempts": max_attempts,
        "lease_owner": lease_owner or None,
        "lease_expires_at": rfc3339(lease_expires_at),
        "progress": single_precision(progress),
        "progress_message": progress_message,
        "created_at": rfc3339(created_at),
        "updated_at": rfc3339(updated_at),
        "finished_at": rfc3339(finished_at),
        # The chain: the task whose completion created this one (null for a submitted task), and the follow-ups
        # this one's completion created, in the order requested ([] until then, and for a task without any).
        "parent_task_id": parent_task_id or None,
        "child_task_ids": list(child_task_ids),
    }


def agent_json(
    *,
    agent_id: str,
    agent_type: str,
    state: str,
    labels: dict[str, str],
    capacity: int,
    running: int,
    address: str,
    version: str,
    registered_at: datetime,
    last_heartbeat_at: datetime,
) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "agent_type": agent_type,
        "state": state,
        "labels": user_data(labels),
        "capacity": capacity,
        "running": running,
        "address": address,
        "version": version,
        "registered_at": rfc3339(registered_at),
        "last_heartbeat_at": rfc3339(last_heartbeat_at),
    }


def page_json(key: str, items: list[dict[str, Any]], next_page_token: str | None) -> dict[str, Any]:
    """A list page: `{"tasks": [...], "next_page_token": ""}` (or "agents"); the token is "" on the last page."""
    return {key: items, "next_page_token": next_page_token or ""}


# ---- from ai_agents.v1 messages (the CLI's side) ---------------------------------------------------------


def _time(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value: timestamp_pb2.Timestamp = getattr(message, field)
    return value.ToDatetime(tzinfo=UTC)


def _required_time(message: Any, field: str) -> datetime:
    value = _time(message, field)
    if value is None:
        raise ValueError(f"{type(message).__name__}.{field} is not set")
    return value


def task_json_of_message(task: tasks_pb2.Task) -> dict[str, Any]:
    return task_json(
        task_id=task.task_id,
        agent_type=AGENT_TYPE.to_str(task.agent_type),
        state=TASK_STATE.to_str(task.state),
        payload=struct_to_dict(task.payload),
        result=struct_to_dict(task.result) if task.HasField("result") else None,
        error=task.error,
        priority=task.priority,
        idempotency_key=task.idempotency_key,
        attempts=task.attempts,
        max_attempts=task.max_attempts,
        lease_owner=task.lease_owner,
        lease_expires_at=_time(task, "lease_expires_at"),
        progress=task.progress,
        progress_message=task.progress_message,
        created_at=_required_time(task, "created_at"),
        updated_at=_required_time(task, "updated_at"),
        finished_at=_time(task, "finished_at"),
        parent_task_id=task.parent_task_id,
        child_task_ids=task.child_task_ids,
    )


def agent_json_of_message(agent: agents_pb2.Agent) -> dict[str, Any]:
    return agent_json(
        agent_id=agent.agent_id,
        agent_type=AGENT_TYPE.to_str(agent.agent_type),
        state=AGENT_STATE.to_str(agent.state),
        labels=dict(agent.labels),
        capacity=agent.capacity,
        running=agent.running,
        address=agent.address,
        version=agent.version,
        registered_at=_required_time(agent, "registered_at"),
        last_heartbeat_at=_required_time(agent, "last_heartbeat_at"),
    )
