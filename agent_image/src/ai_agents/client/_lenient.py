"""Decode a LeaseTasksResponse one lease at a time, so one undecodable task never hides the rest of the batch.

A response that decodes whole is taken as it is (one parse); only one that protobuf refuses is taken apart.

A `repeated TaskLease leases = 1` field is, on the wire, a repeated length-delimited field: a message type
declaring it `repeated bytes` reads the same bytes without parsing what is inside. Each lease is then parsed
on its own; one that protobuf refuses (a payload nested past its recursion limit, say) is parsed once more,
shallowly, for just its task id and lease token, so the agent can fail that task with the reason. The shallow
types are built at run time from the real descriptors' field numbers, so they cannot drift from tasks.proto.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from ai_agents.v1 import tasks_pb2

_PACKAGE = "ai_agents.client.lenient"
_F = descriptor_pb2.FieldDescriptorProto


@dataclass(frozen=True, slots=True)
class UndecodableLease:
    """A leased task whose message could not be parsed: enough to fail it (task_id is "" if even that failed)."""

    task_id: str
    lease_token: int
    reason: str


@dataclass(frozen=True, slots=True)
class LeaseBatch:
    leases: list[tasks_pb2.TaskLease]
    undecodable: list[UndecodableLease]


def _number(message: Any, field: str) -> int:
    return int(message.DESCRIPTOR.fields_by_name[field].number)


def _shallow_types() -> tuple[type[Message], type[Message], type[Message]]:
    file = descriptor_pb2.FileDescriptorProto(name="ai_agents/client/lenient.proto", package=_PACKAGE, syntax="proto3")
    envelope = file.message_type.add(name="Envelope")
    envelope.field.add(
        name="leases",
        number=_number(tasks_pb2.LeaseTasksResponse, "leases"),
        type=_F.TYPE_BYTES,
        label=_F.LABEL_REPEATED,
    )
    lease = file.message_type.add(name="ShallowLease")
    lease.field.add(
        name="task", number=_number(tasks_pb2.TaskLease, "task"), type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL
    )
    lease.field.add(
        name="lease_token",
        number=_number(tasks_pb2.TaskLease, "lease_token"),
        type=_F.TYPE_INT64,
        label=_F.LABEL_OPTIONAL,
    )
    task = file.message_type.add(name="ShallowTask")
    # bytes, not string: a task id that is not UTF-8 must not stop us from reporting the failure.
    task.field.add(
        name="task_id", number=_number(tasks_pb2.Task, "task_id"), type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    envelope_type, lease_type, task_type = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name in ("Envelope", "ShallowLease", "ShallowTask")
    )
    return envelope_type, lease_type, task_type


_ENVELOPE, _SHALLOW_LEASE, _SHALLOW_TASK = _shallow_types()


def decode_lease_response(data: bytes) -> LeaseBatch:
    """Raises DecodeError only if the envelope itself is corrupt (then no lease in it can be trusted)."""
    try:
        # The common case, in one parse: when the whole response decodes, so does each lease in it (same nesting
        # budget). Only a response that protobuf refuses is taken apart lease by lease.
        return LeaseBatch(list(tasks_pb2.LeaseTasksResponse.FromString(data).leases), [])
    except DecodeError:
        pass
    envelope: Any = _ENVELOPE.FromString(data)
    leases: list[tasks_pb2.TaskLease] = []
    undecodable: list[UndecodableLease] = []
    for raw in envelope.leases:
        try:
            # Parsed inside a one-lease response, not alone: the same nesting budget as the whole message has.
            alone = tasks_pb2.LeaseTasksResponse.FromString(_ENVELOPE(leases=[raw]).SerializeToString())
            leases.append(alone.leases[0])
        except DecodeError as exc:
            undecodable.append(_shallow(raw, f"{type(exc).__name__}: {exc}"))
    return LeaseBatch(leases, undecodable)


def _shallow(raw: bytes, reason: str) -> UndecodableLease:
    try:
        lease: Any = _SHALLOW_LEASE.FromString(raw)
        task: Any = _SHALLOW_TASK.FromString(lease.task)
    except DecodeError:
        return UndecodableLease("", 0, reason)
    return UndecodableLease(bytes(task.task_id).decode("utf-8", "replace"), int(lease.lease_token), reason)
