"""Property-based fuzzing of the HTTP API from its OpenAPI document, against a real orchestrator with the token on.

- schemathesis cases from the document, valid (positive) and schema-violating (negative), per operation: every
  answer is documented, JSON of the documented shape, never 5xx; schema-violating input is refused with a 4xx;
- hostile values mixed into valid cases, per operation (NaN, 1e999, huge integers, deep nesting, NUL, lone
  surrogates, invalid UTF-8 and control characters in bodies, parameters and headers): still never 5xx, always a
  documented JSON answer that does not echo the bearer token;
- submits at the edges of what each hop can carry: whatever is acknowledged reads back on both APIs, and the
  identical retry answers 200 with the same task.
Hypothesis runs in a worker thread (requests is blocking) while the orchestrator serves on the test's event loop.
Failures are collected across each test and reported together, one line per distinct failure, with its input.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes

import grpc
import pytest
import pytest_asyncio
import requests
import schemathesis
from ai_agents.local.postgres import LocalPostgres
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.serving.identity import CREDENTIAL_METADATA
from ai_agents.v1 import agents_pb2, agents_pb2_grpc, common_pb2, tasks_pb2, tasks_pb2_grpc
from hypothesis import example, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from ._fleet_support import agent_credential, create_database, grpc_target, http_base, orchestrator_settings
from ._fuzz_support import SHOWN, Failures, fuzz_settings, run_in_thread
from ._openapi_support import DOCUMENT, resolve, response_validator

pytestmark = pytest.mark.asyncio(loop_scope="module")

T = TypeVar("T")
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Per operation and kind of input: bounded so the file stays well under 90 s on 2 busy cores. Hostile input gets
# more: it has to spread over every place (body field, payload, path, query, header) and every hostile value.
EXAMPLES = 60
HOSTILE_EXAMPLES = 150
REQUEST_TIMEOUT = 10.0

SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
# The API ignores query parameters it does not know (as most HTTP APIs do: proxies and caches add some), so
# an unknown one is not schema-violating input that must be refused.
# The token is the real one, always (a wrong token is one 401 path, tested in test_openapi.py); without this
# schemathesis would put a random bearer token in most cases and the fuzzing would never pass the door.
SCHEMA.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
# A failure must show the input that caused it: page tokens and idempotency keys are not secrets here.
SCHEMA.config.output.sanitization.update(enabled=False)
OPERATIONS = {op.definition.raw["operationId"]: op for op in (result.ok() for result in SCHEMA.get_all_operations())}
QUERY_PARAMETERS = {
    (method.upper(), path): [p["name"] for p in map(resolve, operation.get("parameters", [])) if p["in"] == "query"]
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Target:
    orchestrator: Orchestrator
    base_url: str
    task_id: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def target(postgres: LocalPostgres) -> AsyncIterator[Target]:
    """One token-protected orchestrator for the module, with a real task so lookups hit rows as well as misses."""
    orchestrator = Orchestrator(orchestrator_settings(await create_database(postgres), api_token=TOKEN))
    await orchestrator.start()
    try:
        base = http_base(orchestrator)
        response = await asyncio.to_thread(
            requests.post, f"{base}/v1/tasks", json={"agent_type": "coding"}, headers=AUTH, timeout=REQUEST_TIMEOUT
        )
        assert response.status_code == 201, response.text
        yield Target(orchestrator, base, response.json()["task_id"])
    finally:
        await orchestrator.stop()


# ---- schemathesis: valid and schema-violating cases from the document ----------------------------------------


def _failure_titles(exc: BaseException) -> list[str]:
    if isinstance(exc, BaseExceptionGroup):
        return [t for inner in exc.exceptions for t in _failure_titles(inner)]
    title = getattr(exc, "title", type(exc).__name__)
    message = getattr(exc, "message", str(exc)).splitlines()
    return [f"{title}: {message[0] if message else ''}"]


# Schema-violating input exists only for operations that take some: parameters or a body.
CASE_KINDS = [
    (label, mode)
    for label, op in sorted(OPERATIONS.items())
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or op.definition.raw.get("parameters") or op.definition.raw.get("requestBody")
]


@pytest.mark.parametrize(("label", "mode"), CASE_KINDS, ids=[f"{label}-{mode.value}" for label, mode in CASE_KINDS])
async def test_operations_from_the_document(target: Target, label: str, mode: GenerationMode) -> None:
    operation = OPERATIONS[label]
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
    failures = Failures()
    session = requests.Session()

    @fuzz_settings(EXAMPLES)
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=target.base_url, session=session, headers=AUTH, timeout=REQUEST_TIMEOUT)
        try:
            case.validate_response(response, checks=checks)
        except (AssertionError, BaseExceptionGroup) as exc:
            for title in _failure_titles(exc):
                failures.add(label, title, response.status_code, case.as_curl_command(headers=AUTH))

    try:
        await run_in_thread(fuzz)
    finally:
        session.close()
    failures.assert_none()


# ---- hostile values mixed into valid cases ------------------------------------------------------------------


class Raw(str):
    """JSON text written into a body verbatim: how NaN, 1e999 or a 5,000-digit integer reach the server."""


def to_json(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{to_json(k) if isinstance(k, Raw) else json.dumps(k)}:{to_json(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


def _nested(depth: int, *, array: bool) -> Raw:
    return Raw(("[" * depth + "1" + "]" * depth) if array else ('{"a":' * depth + "1" + "}" * depth))


# Values JSON can carry that no hop of the API should choke on: the classes in the issue, at and past the limits.
HOSTILE_JSON = [
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("1e999"),
    Raw("-1e999"),
    Raw("1e23"),
    Raw("1" + "0" * 400),  # past a double: not representable in a protobuf Struct
    Raw("9" * 5000),  # past Python's int-to-string limit
    Raw('"\\u0000"'),
    Raw('"a\\u0000b"'),
    Raw('"\\ud800"'),
    Raw('"x\\udfffy"'),
    *(_nested(d, array=False) for d in (33, 34, 64, 200)),
    *(_nested(d, array=True) for d in (49, 50, 200, 5000)),
]
HOSTILE_KEYS = [Raw('"\\u0000"'), Raw('"\\ud800"'), Raw('"a\\u0000"'), Raw('""')]
# Whole bodies a parser has to survive.
HOSTILE_BODIES = [
    b"\xff\xfe{}",
    b'{"agent_type": "coding", "payload": {"a": "\xff\xfe"}}',
    b'{"agent_type": "coding"',
    b"[" * 100_000,
    b"{" * 50_000,
    b"",
    b"null",
    b"\x00",
    b'{"agent_type": "coding", "agent_type": "testing"}',
    b'{"agent_type": "coding", "payload": {"a": 1}} trailing',
]
# Parameter and header values as raw bytes: percent-encoded in URLs, sent as they are in headers.
HOSTILE_TEXT = [
    b"\x00",
    b"a\x00b",
    b"\xed\xa0\x80",  # a lone surrogate, UTF-8 encoded the way only broken encoders do
    b"\xff\xfe",
    "caf\u00e9".encode(),
    b"%",
    b"%zz",
    b"-1",
    b"1e999",
    b"NaN",
    b"9" * 5000,
    b"x" * 5000,
    b"..",
    b"/",
]
HOSTILE_HEADERS = [
    ("Authorization", b"Bearer caf\xe9"),  # not ASCII: must be 401, not 500
    ("Authorization", b"Bearer \xff\xfe"),
    ("Authorization", b"Bearer " + TOKEN.encode() + b"\xe9"),
    ("Idempotency-Key", b"\xff\xfe"),
    ("Idempotency-Key", b"caf\xe9"),
    ("Idempotency-Key", b"x" * 5000),
    ("Idempotency-Key", b"a\x00b"),  # control characters: the HTTP parser's own 400 must be JSON too
    ("Idempotency-Key", b"\x01"),
    ("Authorization", b"Bearer \x00" + TOKEN.encode()),
    ("Content-Type", b"application/json; charset=\xff"),
    ("Content-Type", b"text/plain"),
]


def short(value: str | bytes) -> str:
    """A hostile value as a failure label: long ones (deep nesting, huge numbers) by their start and length."""
    return repr(value) if len(value) <= 24 else f"{value[:12]!r}...({len(value)} long)"


@dataclass(frozen=True)
class HostileRequest:
    # Where the hostile value went and which it was: the key that makes a failure distinct.
    kind: str
    method: str
    url: str
    headers: dict[str, str | bytes]
    body: bytes | None

    def shown(self) -> str:
        body = "" if self.body is None else f" body={self.body[:SHOWN]!r}"
        # Only what differs from an ordinary request: the real token and the client's default headers are noise.
        ordinary = {**AUTH, **requests.utils.default_headers()}
        headers = {k: v for k, v in self.headers.items() if ordinary.get(k) != v}
        return f"{self.method} {self.url[:SHOWN]} headers={headers!r}{body}"


def _encode(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


SUBMIT_FIELDS = ("agent_type", "payload", "idempotency_key", "priority", "max_attempts")


@dataclass(frozen=True)
class Valid:
    """A valid request of one operation: the base that each hostile variant changes in exactly one place."""

    method: str
    template: str
    path_params: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None

    @classmethod
    def from_case(cls, case: schemathesis.Case) -> Valid:
        body = case.body if case.operation.body and isinstance(case.body, dict) else None
        return cls(
            method=case.operation.method.upper(),
            template=case.operation.path,
            path_params=dict(case.path_parameters or {}),
            query=dict(case.query or {}),
            headers={k: str(v) for k, v in (case.headers or {}).items()},
            body=copy.deepcopy(body),
        )

    def request(
        self,
        base_url: str,
        kind: str,
        *,
        path_params: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        headers: dict[str, str | bytes] | None = None,
        body: dict[str, Any] | None = None,
        raw_body: bytes | None = None,
    ) -> HostileRequest:
        path = self.template
        for name, value in (self.path_params if path_params is None else path_params).items():
            path = path.replace(f"{{{name}}}", quote_from_bytes(_encode(value), safe=""))
        url = base_url + path
        params = self.query if query is None else query
        if params:
            url += "?" + "&".join(f"{k}={quote_from_bytes(_encode(v), safe='')}" for k, v in params.items())
        sent: dict[str, str | bytes] = {**self.headers, **AUTH, **(headers or {})}
        body = self.body if body is None else body
        if raw_body is None and body is not None:
            raw_body = to_json(body).encode("utf-8", "surrogatepass")
            sent.setdefault("Content-Type", "application/json")
        return HostileRequest(kind, self.method, url, sent, raw_body)


def hostile_variants(valid: Valid, base_url: str) -> list[HostileRequest]:
    """Every hostile value in every place this operation takes input: path and query parameters, headers, each
    body field, a payload value, a payload key, and the whole body."""
    variants = [
        valid.request(base_url, f"path {name}={short(value)}", path_params={**valid.path_params, name: value})
        for name in sorted(valid.path_params)
        for value in HOSTILE_TEXT
    ]
    # The documented query parameters, or, where there are none, a name the operation must ignore.
    names = QUERY_PARAMETERS.get((valid.method, valid.template)) or ["page_size"]
    variants += [
        valid.request(base_url, f"query {name}={short(value)}", query={**valid.query, name: value})
        for name in names
        for value in HOSTILE_TEXT
    ]
    variants += [
        valid.request(base_url, f"header {name}: {short(value)}", headers={name: value})
        for name, value in HOSTILE_HEADERS
    ]
    if valid.body is not None:
        body = valid.body
        variants += [
            valid.request(base_url, f"body {name}={short(value)}", body={**body, name: value})
            for name in SUBMIT_FIELDS
            for value in HOSTILE_JSON
        ]
        payload = body.get("payload") if isinstance(body.get("payload"), dict) else {}
        variants += [
            valid.request(base_url, f"payload value {short(value)}", body={**body, "payload": {**payload, "k": value}})
            for value in HOSTILE_JSON
        ]
        variants += [
            valid.request(base_url, f"payload key {short(key)}", body={**body, "payload": {key: 1}})
            for key in HOSTILE_KEYS
        ]
        variants += [valid.request(base_url, f"whole body {short(raw)}", raw_body=raw) for raw in HOSTILE_BODIES]
    return variants


def send_hostile(session: requests.Session, label: str, request: HostileRequest, failures: Failures) -> None:
    """Send one hostile request; record it unless the answer is a documented, JSON, non-5xx, token-free one."""
    try:
        response = session.request(
            request.method, request.url, headers=request.headers, data=request.body, timeout=REQUEST_TIMEOUT
        )
    except requests.RequestException as exc:
        failures.add(label, f"{request.kind}: no answer ({type(exc).__name__})", 0, request.shown())
        return
    status = response.status_code
    if status >= 500:
        failures.add(label, f"{request.kind}: server error", status, request.shown())
        return
    if TOKEN in response.text:
        failures.add(label, f"{request.kind}: the answer echoes the bearer token", status, request.shown())
        return
    if response.headers.get("Content-Type", "").split(";")[0] != "application/json":
        failures.add(label, f"{request.kind}: not JSON {response.text[:80]!r}", status, request.shown())
        return
    try:
        validator = response_validator(OPERATIONS[label].path, request.method, status)
    except AssertionError as exc:  # the status is not documented for this operation
        failures.add(label, f"{request.kind}: {str(exc).splitlines()[0]}", status, request.shown())
        return
    errors = list(validator.iter_errors(response.json()))
    if errors:
        failures.add(
            label, f"{request.kind}: answer not as documented: {errors[0].message[:80]}", status, request.shown()
        )


@pytest.mark.parametrize("label", sorted(OPERATIONS))
async def test_hostile_values_in_random_valid_requests(target: Target, label: str) -> None:
    """Hypothesis picks a valid case from the document and one hostile variant of it: interactions included."""
    operation = OPERATIONS[label]
    failures = Failures()

    @fuzz_settings(HOSTILE_EXAMPLES)
    @given(data=st.data(), case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def fuzz(data: st.DataObject, case: schemathesis.Case) -> None:
        if "task_id" in (case.path_parameters or {}) and data.draw(st.booleans()):
            case.path_parameters = {"task_id": target.task_id}  # hit a real row too, not only misses
        send_hostile(
            session,
            label,
            data.draw(st.sampled_from(hostile_variants(Valid.from_case(case), target.base_url))),
            failures,
        )

    with requests.Session() as session:
        await run_in_thread(fuzz)
    failures.assert_none()


def plain_requests(target: Target) -> dict[str, Valid]:
    """One ordinary valid request per operation, against real rows where the operation reads one."""
    agents = Valid("GET", "/v1/agents", query={"agent_type": "coding", "state": "active", "page_size": 10})
    tasks = Valid("GET", "/v1/tasks", query={"agent_type": "coding", "state": "queued", "page_size": 10})
    return {
        "submitTask": Valid("POST", "/v1/tasks", body={"agent_type": "coding", "payload": {"a": 1}}),
        "listTasks": tasks,
        "getTask": Valid("GET", "/v1/tasks/{task_id}", path_params={"task_id": target.task_id}),
        "cancelTask": Valid("POST", "/v1/tasks/{task_id}:cancel", path_params={"task_id": target.task_id}),
        "listAgents": agents,
        "getAgent": Valid("GET", "/v1/agents/{agent_id}", path_params={"agent_id": "fuzz-agent-1"}),
        "getQueue": Valid("GET", "/v1/queue", query={"agent_type": "coding"}),
        "getStatus": Valid("GET", "/v1/status"),
        "getOpenApi": Valid("GET", "/v1/openapi.json"),
    }


@pytest.mark.parametrize("label", sorted(OPERATIONS))
async def test_every_hostile_value_in_every_place(target: Target, label: str) -> None:
    """The sweep that sampling cannot promise: each hostile value once in each place of a plain valid request."""
    valid = plain_requests(target)[label]
    failures = Failures()

    def sweep() -> None:
        for request in hostile_variants(valid, target.base_url):
            send_hostile(session, label, request, failures)

    with requests.Session() as session:
        await run_in_thread(sweep)
    failures.assert_none()


# Payload values a submit may accept: each must then read back on both APIs and retry idempotently.
STORABLE_JSON = [
    Raw("1e23"),
    Raw("0.1"),
    Raw("-0.0"),
    Raw("1.7976931348623157e308"),
    Raw("5e-324"),
    Raw(str(2**63)),
    Raw("1" + "0" * 400),
    *(_nested(d, array=False) for d in (32, 33, 34)),
    *(_nested(d, array=True) for d in (47, 48, 49)),
    Raw('"caf\u00e9 \ud83d\ude00"'),
]


# Read-back submits use a type of their own, so LeaseTasks of that type meets their tasks.
READ_BACK_TYPE, READ_BACK_TYPE_NUMBER = "documentation", common_pb2.AGENT_TYPE_DOCUMENTATION
READER = "fuzz-reader"
READER_CREDENTIAL = agent_credential(READER, READ_BACK_TYPE)
SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
# Unique per example and the same from run to run (a uuid4 here would make failure reports differ between runs).
_KEYS = itertools.count()


@st.composite
def accepted_candidates(draw: st.DrawFn) -> bytes:
    """A submit body whose payload mixes ordinary JSON with values at the edges of what a hop can carry."""
    ordinary = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**64), 2**64)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    )
    return submit_body(draw(st.one_of(st.sampled_from(STORABLE_JSON), ordinary)))


def reduce_examples(examples: Iterable[Callable[[T], T]]) -> Callable[[T], T]:
    """Apply several @example decorators built in a loop."""

    def apply(test: T) -> T:
        for add in examples:
            test = add(test)
        return test

    return apply


def submit_body(value: Any) -> bytes:
    body = {"agent_type": READ_BACK_TYPE, "payload": {"v": value}, "idempotency_key": f"read-back-{next(_KEYS)}"}
    return to_json(body).encode("utf-8", "surrogatepass")


async def test_accepted_tasks_read_back_and_retry_idempotently(target: Target) -> None:
    """Whatever a submit acknowledges, GET (HTTP) and GetTask (gRPC) can read, and the identical retry is a 200
    with the same task: an acknowledged task never becomes a row that breaks reads or a retry that conflicts."""
    failures = Failures()
    session = requests.Session()
    label = "submitTask"

    # Every edge value at least once (explicit examples), then the generated mix.
    @fuzz_settings(EXAMPLES)
    @given(body=accepted_candidates())
    @reduce_examples(example(body=submit_body(value)) for value in STORABLE_JSON)
    def fuzz(body: bytes) -> None:
        headers = {**AUTH, "Content-Type": "application/json"}
        first = session.post(f"{target.base_url}/v1/tasks", data=body, headers=headers, timeout=REQUEST_TIMEOUT)
        if first.status_code >= 500:
            failures.add(label, "submit: server error", first.status_code, repr(body))
        if first.status_code != 201:
            return
        task_id = first.json()["task_id"]
        again = session.post(f"{target.base_url}/v1/tasks", data=body, headers=headers, timeout=REQUEST_TIMEOUT)
        if again.status_code != 200 or again.json().get("task_id") != task_id:
            failures.add(label, "identical retry not answered with the same task", again.status_code, repr(body))
        read = session.get(f"{target.base_url}/v1/tasks/{task_id}", headers=AUTH, timeout=REQUEST_TIMEOUT)
        if read.status_code != 200:
            failures.add("getTask", "an acknowledged task does not read back", read.status_code, repr(body))
        get, lease = grpc_reads(target, task_id)
        if get != grpc.StatusCode.OK:
            failures.add("GetTask (gRPC)", "an acknowledged task does not read back", get.name, repr(body))
        # Only a server fault counts: who may lease is the agent-identity rules' business, not this test's.
        if lease in SERVER_FAULTS:
            failures.add("LeaseTasks (gRPC)", "a queued task cannot be leased", lease.name, repr(body))

    try:
        await run_in_thread(fuzz)
    finally:
        session.close()
    failures.assert_none()


def grpc_code(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return exc.code()
    return grpc.StatusCode.OK


def grpc_reads(target: Target, task_id: str) -> tuple[grpc.StatusCode, grpc.StatusCode]:
    """GetTask of this task, and LeaseTasks of the next queued task of the read-back type, over gRPC."""
    metadata = (("authorization", AUTH["Authorization"]), (CREDENTIAL_METADATA, READER_CREDENTIAL))
    with grpc.insecure_channel(grpc_target(target.orchestrator)) as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        # Registered (again) first: LeaseTasks serves registered agents only, and this one never heartbeats.
        grpc_code(
            lambda: agents_pb2_grpc.AgentServiceStub(channel).RegisterAgent(
                agents_pb2.RegisterAgentRequest(agent_id=READER, agent_type=READ_BACK_TYPE_NUMBER, capacity=1),
                metadata=metadata,
                timeout=REQUEST_TIMEOUT,
            )
        )
        get = grpc_code(
            lambda: stub.GetTask(tasks_pb2.GetTaskRequest(task_id=task_id), metadata=metadata, timeout=REQUEST_TIMEOUT)
        )
        lease_request = tasks_pb2.LeaseTasksRequest(
            agent_id=READER, agent_type=READ_BACK_TYPE_NUMBER, max_tasks=1, wait_seconds=0
        )
        lease = grpc_code(lambda: stub.LeaseTasks(lease_request, metadata=metadata, timeout=REQUEST_TIMEOUT))
    return get, lease


async def test_hostile_requests_left_the_queue_whole(target: Target) -> None:
    """After the fuzzing above, the orchestrator still serves and the task made at the start is still there."""
    response = await asyncio.to_thread(
        requests.get, f"{target.base_url}/v1/tasks/{target.task_id}", headers=AUTH, timeout=REQUEST_TIMEOUT
    )
    assert response.status_code == 200, response.text
    assert response.json()["task_id"] == target.task_id
