"""Property-based fuzzing of the gRPC API from its protobuf descriptors, against a real orchestrator with the token on.

Every method of every ai_agents.v1 service gets three kinds of request body:
- messages built from the method's input descriptor: random field values of the declared types, with hostile
  ones mixed in (NaN, infinities, type extremes, unknown enum numbers, NUL, 5,000-character strings, Structs
  nested past every limit, out-of-range Timestamps);
- a valid message with invalid UTF-8 appended in one of its string fields (protobuf rejects it on parse);
- raw random bytes and truncated or bit-flipped encodings: a corrupt message.
The answer to a client's mistake is a status the client can act on (INVALID_ARGUMENT, NOT_FOUND, ...), never
INTERNAL, UNKNOWN or DATA_LOSS; an OK answer decodes as the method's output message.
Hypothesis runs in a worker thread with a blocking channel while the orchestrator serves on the test's loop.
Then a sweep puts each hostile value once in each field of a plain valid request, so no value depends on sampling.
Strategies are built here from the descriptors: the packages that did this (hypothesis-protobuf, last released
2015; hypothesis-pb, 2019) are unmaintained and predate protobuf 4+, and the mapping is a screenful.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from ai_agents.local.postgres import LocalPostgres
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.serving.identity import CREDENTIAL_METADATA
from ai_agents.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    common_pb2,
    messaging_pb2,
    monitoring_pb2,
    resources_pb2,
    tasks_pb2,
    tasks_pb2_grpc,
)
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

from ._fleet_support import agent_credential, create_database, grpc_target, orchestrator_settings
from ._fuzz_support import Failures, fuzz_settings, run_in_thread

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "fuzz-token"
CODING, TESTING = common_pb2.AGENT_TYPE_CODING, common_pb2.AGENT_TYPE_TESTING
# A registered agent whose credential rides on every call, so agent RPCs that name it reach its rows instead of
# stopping at UNAUTHENTICATED (a request naming another agent is PERMISSION_DENIED: still a client's mistake).
AGENT = "fuzz-agent-1"
METADATA = (
    ("authorization", f"Bearer {TOKEN}"),
    (CREDENTIAL_METADATA, agent_credential(AGENT, "testing")),
)
EXAMPLES = 120
# A unary call that takes longer than this hangs; a stream that waits this long is only waiting for messages.
CALL_TIMEOUT = 10.0
STREAM_TIMEOUT = 0.3
# LeaseTasks waits up to wait_seconds, clamped to the caller's deadline less a second (whole seconds): a deadline
# under 2 s means it answers at once whatever wait_seconds says, so every value of the field can be fuzzed.
LEASE_TIMEOUT = 1.9
_UNIQUE = itertools.count()
# A client's mistake never earns these: they say the server broke.
SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}

METHODS: dict[str, MethodDescriptor] = {
    f"/{service.full_name}/{method.name}": method
    for module in (tasks_pb2, agents_pb2, messaging_pb2, monitoring_pb2, resources_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
}


# ---- strategies from descriptors ----------------------------------------------------------------------------

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
HOSTILE_STRINGS = ["", "\x00", "a\x00b", "x" * 5000, "caf\u00e9", "\u202e", "../..", "'; DROP TABLE tasks; --"]
HOSTILE_FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0]


def _deep_struct(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return {"deep": value}


def _deep_list(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return {"deep": value}


# Struct contents past each hop's limit: the orchestrator's encoder, protobuf's 100-level parse limit, JSON.
HOSTILE_STRUCTS = [
    *(_deep_struct(d) for d in (33, 34, 49, 64)),
    *(_deep_list(d) for d in (48, 49, 50, 99)),
    {"nan": math.nan},
    {"inf": math.inf, "-inf": -math.inf},
    {"big": 1e308},
    {"\x00": "\x00"},
    {"": None},
]
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(HOSTILE_STRINGS),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=12,
)
STRUCTS = st.one_of(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4), st.sampled_from(HOSTILE_STRUCTS))


def scalar(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    if fd.type in _INT_RANGES:
        low, high = _INT_RANGES[fd.type]
        return st.one_of(st.integers(low, high), st.sampled_from([0, -1 if low < 0 else 1, low, high]))
    if fd.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        width = 32 if fd.type == FieldDescriptor.TYPE_FLOAT else 64
        return st.one_of(st.floats(width=width), st.sampled_from(HOSTILE_FLOATS))
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if fd.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE_STRINGS))
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        # proto3 enums are open: a number the schema does not name still reaches the server.
        known = [v.number for v in fd.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    raise AssertionError(f"no strategy for {fd.full_name} (type {fd.type})")


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    """A message of this type with a random subset of its fields set to random (often hostile) values."""
    message = message_factory.GetMessageClass(descriptor)()
    if descriptor.full_name == "google.protobuf.Struct":
        message.update(draw(STRUCTS))
        return message
    if descriptor.full_name == "google.protobuf.Timestamp":
        message.seconds = draw(scalar(descriptor.fields_by_name["seconds"]))
        message.nanos = draw(scalar(descriptor.fields_by_name["nanos"]))
        return message
    for fd in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            key, value = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
            getattr(message, fd.name).update(draw(st.dictionaries(scalar(key), scalar(value), max_size=3)))
        elif fd.message_type is not None:
            if depth >= 3:
                continue
            values = draw(st.lists(messages(fd.message_type, depth + 1), min_size=1, max_size=2))
            if fd.is_repeated:
                # Not extend(): it copies through a parse that stops at protobuf's depth limit, and a hostile
                # Struct one message deeper (CompleteTaskRequest.follow_ups[].payload) must still be sent.
                for item in values:
                    getattr(message, fd.name).add().CopyFrom(item)
            else:
                getattr(message, fd.name).CopyFrom(values[0])
        elif fd.is_repeated:
            getattr(message, fd.name).extend(draw(st.lists(scalar(fd), max_size=3)))
        else:
            setattr(message, fd.name, draw(scalar(fd)))
    return message


# Timestamp's documented range: years 1 to 9999.
_TIMESTAMP_RANGE = (-62_135_596_800, 253_402_300_799)


def hostile_traits(message: Message) -> set[str]:
    """What is hostile in a drawn message, as a failure label: lets distinct causes show as distinct failures."""
    traits: set[str] = set()

    def value(v: Any, depth: int) -> None:
        kind = v.WhichOneof("kind")
        if kind == "number_value" and not math.isfinite(v.number_value):
            traits.add(f"{v.number_value} in a Struct")
        elif kind == "string_value" and "\x00" in v.string_value:
            traits.add("NUL in a Struct string")
        elif kind == "struct_value":
            struct(v.struct_value, depth + 1)
        elif kind == "list_value":
            for item in v.list_value.values:
                value(item, depth + 1)
            if depth + 1 > 30:
                traits.add("Struct nested > 30")

    def struct(st_: Any, depth: int) -> None:
        if depth > 30:
            traits.add("Struct nested > 30")
        for key, item in st_.fields.items():
            if "\x00" in key:
                traits.add("NUL in a Struct key")
            value(item, depth)

    def walk(m: Message) -> None:
        name = m.DESCRIPTOR.full_name
        if name == "google.protobuf.Struct":
            struct(m, 0)
            return
        if name == "google.protobuf.Timestamp":
            seconds = getattr(m, "seconds")  # noqa: B009 - Message has no typed fields
            if not _TIMESTAMP_RANGE[0] <= seconds <= _TIMESTAMP_RANGE[1]:
                traits.add("Timestamp out of range")
            return
        for fd, v in m.ListFields():
            is_map = fd.message_type is not None and fd.message_type.GetOptions().map_entry
            # A map's keys and values, a repeated field's items, or the one value.
            items = [x for pair in v.items() for x in pair] if is_map else list(v) if fd.is_repeated else [v]
            for item in items:
                if isinstance(item, Message):
                    walk(item)
                elif isinstance(item, float) and not math.isfinite(item):
                    traits.add(f"{item} in {fd.name}")
                elif isinstance(item, str) and "\x00" in item:
                    traits.add(f"NUL in {fd.name}")
                elif isinstance(item, str) and len(item) >= 5000:
                    traits.add(f"5000 characters in {fd.name}")
                elif fd.type == FieldDescriptor.TYPE_ENUM and fd.enum_type.values_by_number.get(item) is None:
                    traits.add(f"unknown number in {fd.name}")

    walk(message)
    return traits


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@dataclass(frozen=True)
class Body:
    kind: str
    data: bytes


def request_bodies(method: MethodDescriptor) -> st.SearchStrategy[Body]:
    """Encoded valid-typed messages, the same with invalid UTF-8 in a string field, and corrupt encodings."""
    descriptor = method.input_type
    typed = messages(descriptor).map(
        lambda m: Body("fields: " + (", ".join(sorted(hostile_traits(m))) or "plain"), m.SerializeToString())
    )
    strings = [fd for fd in descriptor.fields if fd.type == FieldDescriptor.TYPE_STRING and not fd.is_repeated]
    bad_utf8 = st.sampled_from([b"\xff", b"\xed\xa0\x80", b"caf\xe9", b"\xc0\x80"])

    def with_bad_string(message: Message, fd: FieldDescriptor, raw: bytes) -> Body:
        # A later occurrence of a singular field wins on parse: the server sees exactly these bytes.
        tail = _varint(fd.number << 3 | 2) + _varint(len(raw)) + raw
        return Body(f"invalid UTF-8 in {fd.name}", message.SerializeToString() + tail)

    def corrupted(data: bytes, cut: int, flip: int) -> Body:
        if not data:
            return Body("corrupt: bytes", b"\xff")
        if flip % 2:
            i = flip % len(data)
            return Body("corrupt: bit flip", data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
        return Body("corrupt: truncated", data[: cut % len(data)])

    options = [
        typed,
        st.binary(min_size=1, max_size=200).map(lambda b: Body("corrupt: random bytes", b)),
        st.builds(corrupted, typed.map(lambda b: b.data), st.integers(0, 10_000), st.integers(0, 10_000)),
    ]
    if strings:
        options.append(st.builds(with_bad_string, messages(descriptor), st.sampled_from(strings), bad_utf8))
    return st.one_of(options)


# ---- the run ------------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def target(postgres: LocalPostgres) -> AsyncIterator[Orchestrator]:
    orchestrator = Orchestrator(orchestrator_settings(await create_database(postgres), api_token=TOKEN))
    await orchestrator.start()
    try:
        yield orchestrator
    finally:
        await orchestrator.stop()


def register(agents: agents_pb2_grpc.AgentServiceStub) -> None:
    agents.RegisterAgent(
        agents_pb2.RegisterAgentRequest(agent_id=AGENT, agent_type=TESTING, capacity=10),
        metadata=METADATA,
        timeout=CALL_TIMEOUT,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeded(target: Orchestrator) -> str:
    """A real agent and a real task, so the sweep's plain requests reach rows, not only NOT_FOUND; the task id."""

    def setup() -> str:
        with grpc.insecure_channel(grpc_target(target)) as channel:
            register(agents_pb2_grpc.AgentServiceStub(channel))
            tasks = tasks_pb2_grpc.TaskServiceStub(channel)
            created = tasks.SubmitTask(
                tasks_pb2.SubmitTaskRequest(agent_type=CODING), metadata=METADATA, timeout=CALL_TIMEOUT
            )
            return str(created.task.task_id)

    return await asyncio.to_thread(setup)


