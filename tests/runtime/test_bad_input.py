"""Bad input on both APIs: exact status codes, `{"error": {"code", "message"}}` bodies naming the field, auth.

One orchestrator pair serves the whole module (a limits-tuned one and a token-protected one on the same
database), so the last test can prove that after every bad input it still serves and nothing acknowledged is lost.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from ai_agents.convert import dict_to_struct
from ai_agents.local.postgres import LocalPostgres
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.serving.identity import CREDENTIAL_METADATA
from ai_agents.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    common_pb2,
    messaging_pb2,
    messaging_pb2_grpc,
    monitoring_pb2,
    monitoring_pb2_grpc,
    resources_pb2,
    resources_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ._api_support import health_port, metrics_port
from ._fleet_support import agent_credential, create_database, grpc_target, http_base, orchestrator_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_PAYLOAD = 1024
MAX_MESSAGE = 8192
TOKEN = "s3cret"
CODING = common_pb2.AGENT_TYPE_CODING


def as_agent(agent_id: str, agent_type: str = "coding") -> tuple[tuple[str, str], ...]:
    """Call metadata of one agent: agent RPCs reach validation only with a credential for the id they name."""
    return ((CREDENTIAL_METADATA, agent_credential(agent_id, agent_type)),)


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.tasks = tasks_pb2_grpc.TaskServiceStub(channel)
        self.agents = agents_pb2_grpc.AgentServiceStub(channel)
        self.messaging = messaging_pb2_grpc.MessagingServiceStub(channel)
        self.monitoring = monitoring_pb2_grpc.MonitoringServiceStub(channel)
        self.resources = resources_pb2_grpc.ResourceServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)


@dataclass
class World:
    limits: Orchestrator
    secured: Orchestrator
    http: aiohttp.ClientSession
    stubs: Stubs
    secured_stubs: Stubs
    finished: str = ""
    queued: str = ""
    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)

    def url(self, path: str, *, secured: bool = False) -> str:
        base = http_base(self.secured if secured else self.limits)
        return base + path.format(finished=self.finished, queued=self.queued, missing=MISSING)


MISSING = str(uuid.uuid4())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(postgres: LocalPostgres) -> AsyncIterator[World]:
    dsn = await create_database(postgres)
    limits = Orchestrator(orchestrator_settings(dsn, max_payload_bytes=MAX_PAYLOAD, max_message_bytes=MAX_MESSAGE))
    secured = Orchestrator(orchestrator_settings(dsn, api_token=TOKEN))
    await limits.start()
    await secured.start()
    http = aiohttp.ClientSession()
    channel = grpc.aio.insecure_channel(grpc_target(limits))
    secured_channel = grpc.aio.insecure_channel(grpc_target(secured))
    w = World(limits, secured, http, Stubs(channel), Stubs(secured_channel))
    try:
        # Acknowledged work, checked at the end: over HTTP and over gRPC, queued and finished.
        for i in range(3):
            async with http.post(w.url("/v1/tasks"), json={"agent_type": "coding", "payload": {"i": i}}) as r:
                assert r.status == 201
                body = await r.json()
                w.acknowledged[body["task_id"]] = body["payload"]
        for i in range(2):
            response = await w.stubs.tasks.SubmitTask(
                tasks_pb2.SubmitTaskRequest(
                    agent_type=CODING,
                    payload=dict_to_struct({"g": i}),
                    idempotency_key=f"g{i}",
                )
            )
            w.acknowledged[response.task.task_id] = {"g": i}
        await w.stubs.agents.RegisterAgent(
            agents_pb2.RegisterAgentRequest(agent_id="w-1", agent_type=CODING), metadata=as_agent("w-1")
        )
        leased = await w.stubs.tasks.LeaseTasks(
            tasks_pb2.LeaseTasksRequest(agent_id="w-1", agent_type=CODING, max_tasks=1, wait_seconds=0),
            metadata=as_agent("w-1"),
        )
        lease = leased.leases[0]
        await w.stubs.tasks.CompleteTask(
            tasks_pb2.CompleteTaskRequest(task_id=lease.task.task_id, lease_token=lease.lease_token),
            metadata=as_agent("w-1"),
        )
        w.finished = lease.task.task_id
        w.queued = next(t for t in w.acknowledged if t != w.finished)
        yield w
    finally:
        await http.close()
        await channel.close()
        await secured_channel.close()
        await secured.stop()
        await limits.stop()


# ---- the table ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpCase:
    method: str
    path: str
    status: int
    code: str
    # A substring the error message must contain (the offending field); "" for protocol-level errors.
    names: str
    json_body: Any = None
    raw_body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    secured: bool = False


GrpcCall = Callable[[World], Awaitable[Any]]


@dataclass(frozen=True)
class GrpcCase:
    call: GrpcCall
    code: grpc.StatusCode
    names: str
    secured: bool = False


def submit(**fields: Any) -> GrpcCall:
    payload = fields.pop("payload", None)
    request = tasks_pb2.SubmitTaskRequest(payload=dict_to_struct(payload), **fields)
    return lambda w: w.stubs.tasks.SubmitTask(request, timeout=5)


def list_tasks(**fields: Any) -> GrpcCall:
    return lambda w: w.stubs.tasks.ListTasks(tasks_pb2.ListTasksRequest(**fields), timeout=5)


def _deep(depth: int) -> bytes:
    return b'{"agent_type": "coding", "payload": {"a": ' + b"[" * depth + b"]" * depth + b"}}"


def _token(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


BIG = "x" * (MAX_PAYLOAD + 10)  # over the payload limit, well under the message limit
HUGE = "x" * (MAX_MESSAGE * 3)  # over the message / body limit
WRONG = (("Authorization", "Bearer wrong"),)
POST_TASKS = ("POST", "/v1/tasks")

CASES = [
    # agent_type
    pytest.param(
        HttpCase(*POST_TASKS, 400, "invalid_argument", "agent_type", {"agent_type": "wizard"}),
        id="http-unknown-agent-type",
    ),
    pytest.param(
        GrpcCase(submit(agent_type=42), grpc.StatusCode.INVALID_ARGUMENT, "agent_type"),
        id="grpc-unknown-agent-type",
    ),
    pytest.param(
        HttpCase("GET", "/v1/tasks?agent_type=wizard", 400, "invalid_argument", "agent_type"),
        id="http-list-unknown-agent-type",
    ),
    pytest.param(
        HttpCase(*POST_TASKS, 400, "invalid_argument", "agent_type", {"payload": {}}),
        id="http-missing-agent-type",
    ),
    pytest.param(
        HttpCase(*POST_TASKS, 400, "invalid_argument", "agent_type", {"agent_type": 3}),
        id="http-agent-type-not-a-string",
    ),
    pytest.param(
        GrpcCase(submit(), grpc.StatusCode.INVALID_ARGUMENT, "agent_type"),
        id="grpc-missing-agent-type",
    ),
    # payload
    pytest.param(
        HttpCase(
            *POST_TASKS,
            400,
            "invalid_argument",
            "payload",
            {"agent_type": "coding", "payload": [1]},
        ),
        id="http-payload-not-an-object",
    ),
    pytest.param(
        HttpCase(
            *POST_TASKS,
            400,
            "invalid_argument",
            "payload",
            {"agent_type": "coding", "payload": "text"},
        ),
        id="http-payload-a-string",
    ),
    pytest.param(
        HttpCase(
            *POST_TASKS,
            400,
            "invalid_argument",
            "payload",
            {"agent_type": "coding", "payload": {"blob": BIG}},
        ),
        id="http-payload-over-limit",
    ),
    pytest.param(
        GrpcCase(
            submit(agent_type=CODING, payload={"blob": BIG}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "payload",
        ),
        id="grpc-payload-over-limit",
    ),
    # body
    pytest.param(
        HttpCase(
            *POST_TASKS,
            400,
            "invalid_argument",
            "JSON",
            raw_body=b'{"agent_type": "coding"',
        ),
        id="http-body-not-json",
    ),
    pytest.param(
        HttpCase(*POST_TASKS, 400, "invalid_argument", "JSON", raw_body=b"\xff\xfe\x00"),
        id="http-body-not-utf8",
    ),
    pytest.param(
        HttpCase(
            *POST_TASKS,
            400,
            "invalid_argument",
            "body",
            json_body=[{"agent_type": "coding"}],
        ),
        id="http-body-not-an-object",
    ),
    pytest.param(
        HttpCase(*POST_TASKS, 400, "invalid_argument", "body", raw_body=b""),
        id="http-body-empty",
    ),
    pytest.param(
        HttpCase(
            *POST_TASKS,
            400,
            "invalid_argument",
            "colour",
            {"agent_type": "coding", "colour": "red"},
        ),
        id="http-unknown-json-field",
    ),
    pytest.param(
        HttpCase(*POST_TASKS, 400, "invalid_argument", "JSON", raw_body=_deep(3000)),
        id="http-body-nested-too-deep",
    ),
    # task ids
    pytest.param(
        HttpCase("GET", "/v1/tasks/not-a-uuid", 400, "invalid_argument", "task_id"),
        id="http-bad-task-id",
    ),
    pytest.param(
        HttpCase("POST", "/v1/tasks/12345:cancel", 400, "invalid_argument", "task_id"),
        id="http-cancel-bad-task-id",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id="nope"), timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "task_id",
        ),
        id="grpc-bad-task-id",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.tasks.CompleteTask(
                tasks_pb2.CompleteTaskRequest(task_id=""), timeout=5, metadata=as_agent("w-1")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "task_id",
        ),
        id="grpc-complete-empty-task-id",
    ),
    pytest.param(
        HttpCase("GET", "/v1/tasks/{missing}", 404, "not_found", MISSING),
        id="http-unknown-task",
    ),
    pytest.param(
        HttpCase("POST", "/v1/tasks/{missing}:cancel", 404, "not_found", MISSING),
        id="http-cancel-unknown-task",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=MISSING), timeout=5),
            grpc.StatusCode.NOT_FOUND,
            MISSING,
        ),
        id="grpc-unknown-task",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.tasks.FailTask(
                tasks_pb2.FailTaskRequest(task_id=MISSING, lease_token=1, error="x"),
                timeout=5,
                metadata=as_agent("w-1"),
            ),
            grpc.StatusCode.NOT_FOUND,
            MISSING,
        ),
        id="grpc-fail-unknown-task",
    ),
    pytest.param(
        HttpCase("GET", "/v1/agents/ghost", 404, "not_found", "ghost"),
        id="http-unknown-agent",
    ),
    # state conflicts
    pytest.param(
        HttpCase(
            "POST",
            "/v1/tasks/{finished}:cancel",
            409,
            "failed_precondition",
            "succeeded",
        ),
        id="http-cancel-finished-task",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.tasks.CancelTask(tasks_pb2.CancelTaskRequest(task_id=w.finished), timeout=5),
            grpc.StatusCode.FAILED_PRECONDITION,
            "succeeded",
        ),
        id="grpc-cancel-finished-task",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.tasks.CompleteTask(
                tasks_pb2.CompleteTaskRequest(task_id=w.queued, lease_token=1),
                timeout=5,
                metadata=as_agent("w-1"),
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "queued",
        ),
        id="grpc-complete-unleased-task",
    ),
    # listing
    pytest.param(
        HttpCase(
            "GET",
            "/v1/tasks?page_token=garbage!",
            400,
            "invalid_argument",
            "page_token",
        ),
        id="http-bad-page-token",
    ),
    pytest.param(
        GrpcCase(list_tasks(page_token="@@@"), grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
        id="grpc-bad-page-token",
    ),
    pytest.param(
        HttpCase(
            "GET",
            "/v1/tasks?page_token=" + _token("2024-01-01T00:00:00+00:00|not-a-uuid"),
            400,
            "invalid_argument",
            "page_token",
        ),
        id="http-forged-page-token",
    ),
    pytest.param(
        HttpCase("GET", "/v1/tasks?page_size=5000", 400, "invalid_argument", "page_size"),
        id="http-page-size-too-large",
    ),
    pytest.param(
        HttpCase("GET", "/v1/tasks?page_size=-1", 400, "invalid_argument", "page_size"),
        id="http-page-size-negative",
    ),
    pytest.param(
        HttpCase("GET", "/v1/tasks?page_size=ten", 400, "invalid_argument", "page_size"),
        id="http-page-size-not-int",
    ),
    pytest.param(
        HttpCase("GET", "/v1/agents?page_size=1001", 400, "invalid_argument", "page_size"),
        id="http-agents-page-size-too-large",
    ),
    pytest.param(
        GrpcCase(list_tasks(page_size=1001), grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
        id="grpc-page-size-too-large",
    ),
    pytest.param(
        GrpcCase(list_tasks(page_size=-3), grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
        id="grpc-page-size-negative",
    ),
    pytest.param(
        HttpCase("GET", "/v1/tasks?state=sleeping", 400, "invalid_argument", "state"),
        id="http-bad-state-filter",
    ),
    pytest.param(
        HttpCase("GET", "/v1/agents?state=asleep", 400, "invalid_argument", "state"),
        id="http-bad-agent-state-filter",
    ),
    pytest.param(
        GrpcCase(list_tasks(state=42), grpc.StatusCode.INVALID_ARGUMENT, "state"),
        id="grpc-bad-state-filter",
    ),
    # numbers
    pytest.param(
        HttpCase(
            *POST_TASKS,
            400,
            "invalid_argument",
            "priority",
            {"agent_type": "coding", "priority": 5000},
        ),
        id="http-priority-out-of-range",
    ),
    pytest.param(
        HttpCase(
            *POST_TASKS,
            400,
            "invalid_argument",
            "priority",
            {"agent_type": "coding", "priority": "hi"},
        ),
        id="http-priority-not-int",
    ),
    pytest.param(
        HttpCase(
            *POST_TASKS,
            400,
            "invalid_argument",
            "priority",
            {"agent_type": "coding", "priority": True},
        ),
        id="http-priority-bool",
    ),
    pytest.param(
        GrpcCase(
            submit(agent_type=CODING, priority=-1001),
            grpc.StatusCode.INVALID_ARGUMENT,
            "priority",
        ),
        id="grpc-priority-out-of-range",
    ),
    pytest.param(
        HttpCase(
            *POST_TASKS,
            400,
            "invalid_argument",
            "max_attempts",
            {"agent_type": "coding", "max_attempts": 101},
        ),
        id="http-max-attempts-out-of-range",
    ),
    pytest.param(
        HttpCase(
            *POST_TASKS,
            400,
            "invalid_argument",
            "idempotency_key",
            {"agent_type": "coding", "idempotency_key": 7},
        ),
        id="http-idempotency-key-not-string",
    ),
    pytest.param(
        GrpcCase(
            submit(agent_type=CODING, idempotency_key="k" * 201),
            grpc.StatusCode.INVALID_ARGUMENT,
            "idempotency_key",
        ),
        id="grpc-idempotency-key-too-long",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.tasks.LeaseTasks(
                tasks_pb2.LeaseTasksRequest(agent_id="w", agent_type=CODING, max_tasks=101),
                timeout=5,
                metadata=as_agent("w"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_tasks",
        ),
        id="grpc-lease-too-many",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.tasks.LeaseTasks(
                tasks_pb2.LeaseTasksRequest(agent_id="w", agent_type=CODING, wait_seconds=600),
                timeout=900,
                metadata=as_agent("w"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "wait_seconds",
        ),
        id="grpc-lease-wait-too-long",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.tasks.UpdateTaskProgress(
                tasks_pb2.UpdateTaskProgressRequest(task_id=MISSING, lease_token=1, progress=2.0),
                timeout=5,
                metadata=as_agent("w-1"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "progress",
        ),
        id="grpc-progress-out-of-range",
    ),
    # agents, messaging, resources
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.agents.RegisterAgent(
                agents_pb2.RegisterAgentRequest(agent_id="has spaces", agent_type=CODING),
                timeout=5,
                metadata=as_agent("has spaces"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "agent_id",
        ),
        id="grpc-bad-agent-id",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.agents.RegisterAgent(
                agents_pb2.RegisterAgentRequest(agent_id="ok-1", agent_type=CODING, capacity=-2),
                timeout=5,
                metadata=as_agent("ok-1"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "capacity",
        ),
        id="grpc-bad-capacity",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.messaging.SendMessage(messaging_pb2.SendMessageRequest(recipient_agent_id=""), timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT,
            "recipient_agent_id",
        ),
        id="grpc-message-without-recipient",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.resources.AllocateResource(
                resources_pb2.AllocateResourceRequest(agent_id="ghost", resource="gpu", amount=1),
                timeout=5,
            ),
            grpc.StatusCode.NOT_FOUND,
            "ghost",
        ),
        id="grpc-allocate-unknown-agent",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.resources.ReleaseResource(
                resources_pb2.ReleaseResourceRequest(allocation_id=MISSING), timeout=5
            ),
            grpc.StatusCode.NOT_FOUND,
            MISSING,
        ),
        id="grpc-release-unknown-allocation",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.resources.ReleaseResource(
                resources_pb2.ReleaseResourceRequest(allocation_id="x"), timeout=5
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "allocation_id",
        ),
        id="grpc-release-bad-allocation-id",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.stubs.resources.SetResourceQuota(
                resources_pb2.SetResourceQuotaRequest(agent_type=CODING, resource="GPU!", quota=1),
                timeout=5,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "resource",
        ),
        id="grpc-bad-resource-name",
    ),
    # transport limits and routing
    pytest.param(
        GrpcCase(
            submit(agent_type=CODING, payload={"blob": HUGE}),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "larger than max",
        ),
        id="grpc-message-over-max",
    ),
    pytest.param(
        HttpCase(
            *POST_TASKS,
            413,
            "payload_too_large",
            "",
            {"agent_type": "coding", "payload": {"blob": HUGE}},
        ),
        id="http-body-over-max",
    ),
    pytest.param(
        HttpCase("GET", "/v1/nothing/here", 404, "not_found", ""),
        id="http-unknown-route",
    ),
    pytest.param(HttpCase("GET", "/", 404, "not_found", ""), id="http-root"),
    pytest.param(
        HttpCase("DELETE", "/v1/tasks", 405, "method_not_allowed", ""),
        id="http-wrong-method",
    ),
    pytest.param(
        HttpCase("PUT", "/v1/tasks/{queued}", 405, "method_not_allowed", ""),
        id="http-wrong-method-item",
    ),
    # auth
    pytest.param(
        HttpCase(
            *POST_TASKS,
            401,
            "unauthenticated",
            "token",
            {"agent_type": "coding"},
            secured=True,
        ),
        id="http-missing-token",
    ),
    pytest.param(
        HttpCase(
            *POST_TASKS,
            401,
            "unauthenticated",
            "token",
            {"agent_type": "coding"},
            headers=WRONG,
            secured=True,
        ),
        id="http-wrong-token",
    ),
    pytest.param(
        HttpCase(
            "GET",
            "/v1/tasks",
            401,
            "unauthenticated",
            "token",
            headers=(("Authorization", TOKEN),),
            secured=True,
        ),
        id="http-token-without-bearer",
    ),
    pytest.param(
        HttpCase(
            "GET",
            "/v1/status",
            401,
            "unauthenticated",
            "token",
            headers=(("Authorization", "Bearer"),),
            secured=True,
        ),
        id="http-empty-bearer",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.secured_stubs.tasks.SubmitTask(tasks_pb2.SubmitTaskRequest(agent_type=CODING), timeout=5),
            grpc.StatusCode.UNAUTHENTICATED,
            "token",
            secured=True,
        ),
        id="grpc-missing-token",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.secured_stubs.monitoring.GetStatus(
                monitoring_pb2.GetStatusRequest(),
                timeout=5,
                metadata=(("authorization", "Bearer wrong"),),
            ),
            grpc.StatusCode.UNAUTHENTICATED,
            "token",
            secured=True,
        ),
        id="grpc-wrong-token",
    ),
    pytest.param(
        GrpcCase(
            lambda w: w.secured_stubs.messaging.ReceiveMessages(
                messaging_pb2.ReceiveMessagesRequest(agent_id="a"), timeout=5
            ).read(),
            grpc.StatusCode.UNAUTHENTICATED,
            "token",
            secured=True,
        ),
        id="grpc-stream-missing-token",
    ),
]


@pytest.mark.parametrize("case", CASES)
async def test_bad_input(world: World, case: HttpCase | GrpcCase) -> None:
    if isinstance(case, GrpcCase):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await case.call(world)
        assert info.value.code() == case.code, info.value.details()
        assert case.names in (info.value.details() or "")
        return
    kwargs: dict[str, Any] = {"headers": dict(case.headers)}
    if case.raw_body is not None:
        kwargs["data"] = case.raw_body
        kwargs["headers"].setdefault("Content-Type", "application/json")
    elif case.json_body is not None:
        kwargs["json"] = case.json_body
    async with world.http.request(case.method, world.url(case.path, secured=case.secured), **kwargs) as response:
        text = await response.text()
        assert response.status == case.status, text
        assert response.content_type == "application/json", text
        body = json.loads(text)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == case.code
    message = body["error"]["message"]
    assert isinstance(message, str) and message.strip()
    assert case.names in message, message


# ---- auth: the right token works, probes stay open ----------------------------------------------------------


async def test_right_token_is_accepted(world: World) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with world.http.post(
        world.url("/v1/tasks", secured=True),
        json={"agent_type": "testing", "payload": {"auth": True}},
        headers=headers,
    ) as response:
        assert response.status == 201
        body = await response.json()
    world.acknowledged[body["task_id"]] = {"auth": True}
    async with world.http.get(world.url(f"/v1/tasks/{body['task_id']}", secured=True), headers=headers) as response:
        assert response.status == 200
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    got = await world.secured_stubs.tasks.GetTask(
        tasks_pb2.GetTaskRequest(task_id=body["task_id"]), timeout=5, metadata=metadata
    )
    assert got.task.task_id == body["task_id"]
    status = await world.secured_stubs.monitoring.GetStatus(
        monitoring_pb2.GetStatusRequest(), timeout=5, metadata=metadata
    )
    assert status.database_ok


async def test_probes_metrics_health_and_reflection_stay_open_without_token(
    world: World,
) -> None:
    o = world.secured
    for path in ("/healthz", "/readyz"):
        async with world.http.get(f"http://127.0.0.1:{health_port(o)}{path}") as response:
            assert response.status == 200, path
    async with world.http.get(f"http://127.0.0.1:{metrics_port(o)}/metrics") as response:
        assert response.status == 200
        assert "ai_agents_build_info" in await response.text()
    check = await world.secured_stubs.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    check = await world.secured_stubs.health.Check(
        health_pb2.HealthCheckRequest(service="ai_agents.v1.TaskService"), timeout=5
    )
    assert check.status == health_pb2.HealthCheckResponse.SERVING


# ---- afterwards ---------------------------------------------------------------------------------------------


async def test_zz_still_serving_and_nothing_acknowledged_is_lost(world: World) -> None:
    """Runs last in the module: every bad input above has been thrown at the same two orchestrators."""
    for o in (world.limits, world.secured):
        async with world.http.get(f"http://127.0.0.1:{health_port(o)}/readyz") as response:
            assert response.status == 200
    async with world.http.get(world.url("/v1/status")) as response:
        assert response.status == 200 and (await response.json())["database_ok"] is True
    check = await world.stubs.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert check.status == health_pb2.HealthCheckResponse.SERVING

    assert len(world.acknowledged) >= 6
    for task_id, payload in world.acknowledged.items():
        async with world.http.get(world.url(f"/v1/tasks/{task_id}")) as response:
            assert response.status == 200, task_id
            assert (await response.json())["payload"] == payload
        got = await world.stubs.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=task_id), timeout=5)
        assert got.task.task_id == task_id
    # Rejected requests created nothing: the store holds exactly the acknowledged tasks.
    listed: list[str] = []
    token = ""
    for _ in range(100):  # pages are bounded in bytes too: follow the token
        page = await world.stubs.tasks.ListTasks(
            tasks_pb2.ListTasksRequest(page_size=1000, page_token=token), timeout=5
        )
        listed.extend(t.task_id for t in page.tasks)
        token = page.next_page_token
        if not token:
            break
    assert sorted(listed) == sorted(world.acknowledged)
    # A fresh submission still works on both transports.
    fresh = await world.stubs.tasks.SubmitTask(tasks_pb2.SubmitTaskRequest(agent_type=CODING), timeout=5)
    assert fresh.created
    async with world.http.post(world.url("/v1/tasks"), json={"agent_type": "discovery"}) as response:
        assert response.status == 201
