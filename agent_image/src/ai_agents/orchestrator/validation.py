"""Input checks shared by the gRPC and HTTP APIs; each failure names the offending field."""

from __future__ import annotations

import enum
import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ai_agents.domain import AGENT_TYPES, MAX_COMPLETIONS_PER_CALL, MAX_SUBMISSIONS_PER_CALL, AgentState, TaskState
from ai_agents.errors import InvalidArgument
from ai_agents.handoff import FollowUp, OutgoingMessage

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100

# ---- what every hop can carry ----------------------------------------------------------------------------
#
# A payload travels as JSON (HTTP), as a protobuf Struct (gRPC) and as jsonb (PostgreSQL); it is accepted
# only if all three carry it unchanged.
#
# Depth: protobuf parsers (upb, which grpcio uses, C++ and Java alike) refuse a message nested deeper than
# 100 levels. A payload travels deepest inside LeaseTasksResponse -> TaskLease -> Task -> Struct, and each
# JSON object costs three levels (Struct, map entry, Value), each array two (ListValue, Value). Measured with
# protobuf 7 (upb): a payload of 32 nested objects decodes inside a LeaseTasksResponse, 33 do not (and from
# 34 the orchestrator cannot even build the Struct); 47 arrays under the payload object decode, 48 do not.
# 32 JSON levels (objects and arrays alike) is therefore the most every hop carries: the default, and the
# upper bound of the `max_payload_depth` setting. tests/runtime/test_hostile_input.py re-measures it.
MAX_DECODABLE_DEPTH = 32
# A Struct number is a double: integers beyond 2**53 would silently lose digits.
MAX_EXACT_INTEGER = 2**53
# PostgreSQL text and jsonb refuse U+0000; a lone surrogate (U+D800-U+DFFF) has no UTF-8 encoding.
_UNSTORABLE_CHAR = re.compile("[\x00\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")

# ---- length limits, in characters: each decided here, once, with what happens past it ----------------------


class OverLimit(enum.Enum):
    REFUSE = "refuse"  # an identifier or key: cut, it would name something else
    CUT = "cut"  # free text an agent reports: the start of it is worth keeping


@dataclass(frozen=True, slots=True)
class TextLimit:
    field: str
    max_chars: int
    over: OverLimit


IDEMPOTENCY_KEY = TextLimit("idempotency_key", 200, OverLimit.REFUSE)
PAGE_TOKEN = TextLimit("page_token", 1024, OverLimit.REFUSE)
LABEL_KEY = TextLimit("labels key", 253, OverLimit.REFUSE)
LABEL_VALUE = TextLimit("labels value", 1024, OverLimit.REFUSE)
SENDER = TextLimit("sender", 253, OverLimit.CUT)
TOPIC = TextLimit("topic", 253, OverLimit.CUT)
ADDRESS = TextLimit("address", 255, OverLimit.CUT)
VERSION = TextLimit("version", 64, OverLimit.CUT)
PROGRESS_MESSAGE = TextLimit("message", 1024, OverLimit.CUT)
ERROR = TextLimit("error", 4096, OverLimit.CUT)
TEXT_LIMITS = (
    IDEMPOTENCY_KEY,
    PAGE_TOKEN,
    LABEL_KEY,
    LABEL_VALUE,
    SENDER,
    TOPIC,
    ADDRESS,
    VERSION,
    PROGRESS_MESSAGE,
    ERROR,
)
# Identifiers with a fixed alphabet: refused past the limit, like every identifier.
MAX_AGENT_ID = 253  # a DNS name, so a pod name fits
MAX_RESOURCE_NAME = 63  # a DNS label
MAX_LABELS = 64
# Task priority, of a submitted task and of a follow-up alike.
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000
MAX_ATTEMPTS = 100
# What one completion may hand on (each follow-up payload and message body is also a payload: the limits above).
# A chain step hands work to a few agent types, not a fan-out of thousands; a gRPC message must still hold them.
MAX_FOLLOW_UPS = 16
MAX_COMPLETION_MESSAGES = 16

_AGENT_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MAX_AGENT_ID - 1}}}")
_RESOURCE = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{MAX_RESOURCE_NAME - 1}}}")