def _identity(data: bytes) -> bytes:
    return data


def call(channel: grpc.Channel, path: str, method: MethodDescriptor, data: bytes) -> tuple[grpc.StatusCode, str]:
    """Send bytes as the request of `path`; an OK answer must decode as the method's output message."""
    output = message_factory.GetMessageClass(method.output_type)
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, request_serializer=_identity, response_deserializer=_identity)
            for chunk in stream(data, metadata=METADATA, timeout=STREAM_TIMEOUT):
                output.FromString(chunk)
        else:
            unary = channel.unary_unary(path, request_serializer=_identity, response_deserializer=_identity)
            timeout = LEASE_TIMEOUT if method.name == "LeaseTasks" else CALL_TIMEOUT
            output.FromString(unary(data, metadata=METADATA, timeout=timeout))
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("path", sorted(METHODS), ids=lambda p: p.rsplit("/", 1)[-1])
async def test_method_from_descriptors(target: Orchestrator, path: str) -> None:
    method = METHODS[path]
    failures = Failures()
    with grpc.insecure_channel(grpc_target(target)) as channel:

        @fuzz_settings(EXAMPLES)
        @given(body=request_bodies(method))
        def fuzz(body: Body) -> None:
            code, details = call(channel, path, method, body.data)
            waited = method.server_streaming and code == grpc.StatusCode.DEADLINE_EXCEEDED
            if code in SERVER_FAULTS or (code == grpc.StatusCode.DEADLINE_EXCEEDED and not waited):
                failures.add(path, f"[{body.kind}] {details[:100]!r}", code.name, repr(body.data))

        await run_in_thread(fuzz)
    failures.assert_none()


