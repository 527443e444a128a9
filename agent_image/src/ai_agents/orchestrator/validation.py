"""Input checks shared by the gRPC and HTTP APIs; each failure names the offending field."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from ai_agents.domain import AGENT_TYPES, AgentState, TaskState
from ai_agents.errors import InvalidArgument

_AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$")
_RESOURCE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


def agent_type(value: str, *, field: str = "agent_type") -> str:
    if not value:
        raise InvalidArgument(f"{field}: required; expected one of {', '.join(AGENT_TYPES)}")
    if value not in AGENT_TYPES:
        raise InvalidArgument(f"{field}: unknown agent type {value!r}; expected one of {', '.join(AGENT_TYPES)}")
    return value


def optional_agent_type(value: str | None) -> str | None:
    return agent_type(value) if value else None


def task_state(value: str | None) -> str | None:
    if not value:
        return None
    if value not in {s.value for s in TaskState}:
        raise InvalidArgument(f"state: unknown task state {value!r}; expected one of {', '.join(TaskState)}")
    return value


def agent_state(value: str | None) -> str | None:
    if not value:
        return None
    if value not in {s.value for s in AgentState}:
        raise InvalidArgument(f"state: unknown agent state {value!r}; expected one of {', '.join(AgentState)}")
    return value


def task_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidArgument(f"task_id: {value!r} is not a UUID") from exc


def allocation_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidArgument(f"allocation_id: {value!r} is not a UUID") from exc


def agent_id(value: str, *, field: str = "agent_id") -> str:
    if not isinstance(value, str) or not _AGENT_ID.match(value):
        raise InvalidArgument(f"{field}: {value!r} must be 1-253 characters of letters, digits, '.', '_', ':', '-'")
    return value


def resource_name(value: str) -> str:
    if not isinstance(value, str) or not _RESOURCE.match(value):
        raise InvalidArgument(f"resource: {value!r} must be 1-63 lowercase letters, digits, '.', '_', '-'")
    return value


def payload(value: Any, *, max_bytes: int, field: str = "payload") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field}: must be a JSON object")
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > max_bytes:
        raise InvalidArgument(f"{field}: {size} bytes exceeds the limit of {max_bytes}")
    return value


def idempotency_key(value: str | None) -> str | None:
    if not value:
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise InvalidArgument("idempotency_key: must be a string of at most 200 characters")
    return value


def int_in_range(value: Any, *, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{field}: must be an integer between {low} and {high}")
    return value


def page_size(value: int | None) -> int:
    if not value:
        return DEFAULT_PAGE_SIZE
    return int_in_range(value, field="page_size", low=1, high=MAX_PAGE_SIZE)


def labels(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument("labels: must be an object of string values")
    return dict(value)


def progress(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise InvalidArgument("progress: must be between 0 and 1")
    return value


# Result fields that feed the type-specific scaling signals.
SIGNAL_FIELDS = ("test_duration_seconds", "vulnerabilities_found", "compliance_violations")


def result(value: Any, *, max_bytes: int) -> dict[str, Any]:
    checked = payload(value, max_bytes=max_bytes, field="result")
    for name in SIGNAL_FIELDS:
        signal = checked.get(name)
        if signal is not None and (isinstance(signal, bool) or not isinstance(signal, int | float) or signal < 0):
            raise InvalidArgument(f"result.{name}: must be a non-negative number")
    return checked
