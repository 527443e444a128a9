"""Hostile input (issue 11): a payload is accepted only if every hop carries it, and one task never takes a fleet down.

Each test replays an attack that once worked: a payload nested one level too deep killed every agent of its
type; rows no agent could decode dead-lettered the innocent tasks leased with them and broke GetTask/ListTasks;
NaN, 1e999, huge integers, NUL and lone surrogates answered 500; an identical retry of {"n": 1e23} answered 409.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from ai_agents.client import OrchestratorClient, UndecodableLeases, UndecodableResponse, submit_request
from ai_agents.client._lenient import decode_lease_response
from ai_agents.config import OrchestratorSettings
from ai_agents.convert import TASK_STATE, dict_to_struct, struct_to_dict
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.orchestrator.validation import MAX_DECODABLE_DEPTH
from ai_agents.serving.identity import CREDENTIAL_METADATA
from ai_agents.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    common_pb2,
    messaging_pb2,
    messaging_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from waits import assert_eventually_async

from ._api_support import metrics_port, rpc_error, scrape
from ._fleet_support import (
    AgentProcesses,
    OrchestratorFactory,
    agent_credential,
    as_agent,
    grpc_target,
    http_base,
)

pytestmark = pytest.mark.timeout(180)

TESTING = common_pb2.AGENT_TYPE_TESTING


def nested_objects(levels: int) -> dict[str, Any]:
    """{"a": {"a": ... 1}}: `levels` objects, the outermost included."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value  # type: ignore[no-any-return]