# ---- the sweep: each hostile value once in each field of a plain valid request -------------------------------


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 30 else f"{text[:16]}...({len(text)} long)"


def hostile_values(fd: FieldDescriptor) -> list[Any]:
    """The hostile values a field of this type can carry (on the wire, after a valid encoding)."""
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        return [{"\x00": "v"}, {"k": "\x00"}, {"x" * 5000: "v"}, {"k": "x" * 5000}]
    if fd.message_type is not None and fd.message_type.full_name == "google.protobuf.Struct":
        return HOSTILE_STRUCTS
    if fd.is_repeated or fd.message_type is not None or fd.type == FieldDescriptor.TYPE_BOOL:
        return []
    if fd.type == FieldDescriptor.TYPE_STRING:
        return HOSTILE_STRINGS
    if fd.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return HOSTILE_FLOATS
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return [99, -1]
    low, high = _INT_RANGES[fd.type]
    return sorted({low, high, -1 if low < 0 else 0, 0})


def _is_plain_message(fd: FieldDescriptor) -> bool:
    """A message field of our own: not a map, not a google.protobuf.Struct."""
    kind = fd.message_type
    return kind is not None and not kind.GetOptions().map_entry and kind.full_name != "google.protobuf.Struct"


def _set(message: Message, fd: FieldDescriptor, value: Any) -> None:
    if isinstance(value, list):  # repeated messages (CompleteTasks' completions): each a dict of its fields
        for element in value:
            added = getattr(message, fd.name).add()
            for name, field_value in element.items():
                _set(added, fd.message_type.fields_by_name[name], field_value)
    elif isinstance(value, dict) and _is_plain_message(fd):  # a nested message (SubmitTasks' task)
        for name, field_value in value.items():
            _set(getattr(message, fd.name), fd.message_type.fields_by_name[name], field_value)
    elif isinstance(value, dict):
        getattr(message, fd.name).update(value)
    else:
        setattr(message, fd.name, value)