def _segment(key: str) -> str:
    """`.a` for plain keys, `["a b"]` otherwise (escaped, cut short: the path goes into a message)."""
    if _PLAIN_KEY.fullmatch(key):
        return f".{key}"
    return f"[{json.dumps(key[:64])}]"


def _text_problem(value: str) -> str | None:
    found = _UNSTORABLE_CHAR.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains U+0000 (NUL), which PostgreSQL cannot store"
    return f"contains a lone surrogate U+{ord(found.group()):04X}, which has no UTF-8 encoding"


def _number_problem(value: int | float, *, exact: bool) -> str | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} is not a finite number"
    if exact and abs(value) > MAX_EXACT_INTEGER:
        return f"integer of {value.bit_length()} bits is outside +-2**53, the range a JSON number carries exactly"
    if not exact:
        try:
            float(value)
        except OverflowError:
            return f"integer of {value.bit_length()} bits overflows a double"
    return None


# A problem found deep inside a value: the path segments (innermost first, added while unwinding, so no path
# is built for values that fit) and the reason.
_Found = tuple[list[str], str]


def _find(value: Any, level: int, max_depth: int, exact: bool) -> _Found | None:
    """The first part of `value` that some hop cannot carry; None when all of it fits."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        problem = _text_problem(value)
    elif isinstance(value, int | float):
        problem = _number_problem(value, exact=exact)
    elif isinstance(value, dict | list):
        if level >= max_depth:
            return [], f"nested deeper than {max_depth} levels"
        if isinstance(value, list):
            for index, item in enumerate(value):
                if found := _find(item, level + 1, max_depth, exact):
                    found[0].append(f"[{index}]")
                    return found
            return None
        for key, item in value.items():
            if not isinstance(key, str):
                return [], f"key {key!r} is not a string"
            if (problem := _text_problem(key)) is not None:
                return [_segment(key)], f"key {problem}"
            if found := _find(item, level + 1, max_depth, exact):
                found[0].append(_segment(key))
                return found
        return None
    else:
        problem = f"a {type(value).__name__} is not a JSON value"
    return ([], problem) if problem else None


def _json_problem(value: Any, field: str, *, max_depth: int, exact: bool) -> str | None:
    """The first part of `value` that some hop cannot carry, as "path: reason"; None when all of it fits."""
    found = _find(value, 0, max_depth, exact)
    if found is None:
        return None
    segments, reason = found
    return f"{field}{''.join(reversed(segments))}: {reason}"


def stored_value_problem(value: Any, *, field: str) -> str | None:
    """Why a value read back from the store cannot be sent over gRPC, or None.

    Laxer than the door on one point: PostgreSQL returns a float such as 1e23 as the integer 10**23, which a
    double still carries; only integers past a double's range count. Rows stored before the door checked
    depth and numbers may fail this.
    """
    return _json_problem(value, field, max_depth=MAX_DECODABLE_DEPTH, exact=False)


def placeholder(problem: str) -> str:
    """What a read shows in place of a stored value it cannot send (documented in docs/contracts.md)."""
    return f"<unencodable: {problem}>"


def replace_unencodable(value: Any) -> Any:
    """A copy of a stored value with every part gRPC cannot carry replaced by a `placeholder` string."""
    return _replace(value, 0)


def _replace(value: Any, level: int) -> Any:
    if isinstance(value, dict | list) and level < MAX_DECODABLE_DEPTH:
        if isinstance(value, list):
            return [_replace(item, level + 1) for item in value]
        out: dict[str, Any] = {}
        for key, item in value.items():
            problem = _text_problem(key) if isinstance(key, str) else "not a string"
            out[placeholder(f"key {problem}") if problem else key] = _replace(item, level + 1)
        return out
    found = _find(value, level, MAX_DECODABLE_DEPTH, False)
    return placeholder(found[1]) if found else value


def text(value: Any, limit: TextLimit, *, field: str | None = None) -> str:
    """Client-supplied text: refused if PostgreSQL or UTF-8 cannot hold it; past the limit, what the limit says.

    `field` names the value in a refusal when it is not the limit's own field (a header, one label).
    """
    field = field or limit.field
    if not isinstance(value, str):
        raise InvalidArgument(f"{field}: must be a string")
    if (problem := _text_problem(value)) is not None:
        raise InvalidArgument(f"{field}: {problem}")
    if len(value) > limit.max_chars:
        if limit.over is OverLimit.REFUSE:
            raise InvalidArgument(f"{field}: {len(value)} characters exceeds the limit of {limit.max_chars}")
        return value[: limit.max_chars]
    return value


def agent_type(value: str, *, field: str = "agent_type") -> str:
    if not value:
        raise InvalidArgument(f"{field}: required; expected one of {', '.join(AGENT_TYPES)}")
    if value not in AGENT_TYPES:
        raise InvalidArgument(f"{field}: unknown agent type {value!r}; expected one of {', '.join(AGENT_TYPES)}")
    return value


def optional_agent_type(value: str | None) -> str | None:
    return agent_type(value) if value else None


def task_state(value: str | None) -> TaskState | None:
    if not value:
        return None
    try:
        return TaskState(value)
    except ValueError:
        raise InvalidArgument(f"state: unknown task state {value!r}; expected one of {', '.join(TaskState)}") from None


def agent_state(value: str | None) -> AgentState | None:
    if not value:
        return None
    try:
        return AgentState(value)
    except ValueError:
        raise InvalidArgument(
            f"state: unknown agent state {value!r}; expected one of {', '.join(AgentState)}"
        ) from None


def task_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidArgument(f"task_id: {value!r} is not a UUID") from exc


def completion_batch(task_ids: Sequence[str]) -> None:
    """A CompleteTasks call: within its limit, and no task named twice (one call, one outcome per task).

    A task id that is not a UUID is left to its own completion, which refuses it as CompleteTask would.
    """
    if len(task_ids) > MAX_COMPLETIONS_PER_CALL:
        raise InvalidArgument(
            f"completions: {len(task_ids)} completions exceeds the limit of {MAX_COMPLETIONS_PER_CALL}"
        )
    first: dict[uuid.UUID, int] = {}
    for index, value in enumerate(task_ids):
        try:
            key = uuid.UUID(value)
        except (ValueError, AttributeError, TypeError):
            continue
        if key in first:
            raise InvalidArgument(
                f"completions[{index}].task_id: {value!r} is already completions[{first[key]}].task_id"
            )
        first[key] = index


def submission_batch(count: int) -> None:
    """A SubmitTasks call: within its limit. The same idempotency key twice is allowed: the second submission
    is answered as a second SubmitTask with that key would be (the first's task, not created)."""
    if count > MAX_SUBMISSIONS_PER_CALL:
        raise InvalidArgument(f"submissions: {count} submissions exceeds the limit of {MAX_SUBMISSIONS_PER_CALL}")


def allocation_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidArgument(f"allocation_id: {value!r} is not a UUID") from exc


def agent_id(value: str, *, field: str = "agent_id") -> str:
    if not isinstance(value, str) or not _AGENT_ID.fullmatch(value):
        raise InvalidArgument(
            f"{field}: {value!r} must be 1-{MAX_AGENT_ID} characters of letters, digits, '.', '_', ':', '-'"
        )
    return value


def resource_name(value: str) -> str:
    if not isinstance(value, str) or not _RESOURCE.fullmatch(value):
        raise InvalidArgument(
            f"resource: {value!r} must be 1-{MAX_RESOURCE_NAME} lowercase letters, digits, '.', '_', '-'"
        )
    return value


def payload(
    value: Any, *, max_bytes: int, max_depth: int = MAX_DECODABLE_DEPTH, field: str = "payload"
) -> dict[str, Any]:
    """A JSON object every hop carries unchanged (see MAX_DECODABLE_DEPTH), within max_bytes."""
    return encoded_payload(value, max_bytes=max_bytes, max_depth=max_depth, field=field)[0]


def encoded_payload(
    value: Any, *, max_bytes: int, max_depth: int = MAX_DECODABLE_DEPTH, field: str = "payload"
) -> tuple[dict[str, Any], str]:
    """`payload()` and its compact JSON with sorted keys, as the store writes it: measuring the size encodes it
    anyway, and a submit then does not encode it twice."""
    if value is None:
        return {}, "{}"
    if not isinstance(value, dict):
        raise InvalidArgument(f"{field}: must be a JSON object")
    if problem := _json_problem(value, field, max_depth=min(max_depth, MAX_DECODABLE_DEPTH), exact=True):
        raise InvalidArgument(problem)
    encoded = json.dumps(value, separators=(",", ":"), sort_keys=True)
    size = len(encoded.encode())
    if size > max_bytes:
        raise InvalidArgument(f"{field}: {size} bytes exceeds the limit of {max_bytes}")
    return value, encoded


def idempotency_key(value: str | None, *, field: str = "idempotency_key") -> str | None:
    if not value:
        return None
    return text(value, IDEMPOTENCY_KEY, field=field)


def page_token(value: str | None) -> str | None:
    if not value:
        return None
    return text(value, PAGE_TOKEN)


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
    if len(value) > MAX_LABELS:
        raise InvalidArgument(f"labels: {len(value)} labels exceeds the limit of {MAX_LABELS}")
    for key, item in value.items():
        text(key, LABEL_KEY, field=f"labels: key {json.dumps(key[:64])}")
        text(item, LABEL_VALUE, field=f"labels{_segment(key)}")
    return dict(value)


def progress(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise InvalidArgument("progress: must be between 0 and 1")
    return value


# Result fields that feed the type-specific scaling signals.
SIGNAL_FIELDS = ("test_duration_seconds", "vulnerabilities_found", "compliance_violations")


def result(value: Any, *, max_bytes: int, max_depth: int = MAX_DECODABLE_DEPTH) -> dict[str, Any]:
    checked = payload(value, max_bytes=max_bytes, max_depth=max_depth, field="result")
    for name in SIGNAL_FIELDS:
        signal = checked.get(name)
        if signal is not None and (isinstance(signal, bool) or not isinstance(signal, int | float) or signal < 0):
            raise InvalidArgument(f"result.{name}: must be a non-negative number")
    return checked


# ---- what a completion hands on (store/follow_ups.py) ------------------------------------------------------


def follow_ups(
    values: Sequence[FollowUp], *, max_bytes: int, max_depth: int, default_max_attempts: int
) -> tuple[FollowUp, ...]:
    """Follow-up tasks as the store queues them: known types, payloads every hop carries, max_attempts resolved."""
    if len(values) > MAX_FOLLOW_UPS:
        raise InvalidArgument(f"follow_ups: {len(values)} follow-ups exceeds the limit of {MAX_FOLLOW_UPS}")
    checked = []
    for index, value in enumerate(values):
        field = f"follow_ups[{index}]"
        checked.append(
            FollowUp(
                agent_type=agent_type(value.agent_type, field=f"{field}.agent_type"),
                payload=payload(value.payload, max_bytes=max_bytes, max_depth=max_depth, field=f"{field}.payload"),
                priority=int_in_range(value.priority, field=f"{field}.priority", low=MIN_PRIORITY, high=MAX_PRIORITY),
                max_attempts=(
                    int_in_range(value.max_attempts, field=f"{field}.max_attempts", low=1, high=MAX_ATTEMPTS)
                    if value.max_attempts
                    else default_max_attempts
                ),
            )
        )
    return tuple(checked)


def completion_messages(
    values: Sequence[OutgoingMessage], *, max_bytes: int, max_depth: int
) -> tuple[OutgoingMessage, ...]:
    """Messages a completion sends: one audience each, a topic within its limit, a body every hop carries."""
    if len(values) > MAX_COMPLETION_MESSAGES:
        raise InvalidArgument(f"messages: {len(values)} messages exceeds the limit of {MAX_COMPLETION_MESSAGES}")
    checked = []
    for index, value in enumerate(values):
        field = f"messages[{index}]"
        audiences = sum((bool(value.recipient_agent_id), bool(value.recipient_type), bool(value.to_all)))
        if audiences != 1:
            raise InvalidArgument(f"{field}: set exactly one of recipient_agent_id, recipient_type, to_all")
        checked.append(
            OutgoingMessage(
                topic=text(value.topic, TOPIC, field=f"{field}.topic"),
                body=payload(value.body, max_bytes=max_bytes, max_depth=max_depth, field=f"{field}.body"),
                recipient_agent_id=(
                    agent_id(value.recipient_agent_id, field=f"{field}.recipient_agent_id")
                    if value.recipient_agent_id
                    else None
                ),
                recipient_type=(
                    agent_type(value.recipient_type, field=f"{field}.recipient_type") if value.recipient_type else None
                ),
                to_all=bool(value.to_all),
            )
        )
    return tuple(checked)
