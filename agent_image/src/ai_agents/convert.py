"""Client-safe conversions of ai_agents.v1 values: enum numbers <-> API words, Structs <-> Python, messages -> JSON.

Used by the client, the agent, the CLI and the orchestrator alike, so it imports nothing but protobuf and the
generated code (tests/runtime/test_layers.py holds it to that); turning store records into messages is the
orchestrator's job (ai_agents.orchestrator.records_to_proto).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from google.protobuf import json_format, struct_pb2

from ai_agents.handoff import FollowUp, OutgoingMessage
from ai_agents.v1 import agents_pb2, common_pb2, tasks_pb2

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

_V = TypeVar("_V", bound=int)

_UNSPECIFIED = "UNSPECIFIED"


class EnumWords(Generic[_V]):
    """A proto enum spoken as the API's lowercase words: AGENT_TYPE_CODING <-> "coding", 0 <-> "".

    The prefix comes from the enum's zero value (AGENT_TYPE_UNSPECIFIED -> "AGENT_TYPE_"), which buf's lint
    rules require every enum of ours to have, so one helper serves them all.
    """

    def __init__(self, enum: _EnumTypeWrapper[_V]) -> None:
        self._enum = enum
        unspecified = enum.DESCRIPTOR.values_by_number[0].name
        if not unspecified.endswith(_UNSPECIFIED):
            raise ValueError(f"{enum.DESCRIPTOR.full_name}: the zero value must be <PREFIX>_UNSPECIFIED")
        self._prefix = unspecified[: -len(_UNSPECIFIED)]
        self.unspecified: _V = enum.Value(unspecified)

    def to_str(self, value: int) -> str:
        """The word for `value`; "" for UNSPECIFIED, "#<n>" for a number this build does not know."""
        if value == self.unspecified:
            return ""
        try:
            return self._enum.Name(cast("_V", value))[len(self._prefix) :].lower()
        except ValueError:
            return f"#{value}"

    def to_proto(self, word: str | None) -> _V:
        """The number for `word`; UNSPECIFIED for None or ""; ValueError for a word the enum does not have."""
        if not word:
            return self.unspecified
        return self._enum.Value(self._prefix + word.upper())


AGENT_TYPE = EnumWords(common_pb2.AgentType)
TASK_STATE = EnumWords(tasks_pb2.TaskState)
AGENT_STATE = EnumWords(agents_pb2.AgentState)


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


# ---- what a completion hands on (ai_agents.handoff) as ai_agents.v1 messages, both ways -------------------


def _type_to_proto(word: str | None, field: str) -> common_pb2.AgentType.ValueType:
    try:
        return AGENT_TYPE.to_proto(word)
    except ValueError:
        raise ValueError(f"{field}: unknown agent type {word!r}") from None


def follow_up_to_message(follow_up: FollowUp, index: int = 0) -> tasks_pb2.FollowUp:
    """ValueError naming the field for what the message cannot carry (an unknown agent type)."""
    return tasks_pb2.FollowUp(
        agent_type=_type_to_proto(follow_up.agent_type, f"follow_ups[{index}].agent_type"),
        payload=dict_to_struct(follow_up.payload),
        priority=follow_up.priority,
        max_attempts=follow_up.max_attempts,
    )


def follow_up_of_message(message: tasks_pb2.FollowUp) -> FollowUp:
    return FollowUp(
        agent_type=AGENT_TYPE.to_str(message.agent_type),
        payload=struct_to_dict(message.payload),
        priority=message.priority,
        max_attempts=message.max_attempts,
    )


def outgoing_message_to_message(message: OutgoingMessage, index: int = 0) -> tasks_pb2.CompletionMessage:
    return tasks_pb2.CompletionMessage(
        recipient_agent_id=message.recipient_agent_id or "",
        recipient_type=_type_to_proto(message.recipient_type, f"messages[{index}].recipient_type"),
        to_all=message.to_all,
        topic=message.topic,
        body=dict_to_struct(message.body),
    )


def outgoing_message_of_message(message: tasks_pb2.CompletionMessage) -> OutgoingMessage:
    return OutgoingMessage(
        topic=message.topic,
        body=struct_to_dict(message.body),
        recipient_agent_id=message.recipient_agent_id or None,
        recipient_type=AGENT_TYPE.to_str(message.recipient_type) or None,
        to_all=message.to_all,
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