class PlainRequests:
    """A plain valid request per method, fresh for each variant: unique ids where a second create would conflict,
    a new lease where the method needs one."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._tasks = tasks_pb2_grpc.TaskServiceStub(channel)
        self._agents = agents_pb2_grpc.AgentServiceStub(channel)

    def _lease(self) -> dict[str, Any]:
        register(self._agents)
        self._tasks.SubmitTask(tasks_pb2.SubmitTaskRequest(agent_type=TESTING), metadata=METADATA, timeout=CALL_TIMEOUT)
        leased = self._tasks.LeaseTasks(
            tasks_pb2.LeaseTasksRequest(agent_id=AGENT, agent_type=TESTING, max_tasks=1, wait_seconds=0),
            metadata=METADATA,
            timeout=CALL_TIMEOUT,
        )
        assert leased.leases, "a task submitted a moment ago must be leasable"
        return {"task_id": leased.leases[0].task.task_id, "lease_token": leased.leases[0].lease_token}

    def fields(self, name: str, task_id: str) -> dict[str, Any]:
        unique = f"fuzz-sweep-{next(_UNIQUE)}"

        def beat() -> dict[str, Any]:
            return {"agent_id": AGENT, "running": 0, "stats": {"cpu": 0.5}}

        plain: dict[str, Callable[[], dict[str, Any]]] = {
            "SubmitTask": lambda: {"agent_type": CODING, "payload": {"a": 1}, "priority": 1, "max_attempts": 2},
            "SubmitTasks": lambda: {
                "submissions": [
                    {
                        "task": {"agent_type": CODING, "payload": {"a": 1}, "priority": 1, "max_attempts": 2},
                        "traceparent": f"00-{'1' * 32}-{'2' * 16}-01",
                    }
                ]
            },
            "GetTask": lambda: {"task_id": task_id},
            "ListTasks": lambda: {"agent_type": CODING, "state": 1, "page_size": 10},
            "CancelTask": lambda: {"task_id": task_id},
            "LeaseTasks": lambda: {"agent_id": AGENT, "agent_type": TESTING, "max_tasks": 1, "wait_seconds": 0},
            "UpdateTaskProgress": lambda: {**self._lease(), "progress": 0.5, "message": "half"},
            "CompleteTask": lambda: {**self._lease(), "result": {"ok": 1}},
            "CompleteTasks": lambda: {"completions": [{**self._lease(), "result": {"ok": 1}}]},
            "FailTask": lambda: {**self._lease(), "error": "broken", "retryable": False},
            "ReleaseTask": self._lease,
            "CreateAgent": lambda: {"agent_id": unique, "agent_type": CODING, "labels": {"a": "b"}, "capacity": 1},
            "GetAgent": lambda: {"agent_id": AGENT},
            "ListAgents": lambda: {"agent_type": TESTING, "state": 1, "page_size": 10},
            "UpdateAgent": lambda: {"agent_id": AGENT, "labels": {"a": "b"}, "update_labels": True, "capacity": 2},
            "DeleteAgent": lambda: {"agent_id": unique},
            "RegisterAgent": lambda: {
                "agent_id": AGENT,
                "agent_type": TESTING,
                "labels": {"a": "b"},
                "capacity": 1,
                "address": "127.0.0.1:1",
                "version": "1",
            },
            # Deregistering the agent itself: later plain requests register it again (see _lease).
            "DeregisterAgent": lambda: {"agent_id": AGENT},
            "Heartbeat": beat,
            "HeartbeatStream": lambda: {"heartbeat": beat()},
            "SendMessage": lambda: {"sender": AGENT, "recipient_agent_id": AGENT, "topic": "t", "body": {"a": 1}},
            "BroadcastMessage": lambda: {"sender": AGENT, "agent_type": TESTING, "topic": "t", "body": {"a": 1}},
            "ReceiveMessages": lambda: {"agent_id": AGENT, "after_message_id": 0},
            "GetStatus": dict,
            "AllocateResource": lambda: {"agent_id": AGENT, "resource": "gpu", "amount": 1},
            "ReleaseResource": lambda: {"allocation_id": "00000000-0000-4000-8000-000000000000"},
            "GetResourceUsage": lambda: {"agent_type": TESTING},
            "SetResourceQuota": lambda: {"agent_type": TESTING, "resource": "gpu", "quota": 10},
        }
        return plain[name]()


def build(descriptor: Descriptor, fields: dict[str, Any]) -> Message:
    message = message_factory.GetMessageClass(descriptor)()
    for name, value in fields.items():
        _set(message, descriptor.fields_by_name[name], value)
    return message


@pytest.mark.parametrize("path", sorted(METHODS), ids=lambda p: p.rsplit("/", 1)[-1])
async def test_every_hostile_value_in_every_field(target: Orchestrator, seeded: str, path: str) -> None:
    """The sweep that sampling cannot promise: each hostile value once in each field of a plain valid request,
    then the plain request made corrupt (truncated, invalid UTF-8 in each string field)."""
    method = METHODS[path]
    descriptor = method.input_type
    failures = Failures()

    def sweep(channel: grpc.Channel) -> None:
        plain = PlainRequests(channel)

        def fuzz(where: str, fd: FieldDescriptor, value: Any, holder: Callable[[Message], Message]) -> None:
            message = build(descriptor, plain.fields(method.name, seeded))
            _set(holder(message), fd, value)
            code, details = call(channel, path, method, message.SerializeToString())
            if code in SERVER_FAULTS or (code == grpc.StatusCode.DEADLINE_EXCEEDED and not method.server_streaming):
                failures.add(path, f"[{where}={_short(value)}] {details[:100]!r}", code.name, _short(value))

        def walk(kind: Descriptor, fields: dict[str, Any], where: str, holder: Callable[[Message], Message]) -> None:
            """Each field of `kind` in turn; into the messages the plain request fills: the first element of a
            list (CompleteTasks' completions), a nested message (SubmitTasks' task)."""
            for fd in kind.fields:
                for value in hostile_values(fd):
                    fuzz(f"{where}{fd.name}", fd, value, holder)
                inner = fields.get(fd.name)
                if isinstance(inner, list) and inner:
                    walk(
                        fd.message_type,
                        inner[0],
                        f"{where}{fd.name}[0].",
                        lambda m, h=holder, f=fd: getattr(h(m), f.name)[0],
                    )
                elif isinstance(inner, dict) and _is_plain_message(fd):
                    walk(fd.message_type, inner, f"{where}{fd.name}.", lambda m, h=holder, f=fd: getattr(h(m), f.name))

        walk(descriptor, plain.fields(method.name, seeded), "", lambda message: message)
        data = build(descriptor, plain.fields(method.name, seeded)).SerializeToString()
        corrupt = [("truncated", data[: len(data) // 2] or b"\xff"), ("one byte 0xff", b"\xff")]
        corrupt += [
            (f"invalid UTF-8 in {fd.name}", data + _varint(fd.number << 3 | 2) + b"\x02\xc0\x80")
            for fd in descriptor.fields
            if fd.type == FieldDescriptor.TYPE_STRING and not fd.is_repeated
        ]
        for kind, body in corrupt:
            code, details = call(channel, path, method, body)
            if code in SERVER_FAULTS:
                failures.add(path, f"[corrupt: {kind}] {details[:100]!r}", code.name, repr(body))

    def run() -> None:
        with grpc.insecure_channel(grpc_target(target)) as channel:
            sweep(channel)

    await run_in_thread(run)
    failures.assert_none()


async def test_orchestrator_still_serves_after_fuzzing(target: Orchestrator) -> None:
    """After every method was fuzzed, a plain submit and read still work on the same server."""
    with grpc.insecure_channel(grpc_target(target)) as channel:
        submit = channel.unary_unary(
            "/ai_agents.v1.TaskService/SubmitTask",
            request_serializer=tasks_pb2.SubmitTaskRequest.SerializeToString,
            response_deserializer=tasks_pb2.SubmitTaskResponse.FromString,
        )
        get = channel.unary_unary(
            "/ai_agents.v1.TaskService/GetTask",
            request_serializer=tasks_pb2.GetTaskRequest.SerializeToString,
            response_deserializer=tasks_pb2.GetTaskResponse.FromString,
        )

        def round_trip() -> None:
            created = submit(tasks_pb2.SubmitTaskRequest(agent_type=1), metadata=METADATA, timeout=CALL_TIMEOUT)
            got = get(tasks_pb2.GetTaskRequest(task_id=created.task.task_id), metadata=METADATA, timeout=CALL_TIMEOUT)
            assert got.task.task_id == created.task.task_id

        await run_in_thread(round_trip)