def nested_arrays(levels: int) -> dict[str, Any]:
    """{"k": [[...[1]...]]}: one object holding `levels` arrays."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return {"k": value}


def agent_metadata(agent_id: str, agent_type: str = "testing") -> tuple[tuple[str, str], ...]:
    """Call metadata of one agent, for raw stubs: agent RPCs need the credential of the agent they name."""
    return ((CREDENTIAL_METADATA, agent_credential(agent_id, agent_type)),)


def survives_a_lease(payload: dict[str, Any]) -> bool:
    """Whether a payload survives the deepest hop: built into a LeaseTasksResponse and parsed back by protobuf."""
    try:
        struct = dict_to_struct(payload)
        task = tasks_pb2.Task(task_id="t", payload=struct)
        data = tasks_pb2.LeaseTasksResponse(leases=[tasks_pb2.TaskLease(task=task, lease_token=1)]).SerializeToString()
        tasks_pb2.LeaseTasksResponse.FromString(data)
    except (DecodeError, ValueError, RecursionError):
        return False
    return True


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def post_raw(http: aiohttp.ClientSession, orchestrator: Orchestrator, body: bytes) -> tuple[int, Any]:
    async with http.post(
        http_base(orchestrator) + "/v1/tasks", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        return response.status, await response.json()


def error_of(status: int, body: Any) -> str:
    assert status == 400, f"expected 400, got {status}: {body}"
    assert body["error"]["code"] == "invalid_argument", body
    return str(body["error"]["message"])


# ---- the limit itself -------------------------------------------------------------------------------------


def test_depth_limit_is_the_deepest_payload_protobuf_decodes_inside_a_lease() -> None:
    # Measured, not assumed: if protobuf's recursion limit or the wrapper levels change, this fails.
    assert survives_a_lease(nested_objects(MAX_DECODABLE_DEPTH))
    assert not survives_a_lease(nested_objects(MAX_DECODABLE_DEPTH + 1))
    # Arrays cost fewer protobuf levels than objects: the JSON limit is the objects' one.
    assert survives_a_lease(nested_arrays(MAX_DECODABLE_DEPTH))
    assert not survives_a_lease(nested_arrays(48)), "48 arrays under an object exceed protobuf's limit"
    bound = OrchestratorSettings.model_fields["max_payload_depth"]
    assert bound.default == MAX_DECODABLE_DEPTH
    assert any(getattr(m, "le", None) == MAX_DECODABLE_DEPTH for m in bound.metadata), "the setting's upper bound"


async def test_a_payload_one_level_too_deep_is_refused_by_both_apis_naming_the_limit(
    start_orchestrator: OrchestratorFactory, http: aiohttp.ClientSession
) -> None:
    orchestrator = await start_orchestrator()
    too_deep = nested_objects(MAX_DECODABLE_DEPTH + 1)
    body = json.dumps({"agent_type": "testing", "payload": too_deep}).encode()
    message = error_of(*await post_raw(http, orchestrator, body))
    assert "nested deeper than 32 levels" in message and message.startswith("payload.a.a."), message

    async with await OrchestratorClient.connect(grpc_target(orchestrator), timeout=10) as client:
        err = await rpc_error(client.submit_task("testing", too_deep))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "payload.a.a." in str(err.details()) and "nested deeper than 32 levels" in str(err.details())
        # The deepest payload allowed decodes in a SubmitTasks call too (the client's default for a submit).
        submissions = [tasks_pb2.TaskSubmission(task=submit_request("testing", nested_objects(MAX_DECODABLE_DEPTH)))]
        (outcome,) = await client.submit_tasks(submissions)
        assert (outcome.code, outcome.response.created) == (0, True), outcome.message
        # Results and message bodies pass the same door.
        await client.submit_task("testing", {})
        agent = as_agent(client, "deep-1", "testing")
        await agent.register_agent(agent_id="deep-1", agent_type="testing", capacity=1)
        [lease] = await agent.lease_tasks(agent_id="deep-1", agent_type="testing", max_tasks=1, wait_seconds=0)
        err = await rpc_error(agent.complete_task(lease.task.task_id, lease.lease_token, too_deep))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "result.a." in str(err.details())
        err = await rpc_error(client.broadcast_message(sender="x", agent_type="testing", topic="t", body=too_deep))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "body.a." in str(err.details())
        assert (await client.list_tasks()).tasks[0].state == tasks_pb2.TASK_STATE_LEASED, "nothing else stored"


async def test_the_depth_limit_is_configurable(
    start_orchestrator: OrchestratorFactory, http: aiohttp.ClientSession
) -> None:
    orchestrator = await start_orchestrator(max_payload_depth=4)
    accepted = json.dumps({"agent_type": "testing", "payload": nested_objects(4)}).encode()
    assert (await post_raw(http, orchestrator, accepted))[0] == 201
    refused = json.dumps({"agent_type": "testing", "payload": {"x": [[[[1]]]]}}).encode()
    assert error_of(*await post_raw(http, orchestrator, refused)) == "payload.x[0][0][0]: nested deeper than 4 levels"
    with pytest.raises(ValueError, match="max_payload_depth"):
        OrchestratorSettings(max_payload_depth=MAX_DECODABLE_DEPTH + 1)


async def test_the_deepest_accepted_payload_is_delivered_to_and_completed_by_a_real_agent(
    start_orchestrator: OrchestratorFactory, agents: AgentProcesses, http: aiohttp.ClientSession
) -> None:
    orchestrator = await start_orchestrator()
    target = grpc_target(orchestrator)
    agent = agents.start("testing", target)
    # 32 levels each: the payload object, then 31 objects or 31 arrays.
    deepest = {
        "objects": nested_objects(MAX_DECODABLE_DEPTH - 1),
        "arrays": nested_arrays(MAX_DECODABLE_DEPTH - 1)["k"],
    }
    status, body = await post_raw(
        http, orchestrator, json.dumps({"agent_type": "testing", "payload": deepest}).encode()
    )
    assert status == 201, body
    async with await OrchestratorClient.connect(target, timeout=10) as client:
        via_grpc = (await client.submit_task("testing", nested_objects(MAX_DECODABLE_DEPTH))).task
        for task_id in (body["task_id"], via_grpc.task_id):

            async def succeeded(task_id: str = task_id) -> None:
                task = await client.get_task(task_id)
                assert task.state == tasks_pb2.TASK_STATE_SUCCEEDED, (TASK_STATE.to_str(task.state), task.error)

            await assert_eventually_async(
                succeeded, timeout_sec=30, message=f"task {task_id} was not completed by the agent"
            )
    async with http.get(f"{http_base(orchestrator)}/v1/tasks/{body['task_id']}") as response:
        assert (await response.json())["payload"] == deepest, "the payload came back unchanged"
    assert agents.procs[agent].poll() is None, "the agent is still running"


# ---- poison rows stored before the door existed -----------------------------------------------------------

POISON = {
    # Too deep for protobuf to build a Struct at all.
    "objects-34": nested_objects(34),
    # Buildable, but no agent can parse it inside a LeaseTasksResponse.
    "objects-33": nested_objects(33),
    "arrays-49": nested_arrays(49),
    # Past a double's range: Struct refuses it.
    "int-1e309": {"n": 10**309},
}


async def insert_poison(dsn: str, agent_type: str) -> dict[str, str]:
    """Rows written straight into PostgreSQL, bypassing the door, as data from an older version would be."""
    conn = await asyncpg.connect(dsn)
    try:
        ids = {}
        for name, payload in POISON.items():
            task_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO tasks (task_id, agent_type, state, payload, max_attempts) "
                "VALUES ($1, $2, 'queued', $3::jsonb, 3)",
                task_id,
                agent_type,
                json.dumps(payload),
            )
            ids[name] = str(task_id)
        return ids
    finally:
        await conn.close()


async def test_poison_rows_fail_alone_innocent_tasks_succeed_and_every_agent_survives(
    start_orchestrator: OrchestratorFactory,
    agents: AgentProcesses,
    dsn: str,
    http: aiohttp.ClientSession,
) -> None:
    orchestrator = await start_orchestrator()
    target = grpc_target(orchestrator)
    async with await OrchestratorClient.connect(target, timeout=10) as client:
        # Poison and innocent tasks queued together, before any agent runs, so they are leased in one batch.
        poison = await insert_poison(dsn, "testing")
        innocent = [(await client.submit_task("testing", {"i": i})).task.task_id for i in range(3)]
        fleet = [agents.start("testing", target, AI_AGENTS_CONCURRENCY="8") for _ in range(2)]
        pids = {agent_id: agents.procs[agent_id].pid for agent_id in fleet}

        async def all_finished() -> None:
            for agent_id in fleet:
                assert agents.procs[agent_id].poll() is None, f"{agent_id} died:\n{agents.log(agent_id)[-3000:]}"
            states = {t: TASK_STATE.to_str((await client.get_task(t)).state) for t in [*innocent, *poison.values()]}
            assert all(state not in ("queued", "leased") for state in states.values()), states

        await assert_eventually_async(all_finished, timeout_sec=60)
        for task_id in innocent:
            task = await client.get_task(task_id)
            assert task.state == tasks_pb2.TASK_STATE_SUCCEEDED, f"innocent task {task_id}: {task.error}"
            assert task.attempts == 1, "delivered the first time, not after a lease expiry"
        for name, task_id in poison.items():
            task = await client.get_task(task_id)  # GetTask answers for every poison row
            assert task.state == tasks_pb2.TASK_STATE_FAILED, f"{name}: {TASK_STATE.to_str(task.state)}"
            assert task.error.startswith("undeliverable: payload"), f"{name}: {task.error!r}"
            assert task.attempts == 1, f"{name} was failed at its first lease, not retried"
        assert "nested deeper than 32 levels" in (await client.get_task(poison["objects-34"])).error
        assert "overflows a double" in (await client.get_task(poison["int-1e309"])).error

        for agent_id, pid in pids.items():
            assert agents.procs[agent_id].poll() is None, f"agent {agent_id} died:\n{agents.log(agent_id)[-3000:]}"
            assert agents.procs[agent_id].pid == pid
        # Still leasing: one more task of the type is completed after the poison.
        last = (await client.submit_task("testing", {"after": "poison"})).task.task_id

        async def last_succeeded() -> None:
            assert (await client.get_task(last)).state == tasks_pb2.TASK_STATE_SUCCEEDED

        await assert_eventually_async(
            last_succeeded, timeout_sec=30, message="the agents stopped leasing after the poison"
        )

        # Reads over the poison rows answer: gRPC shows placeholders, HTTP the stored JSON.
        listed = await client.list_tasks(agent_type="testing", page_size=100)
        assert len(listed.tasks) == len(poison) + len(innocent) + 1
        shown = struct_to_dict((await client.get_task(poison["int-1e309"])).payload)
        assert shown == {"n": "<unencodable: integer of 1027 bits overflows a double>"}
        deep = json.dumps(struct_to_dict((await client.get_task(poison["objects-34"])).payload))
        assert "<unencodable: nested deeper than 32 levels>" in deep
    base = http_base(orchestrator)
    for task_id in poison.values():
        async with http.get(f"{base}/v1/tasks/{task_id}") as response:
            assert response.status == 200, await response.text()
    async with http.get(f"{base}/v1/tasks?agent_type=testing") as response:
        assert response.status == 200 and len((await response.json())["tasks"]) == len(listed.tasks)


async def test_a_lease_batch_never_outgrows_the_message_limit(
    start_orchestrator: OrchestratorFactory, http: aiohttp.ClientSession
) -> None:
    """Leases that would not fit in one response go back to the queue (attempt uncounted) instead of expiring
    unseen after the server refuses to send; a task whose lease alone is over the limit is failed with the reason."""
    limit = 256 * 1024
    orchestrator = await start_orchestrator(max_message_bytes=limit, max_payload_bytes=120 * 1024)
    async with await OrchestratorClient.connect(grpc_target(orchestrator), timeout=10) as client:
        # Queued first, so it heads the batch. JSON of 100 KB (so over HTTP), protobuf of ~550 KB: every number
        # becomes a Value of its own.
        body = json.dumps({"agent_type": "security", "payload": {"numbers": [1] * 50_000}}).encode()
        status, created = await post_raw(http, orchestrator, body)
        assert status == 201, created
        numbers = created["task_id"]
        big = [(await client.submit_task("security", {"text": "x" * 60_000, "i": i})).task.task_id for i in range(8)]
        agent = as_agent(client, "big-1", "security")
        await agent.register_agent(agent_id="big-1", agent_type="security", capacity=16)

        first = await agent.lease_tasks(agent_id="big-1", agent_type="security", max_tasks=16, wait_seconds=0)
        sent = {lease.task.task_id for lease in first}
        assert 0 < len(sent) < len(big), f"{len(sent)} leases of ~60 KB under a {limit}-byte limit"
        assert sum(lease.ByteSize() for lease in first) < limit
        for task_id in set(big) - sent:
            task = await client.get_task(task_id)
            assert task.state == tasks_pb2.TASK_STATE_QUEUED and task.attempts == 0, task_id
        async with http.get(f"{http_base(orchestrator)}/v1/tasks/{numbers}") as response:
            failed = await response.json()
        assert failed["state"] == "failed", failed["state"]
        assert "cannot be sent" in failed["error"] and f"{limit - 1024}-byte message limit" in failed["error"], failed

        # The rest are delivered by later leases, each answer within the limit.
        for lease in first:
            await agent.complete_task(lease.task.task_id, lease.lease_token, {})
        while len(sent) < len(big):
            more = await agent.lease_tasks(agent_id="big-1", agent_type="security", max_tasks=16, wait_seconds=0)
            assert more, f"{len(big) - len(sent)} tasks left queued"
            for lease in more:
                sent.add(lease.task.task_id)
                await agent.complete_task(lease.task.task_id, lease.lease_token, {})
        for task_id in big:
            task = await client.get_task(task_id)
            assert task.state == tasks_pb2.TASK_STATE_SUCCEEDED and task.attempts == 1, task_id


# ---- the agent's own defence --------------------------------------------------------------------------------


def test_the_agent_decodes_each_lease_alone_and_names_the_one_it_cannot() -> None:
    deep = struct_pb2.Struct()
    deep.update(nested_objects(33))  # what an orchestrator without the check used to send
    good = tasks_pb2.TaskLease(task=tasks_pb2.Task(task_id="good-1"), lease_token=5)
    bad = tasks_pb2.TaskLease(task=tasks_pb2.Task(task_id="bad-1", payload=deep), lease_token=7)
    data = tasks_pb2.LeaseTasksResponse(leases=[good, bad, good]).SerializeToString()
    with pytest.raises(DecodeError):
        tasks_pb2.LeaseTasksResponse.FromString(data)  # the attack: the whole batch was lost

    batch = decode_lease_response(data)
    assert [lease.task.task_id for lease in batch.leases] == ["good-1", "good-1"]
    [undecodable] = batch.undecodable
    assert (undecodable.task_id, undecodable.lease_token) == ("bad-1", 7)
    assert "MaxDepth" in undecodable.reason or "depth" in undecodable.reason.lower(), undecodable.reason
    assert UndecodableLeases(batch).batch is batch
    with pytest.raises(DecodeError):
        decode_lease_response(b"\x0a\xff\xff")  # a corrupt envelope is an error, not an empty batch


class FaultyHop(grpc.GenericRpcHandler):
    """A gRPC hop between a real client or agent and the real orchestrator: it relays every call byte for byte,
    metadata included, except for the faults armed on it, each once (what an older orchestrator or a bad network sent).
    """

    def __init__(self, upstream: grpc.aio.Channel) -> None:
        self._upstream = upstream
        # Appended to the next LeaseTasks answer: appending a repeated field's bytes appends an element.
        self.extra_lease: bytes | None = None
        # The next LeaseTasks call is refused with this status, without reaching the orchestrator.
        self.refuse_lease: grpc.StatusCode | None = None
        # Methods (by short name) whose next answer is replaced with bytes that are not a protobuf message.
        self.corrupt: set[str] = set()

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method = handler_call_details.method
        name = method.rsplit("/", 1)[-1]

        async def relay(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            if name == "LeaseTasks" and self.refuse_lease is not None:
                code, self.refuse_lease = self.refuse_lease, None
                await context.abort(code, "refused by the faulty hop")
            # The caller's metadata goes on too (its agent credential, its API token); the hop's channel names itself.
            metadata = tuple((k, v) for k, v in context.invocation_metadata() or () if k != "user-agent")
            try:
                response: bytes = await self._upstream.unary_unary(method)(
                    request, timeout=context.time_remaining(), metadata=metadata
                )
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
                raise
            if name in self.corrupt:
                self.corrupt.discard(name)
                return b"\x0a\xff\xff\xff"  # a length-delimited field 1 that claims more bytes than follow
            if name == "LeaseTasks" and self.extra_lease is not None:
                response, self.extra_lease = response + self.extra_lease, None
            return response

        return grpc.unary_unary_rpc_method_handler(relay)


@pytest.fixture
async def faulty_hop(orchestrator: Orchestrator) -> AsyncIterator[tuple[FaultyHop, str]]:
    """A FaultyHop in front of the test's orchestrator, and the gRPC target that reaches the orchestrator through it."""
    upstream = grpc.aio.insecure_channel(grpc_target(orchestrator))
    hop = FaultyHop(upstream)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((hop,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield hop, f"ipv4:127.0.0.1:{port}"
    finally:
        await server.stop(None)
        await upstream.close()


async def test_an_agent_fails_a_lease_it_cannot_decode_alone_and_keeps_working(
    orchestrator: Orchestrator, agents: AgentProcesses, faulty_hop: tuple[FaultyHop, str]
) -> None:
    hop, through_hop = faulty_hop
    agent_id = "documentation-poisoned"
    async with await OrchestratorClient.connect(grpc_target(orchestrator), timeout=10) as client:
        # The victim: leased for the agent, then handed to it with a payload it cannot parse.
        victim = (await client.submit_task("documentation", {"victim": True})).task.task_id
        as_victim = as_agent(client, agent_id, "documentation")
        await as_victim.register_agent(agent_id=agent_id, agent_type="documentation", capacity=1)
        [held] = await as_victim.lease_tasks(agent_id=agent_id, agent_type="documentation", max_tasks=1, wait_seconds=0)
        deep = struct_pb2.Struct()
        deep.update(nested_objects(MAX_DECODABLE_DEPTH + 1))
        poison = tasks_pb2.TaskLease(task=tasks_pb2.Task(task_id=victim, payload=deep), lease_token=held.lease_token)
        hop.extra_lease = tasks_pb2.LeaseTasksResponse(leases=[poison]).SerializeToString()
        # A refusal that is not transient comes first: the agent used to exit on it.
        hop.refuse_lease = grpc.StatusCode.INVALID_ARGUMENT

        agents.start("documentation", through_hop, agent_id=agent_id)
        innocent = [(await client.submit_task("documentation", {"i": i})).task.task_id for i in range(3)]

        async def all_finished() -> None:
            assert agents.procs[agent_id].poll() is None, f"the agent died:\n{agents.log(agent_id)[-3000:]}"
            states = {t: TASK_STATE.to_str((await client.get_task(t)).state) for t in [victim, *innocent]}
            assert all(state not in ("queued", "leased") for state in states.values()), states

        await assert_eventually_async(all_finished, timeout_sec=60)
        assert hop.refuse_lease is None and hop.extra_lease is None, "both faults reached the agent"
        failed = await client.get_task(victim)
        assert failed.state == tasks_pb2.TASK_STATE_FAILED, TASK_STATE.to_str(failed.state)
        assert failed.error.startswith("the agent could not decode the task"), failed.error
        assert failed.attempts == 1, "failed for good, not retried on other agents"
        for task_id in innocent:
            assert (await client.get_task(task_id)).state == tasks_pb2.TASK_STATE_SUCCEEDED
    assert agents.procs[agent_id].poll() is None, f"the agent died:\n{agents.log(agent_id)[-3000:]}"


async def test_a_result_the_orchestrator_refuses_fails_the_task_at_once_with_the_reason(
    orchestrator: Orchestrator, agents: AgentProcesses
) -> None:
    # The simulate handler reports float(payload["test_duration_seconds"]): the string "nan" becomes NaN.
    target = grpc_target(orchestrator)
    agent_id = agents.start("testing", target)
    async with await OrchestratorClient.connect(target, timeout=10) as client:
        task_id = (await client.submit_task("testing", {"test_duration_seconds": "nan"}, max_attempts=3)).task.task_id

        async def failed() -> None:
            task = await client.get_task(task_id)
            assert task.state == tasks_pb2.TASK_STATE_FAILED, (TASK_STATE.to_str(task.state), task.error)

        # Before: the refusal was logged as a lost outcome and the task ran again after each lease expiry.
        await assert_eventually_async(failed, timeout_sec=20)
        task = await client.get_task(task_id)
        assert task.error.startswith("the orchestrator refused the handler's result: result.test_duration_seconds"), (
            task.error
        )
        assert task.attempts == 1
    assert agents.procs[agent_id].poll() is None


async def test_the_client_raises_a_typed_error_for_a_response_it_cannot_decode(
    orchestrator: Orchestrator, faulty_hop: tuple[FaultyHop, str]
) -> None:
    hop, through_hop = faulty_hop
    async with await OrchestratorClient.connect(through_hop, timeout=10) as client:
        task_id = (await client.submit_task("coding", {"x": 1})).task.task_id
        agent = as_agent(client, "w-1", "coding")
        await agent.register_agent(agent_id="w-1", agent_type="coding", capacity=1)  # only agents lease
        hop.corrupt = {"GetTask", "LeaseTasks"}
        with pytest.raises(UndecodableResponse, match="GetTask"):  # it was an AttributeError on None
            await client.get_task(task_id)
        with pytest.raises(UndecodableResponse, match="LeaseTasks"):
            await agent.lease_tasks(agent_id="w-1", agent_type="coding", max_tasks=1, wait_seconds=0)
        assert (await client.get_task(task_id)).task_id == task_id, "the next answer decodes again"


# ---- numbers and text no hop can carry ---------------------------------------------------------------------


def task_body(payload_json: str, **extra: str) -> bytes:
    fields = "".join(f', "{k}": {v}' for k, v in extra.items())
    return f'{{"agent_type": "coding", "payload": {payload_json}{fields}}}'.encode()


HTTP_CASES = [
    pytest.param(task_body('{"n": NaN}'), "NaN", id="nan"),
    pytest.param(task_body('{"n": Infinity}'), "Infinity", id="infinity"),
    pytest.param(task_body('{"n": -Infinity}'), "-Infinity", id="minus-infinity"),
    pytest.param(task_body('{"n": 1e999}'), "1e999", id="float-overflow"),
    pytest.param(task_body('{"n": ' + "9" * 5000 + "}"), "5000 digits", id="5000-digit-int"),
    pytest.param(task_body('{"n": 1' + "0" * 309 + "}"), "payload.n: integer", id="int-1e309"),
    pytest.param(task_body('{"n": 9007199254740993}'), "payload.n: integer", id="int-over-2-53"),
    pytest.param(task_body('{"s": "a\\u0000b"}'), "payload.s: contains U+0000", id="nul-in-value"),
    pytest.param(task_body('{"a\\u0000": 1}'), "key contains U+0000", id="nul-in-key"),
    pytest.param(task_body('{"s": "\\ud800"}'), "payload.s: contains a lone surrogate", id="surrogate-in-value"),
    pytest.param(task_body('{"\\udfff": 1}'), "key contains a lone surrogate", id="surrogate-in-key"),
    pytest.param(task_body("{}", idempotency_key='"k\\u0000"'), "idempotency_key", id="nul-in-idempotency-key"),
    pytest.param(task_body("{}", idempotency_key='"\\ud800"'), "idempotency_key", id="surrogate-in-idempotency-key"),
    pytest.param(task_body("{}", priority="NaN"), "NaN", id="nan-priority"),
]


@pytest.mark.parametrize(("body", "names"), HTTP_CASES)
async def test_http_refuses_what_no_hop_can_carry_with_400(
    start_orchestrator: OrchestratorFactory, http: aiohttp.ClientSession, body: bytes, names: str
) -> None:
    orchestrator = await start_orchestrator()
    message = error_of(*await post_raw(http, orchestrator, body))
    assert names in message, message
    assert "Traceback" not in message


async def test_http_refuses_bad_text_in_headers_and_queries_with_400(
    start_orchestrator: OrchestratorFactory, http: aiohttp.ClientSession
) -> None:
    orchestrator = await start_orchestrator()
    assert orchestrator.http is not None
    # A non-UTF-8 Idempotency-Key header: sent on a raw socket, as no HTTP client library lets you.
    body = task_body("{}")
    reader, writer = await asyncio.open_connection("127.0.0.1", orchestrator.http.port)
    try:
        writer.write(
            b"POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Idempotency-Key: k\xff\xfe\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        raw = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), raw[:200]
    assert "Idempotency-Key header" in json.loads(payload)["error"]["message"]

    base = http_base(orchestrator)
    for query, names in (
        ("/v1/tasks?page_token=%00", "page_token"),
        ("/v1/tasks?page_token=%ED%A0%80", "page_token"),
        ("/v1/agents?page_token=a%00", "page_token"),
        ("/v1/tasks?agent_type=%00", "agent_type"),
    ):
        async with http.get(base + query) as response:
            status, answer = response.status, await response.json()
        assert names in error_of(status, answer), (query, answer)

    # None of it was a server error, and nothing was stored.
    samples = await scrape(metrics_port(orchestrator))
    answered = [dict(labels)["status"] for name, labels in samples if name == "ai_agents_http_requests_total"]
    assert "400" in answered and not [status for status in answered if status.startswith("5")], answered
    async with http.get(base + "/v1/tasks") as response:
        assert (await response.json())["tasks"] == []


async def test_grpc_refuses_what_no_hop_can_carry_with_invalid_argument(
    start_orchestrator: OrchestratorFactory,
) -> None:
    orchestrator = await start_orchestrator()
    channel = grpc.aio.insecure_channel(grpc_target(orchestrator))
    tasks = tasks_pb2_grpc.TaskServiceStub(channel)
    agents = agents_pb2_grpc.AgentServiceStub(channel)
    messaging = messaging_pb2_grpc.MessagingServiceStub(channel)
    try:
        g1 = agent_metadata("g-1")
        await agents.RegisterAgent(
            agents_pb2.RegisterAgentRequest(agent_id="g-1", agent_type=TESTING, capacity=1), metadata=g1
        )
        await tasks.SubmitTask(tasks_pb2.SubmitTaskRequest(agent_type=TESTING))
        lease = (
            await tasks.LeaseTasks(
                tasks_pb2.LeaseTasksRequest(agent_id="g-1", agent_type=TESTING, max_tasks=1), metadata=g1
            )
        ).leases[0]
        held = {"task_id": lease.task.task_id, "lease_token": lease.lease_token}

        def struct_with(value: Any) -> struct_pb2.Struct:
            struct = struct_pb2.Struct()
            struct.fields["n"].number_value = value
            return struct

        def submit(**fields: Any) -> Any:
            return tasks.SubmitTask(tasks_pb2.SubmitTaskRequest(agent_type=TESTING, **fields))

        def register(agent_id: str, **fields: Any) -> Any:
            request = agents_pb2.RegisterAgentRequest(agent_id=agent_id, agent_type=TESTING, **fields)
            return agents.RegisterAgent(request, metadata=agent_metadata(agent_id))

        def broadcast(**fields: Any) -> Any:
            return messaging.BroadcastMessage(messaging_pb2.BroadcastMessageRequest(**fields))

        nan, inf = struct_with(float("nan")), struct_with(float("inf"))
        cases: list[tuple[str, Any]] = [
            ("payload.n: nan", submit(payload=nan)),
            ("payload.n: inf", submit(payload=inf)),
            ("payload.s: contains U+0000", submit(payload=dict_to_struct({"s": "\x00"}))),
            ("idempotency_key: contains U+0000", submit(idempotency_key="k\x00")),
            ("page_token: contains U+0000", tasks.ListTasks(tasks_pb2.ListTasksRequest(page_token="\x00"))),
            ("page_token: contains U+0000", agents.ListAgents(agents_pb2.ListAgentsRequest(page_token="a\x00"))),
            ("agent_id", agents.GetAgent(agents_pb2.GetAgentRequest(agent_id="g-1\x00"))),
            ("agent_id", agents.GetAgent(agents_pb2.GetAgentRequest(agent_id="g-1\n"))),
            ("labels", register(agent_id="g-2", labels={"k": "v\x00"})),
            ("labels", agents.CreateAgent(agents_pb2.CreateAgentRequest(agent_type=TESTING, labels={"k\x00": "v"}))),
            ("address", register(agent_id="g-3", address="\x00")),
            ("topic", broadcast(sender="s", topic="t\x00")),
            ("sender", broadcast(sender="\x00", topic="t")),
            ("body.n: nan", broadcast(sender="s", topic="t", body=nan)),
            (
                "message: contains U+0000",
                tasks.UpdateTaskProgress(
                    tasks_pb2.UpdateTaskProgressRequest(progress=0.5, message="\x00", **held), metadata=g1
                ),
            ),
            (
                "error: contains U+0000",
                tasks.FailTask(tasks_pb2.FailTaskRequest(error="boom\x00", **held), metadata=g1),
            ),
            ("result.n: nan", tasks.CompleteTask(tasks_pb2.CompleteTaskRequest(result=nan, **held), metadata=g1)),
        ]
        for names, call in cases:
            err = await rpc_error(call)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (names, err.code(), err.details())
            assert names in str(err.details()), (names, err.details())
        # The lease survived every refused report, and nothing bad was stored.
        still = (await tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=lease.task.task_id))).task
        assert still.state == tasks_pb2.TASK_STATE_LEASED
        assert len((await tasks.ListTasks(tasks_pb2.ListTasksRequest())).tasks) == 1
    finally:
        await channel.close()


# ---- idempotency ------------------------------------------------------------------------------------------


async def test_an_identical_idempotent_retry_of_1e23_returns_the_same_task(
    start_orchestrator: OrchestratorFactory, http: aiohttp.ClientSession
) -> None:
    orchestrator = await start_orchestrator()
    body = task_body('{"n": 1e23, "m": 0.1}', idempotency_key='"retry-1e23"')
    first_status, first = await post_raw(http, orchestrator, body)
    assert first_status == 201, first
    again_status, again = await post_raw(http, orchestrator, body)
    assert again_status == 200, again
    assert again["task_id"] == first["task_id"]
    other_status, other = await post_raw(http, orchestrator, task_body('{"n": 1e22}', idempotency_key='"retry-1e23"'))
    assert other_status == 409 and other["error"]["code"] == "already_exists", other

    async with await OrchestratorClient.connect(grpc_target(orchestrator), timeout=10) as client:
        response = await client.submit_task("coding", {"n": 1e23, "m": 0.1}, idempotency_key="retry-1e23")
        assert not response.created and response.task.task_id == first["task_id"]
