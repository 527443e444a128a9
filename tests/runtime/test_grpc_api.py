"""gRPC conformance: every RPC of every ai_agents.v1 service, health and reflection, against a real orchestrator."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.convert import AGENT_TYPE, dict_to_struct
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.v1 import agents_pb2, common_pb2, messaging_pb2, tasks_pb2
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ._api_support import connect, rpc_error
from ._fleet_support import OrchestratorFactory, as_agent, grpc_target

_STATUS = {status.value[0]: status for status in grpc.StatusCode}
SERVICES = {
    "ai_agents.v1.TaskService",
    "ai_agents.v1.AgentService",
    "ai_agents.v1.MessagingService",
    "ai_agents.v1.MonitoringService",
    "ai_agents.v1.ResourceService",
}


@pytest.fixture
async def fast_retry(
    start_orchestrator: OrchestratorFactory,
) -> AsyncIterator[OrchestratorClient]:
    """An orchestrator whose retryable failures are redelivered at once (no backoff), and a client for it."""
    orchestrator = await start_orchestrator(retry_backoff_seconds=0)
    async with await connect(orchestrator) as c:
        yield c


async def registered(client: OrchestratorClient, agent_id: str, agent_type: str) -> OrchestratorClient:
    """A registered agent: `client`'s channel with that agent's credential (agent RPCs need both)."""
    agent = as_agent(client, agent_id, agent_type)
    await agent.register_agent(agent_id=agent_id, agent_type=agent_type, capacity=1)
    return agent


async def lease_one(client: OrchestratorClient, agent_type: str = "coding", agent_id: str = "w-1") -> Any:
    agent = await registered(client, agent_id, agent_type)
    leases = await agent.lease_tasks(agent_id=agent_id, agent_type=agent_type, max_tasks=1, wait_seconds=0)
    assert len(leases) == 1, leases
    return leases[0]


def payload_of(task: tasks_pb2.Task) -> dict[str, Any]:
    return json_format.MessageToDict(task.payload)


# ---- TaskService ------------------------------------------------------------------------------------------


async def test_submit_and_get_with_idempotency(client: OrchestratorClient) -> None:
    first = await client.submit_task("security", {"repo": "a/b", "n": 3}, idempotency_key="k-1", priority=7)
    assert first.created
    task = first.task
    assert uuid.UUID(task.task_id)
    assert task.state == tasks_pb2.TASK_STATE_QUEUED
    assert task.agent_type == common_pb2.AGENT_TYPE_SECURITY
    assert payload_of(task) == {"repo": "a/b", "n": 3}
    assert (task.priority, task.idempotency_key, task.attempts, task.max_attempts) == (
        7,
        "k-1",
        0,
        3,
    )
    assert task.HasField("created_at") and not task.HasField("finished_at")

    again = await client.submit_task("security", {"repo": "a/b", "n": 3}, idempotency_key="k-1", priority=7)
    assert not again.created
    assert again.task.task_id == task.task_id

    conflict = await rpc_error(client.submit_task("security", {"repo": "other"}, idempotency_key="k-1"))
    assert conflict.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "idempotency_key" in conflict.details()

    fetched = await client.get_task(task.task_id)
    assert fetched.task_id == task.task_id and payload_of(fetched) == {
        "repo": "a/b",
        "n": 3,
    }
    # Without a key the client generates one: two submissions are two tasks.
    a = await client.submit_task("security", {"repo": "a/b"})
    b = await client.submit_task("security", {"repo": "a/b"})
    assert a.created and b.created and a.task.task_id != b.task.task_id
    assert (await client.submit_task("coding", None, max_attempts=9)).task.max_attempts == 9


async def test_list_filters_and_pagination(client: OrchestratorClient) -> None:
    coding = [(await client.submit_task("coding", {"i": i})).task.task_id for i in range(7)]
    testing = [(await client.submit_task("testing", {"i": i})).task.task_id for i in range(3)]
    for task_id in coding[:2]:
        await client.cancel_task(task_id)

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await client.list_tasks(agent_type="coding", page_size=3, page_token=token)
        pages += 1
        assert len(page.tasks) <= 3
        assert all(t.agent_type == common_pb2.AGENT_TYPE_CODING for t in page.tasks)
        seen += [t.task_id for t in page.tasks]
        token = page.next_page_token
        if not token:
            break
        assert pages < 10, "pagination does not terminate"
    assert pages == 3
    assert seen == coding, "pages cover every task once, oldest first"

    cancelled = await client.list_tasks(agent_type="coding", state="cancelled")
    assert sorted(t.task_id for t in cancelled.tasks) == sorted(coding[:2])
    assert not cancelled.next_page_token
    queued_testing = await client.list_tasks(agent_type="testing", state="queued")
    assert [t.task_id for t in queued_testing.tasks] == testing
    everything = await client.list_tasks()
    assert len(everything.tasks) == 10
    assert len((await client.list_tasks(state="queued")).tasks) == 8


async def test_cancel_queued_and_leased(client: OrchestratorClient) -> None:
    queued = (await client.submit_task("coding", {"x": 1})).task
    cancelled = await client.cancel_task(queued.task_id)
    assert cancelled.state == tasks_pb2.TASK_STATE_CANCELLED and cancelled.HasField("finished_at")

    await client.submit_task("coding", {"x": 2})
    lease = await lease_one(client)
    w1 = as_agent(client, "w-1", "coding")
    assert (await client.cancel_task(lease.task.task_id)).state == tasks_pb2.TASK_STATE_CANCELLED
    # The holder learns it at its next heartbeat and can no longer complete the task.
    beat = await w1.heartbeat("w-1", [(lease.task.task_id, lease.lease_token)], running=1)
    assert list(beat.revoked_task_ids) == [lease.task.task_id] and not beat.reregister
    err = await rpc_error(w1.complete_task(lease.task.task_id, lease.lease_token, {"ok": True}))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await client.get_task(lease.task.task_id)).state == tasks_pb2.TASK_STATE_CANCELLED


async def test_lease_and_complete_with_fencing(client: OrchestratorClient) -> None:
    low = (await client.submit_task("coding", {"p": "low"}, priority=0)).task
    high = (await client.submit_task("coding", {"p": "high"}, priority=10)).task
    await client.submit_task("coding", {"p": "later"}, priority=0)

    t1 = await registered(client, "t-1", "testing")
    w1 = await registered(client, "w-1", "coding")
    assert await t1.lease_tasks(agent_id="t-1", agent_type="testing", max_tasks=5, wait_seconds=0) == []
    leases = await w1.lease_tasks(agent_id="w-1", agent_type="coding", max_tasks=2, wait_seconds=0)
    assert [lease.task.task_id for lease in leases] == [high.task_id, low.task_id], "priority first, then age"
    assert leases[0].lease_token != leases[1].lease_token
    for lease in leases:
        assert lease.task.state == tasks_pb2.TASK_STATE_LEASED
        assert lease.task.lease_owner == "w-1" and lease.task.attempts == 1
        assert lease.task.lease_expires_at.ToDatetime() > lease.task.created_at.ToDatetime()

    lease = leases[0]
    stale = await rpc_error(w1.complete_task(lease.task.task_id, lease.lease_token + 1000, {"r": 1}))
    assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION and "stale" in stale.details()
    done = await w1.complete_task(lease.task.task_id, lease.lease_token, {"summary": "ok", "n": 2})
    assert done.state == tasks_pb2.TASK_STATE_SUCCEEDED
    assert json_format.MessageToDict(done.result) == {"summary": "ok", "n": 2}
    assert done.progress == 1.0 and done.HasField("finished_at") and not done.lease_owner
    twice = await rpc_error(w1.complete_task(lease.task.task_id, lease.lease_token, {"r": 2}))
    assert twice.code() == grpc.StatusCode.FAILED_PRECONDITION and "succeeded" in twice.details()

    w2 = await registered(client, "w-2", "coding")
    rest = await w2.lease_tasks(agent_id="w-2", agent_type="coding", max_tasks=10, wait_seconds=0)
    assert [payload_of(r.task) for r in rest] == [{"p": "later"}]


def _submission(agent_type: str, payload: dict[str, Any], key: str, **fields: Any) -> Any:
    return tasks_pb2.TaskSubmission(
        task=tasks_pb2.SubmitTaskRequest(
            agent_type=AGENT_TYPE.to_proto(agent_type), payload=dict_to_struct(payload), idempotency_key=key, **fields
        )
    )


async def test_submit_tasks_answers_each_submission_as_submit_task_would(client: OrchestratorClient, dsn: str) -> None:
    taken = await client.submit_task("security", {"repo": "a/b"}, idempotency_key="taken")
    outcomes = await client.submit_tasks(
        [
            _submission("coding", {"n": 1}, "new-1", priority=5),
            _submission("coding", {"n": 1}, "new-1", priority=5),  # the same request again, in the same call
            _submission("security", {"repo": "other"}, "taken"),  # the key names a different request
            _submission("coding", {"n": 2}, "bad-priority", priority=10_000),
            tasks_pb2.TaskSubmission(task=tasks_pb2.SubmitTaskRequest(idempotency_key="no-type")),
            _submission("security", {"repo": "a/b"}, "taken"),  # a retry of an earlier submit
        ]
    )
    codes = [_STATUS[o.code].name for o in outcomes]
    assert codes == ["OK", "OK", "ALREADY_EXISTS", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "OK"], outcomes
    assert "idempotency_key" in outcomes[2].message and "priority" in outcomes[3].message
    assert "agent_type" in outcomes[4].message
    first, again, retried = outcomes[0].response, outcomes[1].response, outcomes[5].response
    # One task for the key, created once; the retry answered with the earlier task.
    assert first.task.task_id == again.task.task_id and sorted([first.created, again.created]) == [False, True]
    assert (first.task.priority, payload_of(first.task)) == (5, {"n": 1})
    assert (retried.task.task_id, retried.created) == (taken.task.task_id, False)
    # Committed before it was acknowledged; the refused ones created nothing.
    conn = await asyncpg.connect(dsn)
    try:
        keys = sorted(r["idempotency_key"] for r in await conn.fetch("SELECT idempotency_key FROM tasks"))
    finally:
        await conn.close()
    assert keys == ["new-1", "taken"]
    assert await client.submit_tasks([]) == []


async def test_submit_tasks_refuses_a_call_over_its_limit(client: OrchestratorClient, dsn: str) -> None:
    over = await rpc_error(client.submit_tasks([_submission("coding", {}, f"k-{n}") for n in range(65)]))
    assert over.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit of 64" in over.details()
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM tasks") == 0, "refused whole: nothing created"
    finally:
        await conn.close()


def _completion(lease: Any, result: dict[str, Any] | None = None, *, token: int | None = None) -> Any:
    return tasks_pb2.TaskCompletion(
        task_id=lease.task.task_id,
        lease_token=lease.lease_token if token is None else token,
        result=dict_to_struct(result or {}),
    )


async def test_complete_tasks_answers_each_completion_as_complete_task_would(client: OrchestratorClient) -> None:
    for n in range(4):
        await client.submit_task("coding", {"n": n})
    w1 = await registered(client, "w-1", "coding")
    first, stale, invalid, finished = await w1.lease_tasks(
        agent_id="w-1", agent_type="coding", max_tasks=4, wait_seconds=0
    )
    await w1.complete_task(finished.task.task_id, finished.lease_token, {"before": True})
    nan = struct_pb2.Struct()
    nan.update({"x": float("nan")})
    unknown = tasks_pb2.TaskCompletion(task_id=str(uuid.uuid4()), lease_token=1)
    outcomes = await w1.complete_tasks(
        [
            _completion(first, {"summary": "ok"}),
            _completion(stale, token=stale.lease_token + 1000),
            tasks_pb2.TaskCompletion(task_id=invalid.task.task_id, lease_token=invalid.lease_token, result=nan),
            _completion(finished),
            unknown,
        ]
    )
    codes = [(o.task_id, _STATUS[o.code].name) for o in outcomes]
    assert codes == [
        (first.task.task_id, "OK"),
        (stale.task.task_id, "FAILED_PRECONDITION"),
        (invalid.task.task_id, "INVALID_ARGUMENT"),
        (finished.task.task_id, "FAILED_PRECONDITION"),
        (unknown.task_id, "NOT_FOUND"),
    ]
    assert "stale" in outcomes[1].message and "result.x" in outcomes[2].message and "succeeded" in outcomes[3].message
    # Committed before it was acknowledged; the refused ones untouched.
    done = await client.get_task(first.task.task_id)
    assert done.state == tasks_pb2.TASK_STATE_SUCCEEDED and json_format.MessageToDict(done.result) == {"summary": "ok"}
    for lease in (stale, invalid):
        assert (await client.get_task(lease.task.task_id)).state == tasks_pb2.TASK_STATE_LEASED
    assert await w1.complete_tasks([]) == []


async def test_complete_tasks_refuses_a_call_over_its_limit_or_naming_a_task_twice(client: OrchestratorClient) -> None:
    await client.submit_task("coding", {})
    w1 = await registered(client, "w-1", "coding")
    (lease,) = await w1.lease_tasks(agent_id="w-1", agent_type="coding", max_tasks=1, wait_seconds=0)
    twice = await rpc_error(w1.complete_tasks([_completion(lease), _completion(lease, {"again": 1})]))
    assert twice.code() == grpc.StatusCode.INVALID_ARGUMENT and "completions[1].task_id" in twice.details()
    many = [tasks_pb2.TaskCompletion(task_id=str(uuid.uuid4()), lease_token=1) for _ in range(65)]
    over = await rpc_error(w1.complete_tasks(many))
    assert over.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit of 64" in over.details()
    # Refused whole: nothing of it was applied.
    assert (await client.get_task(lease.task.task_id)).state == tasks_pb2.TASK_STATE_LEASED


async def test_fail_retryable_requeues_counts_attempts_then_dead_letters(
    fast_retry: OrchestratorClient,
) -> None:
    client = fast_retry
    task = (await client.submit_task("testing", {"flaky": True}, max_attempts=2)).task
    first = await lease_one(client, "testing")
    w1, w2 = as_agent(client, "w-1", "testing"), as_agent(client, "w-2", "testing")
    assert first.task.attempts == 1
    requeued = await w1.fail_task(task.task_id, first.lease_token, "boom 1", retryable=True)
    assert requeued.state == tasks_pb2.TASK_STATE_QUEUED
    assert (requeued.attempts, requeued.error) == (1, "boom 1")
    assert not requeued.HasField("finished_at") and not requeued.lease_owner

    second = await lease_one(client, "testing", agent_id="w-2")
    assert second.task.task_id == task.task_id and second.task.attempts == 2
    assert second.lease_token > first.lease_token
    stale = await rpc_error(w1.fail_task(task.task_id, first.lease_token, "late", retryable=True))
    assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION

    dead = await w2.fail_task(task.task_id, second.lease_token, "boom 2", retryable=True)
    assert dead.state == tasks_pb2.TASK_STATE_DEAD_LETTER
    assert (dead.attempts, dead.error) == (2, "boom 2") and dead.HasField("finished_at")
    w3 = await registered(client, "w-3", "testing")
    assert await w3.lease_tasks(agent_id="w-3", agent_type="testing", max_tasks=1, wait_seconds=0) == []


async def test_fail_non_retryable_fails_at_once(fast_retry: OrchestratorClient) -> None:
    client = fast_retry
    task = (await client.submit_task("compliance", {}, max_attempts=5)).task
    lease = await lease_one(client, "compliance")
    w1 = as_agent(client, "w-1", "compliance")
    failed = await w1.fail_task(task.task_id, lease.lease_token, "bad input", retryable=False)
    assert failed.state == tasks_pb2.TASK_STATE_FAILED
    assert (failed.attempts, failed.error) == (1, "bad input") and failed.HasField("finished_at")
    assert await w1.lease_tasks(agent_id="w-1", agent_type="compliance", max_tasks=1, wait_seconds=0) == []


async def test_release_does_not_count_an_attempt(client: OrchestratorClient) -> None:
    task = (await client.submit_task("documentation", {"doc": 1}, max_attempts=1)).task
    lease = await lease_one(client, "documentation")
    w1 = as_agent(client, "w-1", "documentation")
    released = await w1.release_task(task.task_id, lease.lease_token)
    assert released.state == tasks_pb2.TASK_STATE_QUEUED
    assert released.attempts == 0 and not released.lease_owner
    again = await rpc_error(w1.release_task(task.task_id, lease.lease_token))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Released repeatedly, the task with max_attempts=1 is never dead-lettered: attempts stay honest.
    for _ in range(3):
        lease = await lease_one(client, "documentation")
        assert lease.task.attempts == 1
        await w1.release_task(task.task_id, lease.lease_token)
    lease = await lease_one(client, "documentation")
    assert (await w1.complete_task(task.task_id, lease.lease_token, {})).state == tasks_pb2.TASK_STATE_SUCCEEDED


async def test_update_task_progress(client: OrchestratorClient) -> None:
    task = (await client.submit_task("discovery", {})).task
    lease = await lease_one(client, "discovery")
    w1 = as_agent(client, "w-1", "discovery")
    await asyncio.sleep(0.05)
    updated = await w1.update_task_progress(task.task_id, lease.lease_token, 0.5, "halfway")
    assert updated.state == tasks_pb2.TASK_STATE_LEASED
    assert (updated.progress, updated.progress_message) == (0.5, "halfway")
    assert updated.lease_expires_at.ToDatetime() > lease.task.lease_expires_at.ToDatetime(), "progress extends"
    assert (await client.get_task(task.task_id)).progress_message == "halfway"
    stale = await rpc_error(w1.update_task_progress(task.task_id, lease.lease_token + 7, 0.6))
    assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION
    bad = await rpc_error(w1.update_task_progress(task.task_id, lease.lease_token, 1.5))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "progress" in bad.details()


async def test_lease_long_poll_wakes_on_submit(client: OrchestratorClient) -> None:
    """A waiting LeaseTasks returns as soon as a task arrives (LISTEN/NOTIFY), not at its periodic recheck."""
    w1 = await registered(client, "w-1", "security")
    for attempt in range(2):
        waiter = asyncio.create_task(
            w1.lease_tasks(agent_id="w-1", agent_type="security", max_tasks=1, wait_seconds=20)
        )
        await asyncio.sleep(0.3 + attempt * 0.4)
        assert not waiter.done(), "an empty queue must make LeaseTasks wait"
        submitted = time.monotonic()
        task = (await client.submit_task("security", {"attempt": attempt})).task
        leases = await asyncio.wait_for(waiter, 10)
        latency = time.monotonic() - submitted
        assert [lease.task.task_id for lease in leases] == [task.task_id]
        assert latency < 1.0, f"long poll took {latency:.2f}s to notice a new task"

    started = time.monotonic()
    assert await w1.lease_tasks(agent_id="w-1", agent_type="security", max_tasks=1, wait_seconds=1) == []
    assert 0.9 <= time.monotonic() - started < 5, "an empty long poll honours wait_seconds"


async def test_lease_wait_is_bounded_by_the_caller_deadline(
    client: OrchestratorClient,
) -> None:
    request = tasks_pb2.LeaseTasksRequest(
        agent_id="w-1",
        agent_type=common_pb2.AGENT_TYPE_CODING,
        max_tasks=1,
        wait_seconds=30,
    )
    w1 = await registered(client, "w-1", "coding")
    started = time.monotonic()
    response = await w1.tasks.LeaseTasks(request, timeout=2.5, metadata=w1.call_metadata())
    assert list(response.leases) == []
    assert time.monotonic() - started < 2.5, "answers empty before the deadline instead of DEADLINE_EXCEEDED"


# ---- AgentService -----------------------------------------------------------------------------------------


async def test_agent_create_get_list_update_delete(client: OrchestratorClient) -> None:
    created = await client.create_agent(agent_type="coding", agent_id="coder-a", capacity=4, labels={"zone": "a"})
    assert (created.agent_id, created.agent_type, created.state) == (
        "coder-a",
        common_pb2.AGENT_TYPE_CODING,
        agents_pb2.AGENT_STATE_ACTIVE,
    )
    assert (created.capacity, dict(created.labels)) == (4, {"zone": "a"})
    generated = await client.create_agent(agent_type="testing")
    assert generated.agent_id.startswith("testing-") and generated.capacity == 1
    dup = await rpc_error(client.create_agent(agent_type="coding", agent_id="coder-a"))
    assert dup.code() == grpc.StatusCode.ALREADY_EXISTS

    for i in range(4):
        await client.create_agent(agent_type="coding", agent_id=f"coder-{i}")
    got = await client.get_agent("coder-a")
    assert got.agent_id == "coder-a" and dict(got.labels) == {"zone": "a"}

    ids: list[str] = []
    token = ""
    for _ in range(10):
        page = await client.list_agents(agent_type="coding", page_size=2, page_token=token)
        assert len(page.agents) <= 2
        assert all(a.agent_type == common_pb2.AGENT_TYPE_CODING for a in page.agents)
        ids += [a.agent_id for a in page.agents]
        token = page.next_page_token
        if not token:
            break
    assert ids == ["coder-0", "coder-1", "coder-2", "coder-3", "coder-a"]
    assert [a.agent_id for a in (await client.list_agents(agent_type="testing")).agents] == [generated.agent_id]

    updated = await client.update_agent("coder-a", labels={"zone": "b", "gpu": "yes"}, capacity=9, state="draining")
    assert dict(updated.labels) == {"zone": "b", "gpu": "yes"}
    assert (updated.capacity, updated.state) == (9, agents_pb2.AGENT_STATE_DRAINING)
    untouched = await client.update_agent("coder-a")
    assert dict(untouched.labels) == {"zone": "b", "gpu": "yes"} and untouched.capacity == 9
    draining = await client.list_agents(state="draining")
    assert [a.agent_id for a in draining.agents] == ["coder-a"]
    bad_state = await rpc_error(client.update_agent("coder-a", state="stale"))
    assert bad_state.code() == grpc.StatusCode.INVALID_ARGUMENT and "state" in bad_state.details()
    missing = await rpc_error(client.update_agent("nobody", capacity=2))
    assert missing.code() == grpc.StatusCode.NOT_FOUND

    await client.delete_agent("coder-a")
    assert (await rpc_error(client.get_agent("coder-a"))).code() == grpc.StatusCode.NOT_FOUND
    assert (await rpc_error(client.delete_agent("coder-a"))).code() == grpc.StatusCode.NOT_FOUND


async def test_register_heartbeat_deregister(client: OrchestratorClient) -> None:
    sec1 = as_agent(client, "sec-1", "security")
    registered = await sec1.register_agent(
        agent_id="sec-1",
        agent_type="security",
        capacity=3,
        address="10.0.0.7:9090",
        version="1.2.3",
        labels={"pool": "x"},
    )
    assert registered.heartbeat_interval_seconds == 10 and registered.lease_seconds == 30
    agent = registered.agent
    assert (agent.state, agent.address, agent.version, agent.capacity) == (
        agents_pb2.AGENT_STATE_ACTIVE,
        "10.0.0.7:9090",
        "1.2.3",
        3,
    )

    task = (await client.submit_task("security", {})).task
    lease = await lease_one(client, "security", agent_id="sec-1")
    await asyncio.sleep(0.05)
    beat = await sec1.heartbeat("sec-1", [(task.task_id, lease.lease_token)], running=1)
    assert list(beat.revoked_task_ids) == [] and not beat.reregister
    extended = await client.get_task(task.task_id)
    assert extended.lease_expires_at.ToDatetime() > lease.task.lease_expires_at.ToDatetime(), "heartbeat extends"
    after = await client.get_agent("sec-1")
    assert after.last_heartbeat_at.ToDatetime() >= agent.last_heartbeat_at.ToDatetime()
    assert after.running == 1, "the registry's view of load, as the HTTP API shows it"

    # A stale token, a task leased by someone else, and a cancelled task are all revoked.
    other = (await client.submit_task("security", {"o": 1})).task
    other_lease = await lease_one(client, "security", agent_id="sec-2")
    await client.cancel_task(task.task_id)
    beat = await sec1.heartbeat(
        "sec-1",
        [(task.task_id, lease.lease_token), (other.task_id, other_lease.lease_token)],
        running=2,
    )
    assert sorted(beat.revoked_task_ids) == sorted([task.task_id, other.task_id])

    unknown = await as_agent(client, "never-registered", "security").heartbeat("never-registered", [], running=0)
    assert unknown.reregister

    await sec1.deregister_agent("sec-1")
    assert (await client.get_agent("sec-1")).state == agents_pb2.AGENT_STATE_DEREGISTERED
    assert (await sec1.heartbeat("sec-1", [], running=0)).reregister
    assert "sec-1" not in [a.agent_id for a in (await client.list_agents()).agents]
    gone = await client.list_agents(state="deregistered")
    assert [a.agent_id for a in gone.agents] == ["sec-1"]
    missing = await rpc_error(as_agent(client, "nobody", "security").deregister_agent("nobody"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    # Registering again (same id) makes it active.
    again = await sec1.register_agent(agent_id="sec-1", agent_type="security", capacity=1)
    assert again.agent.state == agents_pb2.AGENT_STATE_ACTIVE
    assert not (await sec1.heartbeat("sec-1", [], running=0)).reregister


# ---- MessagingService -------------------------------------------------------------------------------------


async def _next(call: Any, timeout: float = 5.0) -> messaging_pb2.Message:
    response = await asyncio.wait_for(call.read(), timeout)
    assert response is not grpc.aio.EOF, "stream ended"
    message: messaging_pb2.Message = response.message
    return message


async def test_messaging_send_broadcast_receive(client: OrchestratorClient) -> None:
    for agent_id, agent_type in (
        ("c-1", "coding"),
        ("c-2", "coding"),
        ("t-1", "testing"),
    ):
        await registered(client, agent_id, agent_type)

    direct = await client.send_message(sender="ops", recipient_agent_id="c-1", topic="hello", body={"n": 1})
    assert direct.recipient_agent_id == "c-1" and not direct.to_all and direct.message_id > 0
    assert json_format.MessageToDict(direct.body) == {"n": 1}
    to_coding = await client.broadcast_message(sender="ops", agent_type="coding", topic="type", body={"n": 2})
    assert to_coding.recipient_type == common_pb2.AGENT_TYPE_CODING and not to_coding.to_all
    to_testing = await client.broadcast_message(sender="ops", agent_type="testing", topic="other", body={"n": 3})
    to_other = await client.send_message(sender="ops", recipient_agent_id="c-2", topic="not-you", body={})
    to_all = await client.broadcast_message(sender="ops", agent_type=None, topic="all", body={"n": 4})
    assert to_all.to_all and to_all.recipient_type == common_pb2.AGENT_TYPE_UNSPECIFIED
    assert direct.message_id < to_coding.message_id < to_testing.message_id < to_other.message_id < to_all.message_id

    call = client.messaging.ReceiveMessages(messaging_pb2.ReceiveMessagesRequest(agent_id="c-1"), timeout=30)
    try:
        got = [await _next(call) for _ in range(3)]
        assert [m.message_id for m in got] == [
            direct.message_id,
            to_coding.message_id,
            to_all.message_id,
        ]
        assert [m.topic for m in got] == ["hello", "type", "all"]
        # A message sent after subscribing arrives promptly; nothing for others slipped in before it.
        await asyncio.sleep(0.2)
        sent_at = time.monotonic()
        late = await client.send_message(sender="ops", recipient_agent_id="c-1", topic="late", body={"n": 5})
        arrived = await _next(call)
        assert arrived.message_id == late.message_id
        assert time.monotonic() - sent_at < 1.5, "new messages are pushed (NOTIFY), not found by a slow poll"
    finally:
        call.cancel()

    # The cursor is honoured: only messages after it.
    resumed = []
    stream = client.receive_messages("c-1", after_message_id=to_coding.message_id, timeout=10)
    async for message in stream:
        resumed.append(message.message_id)
        if len(resumed) == 2:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert resumed == [to_all.message_id, late.message_id]

    # The testing agent sees its type's broadcast and the broadcast to all only.
    t_call = client.messaging.ReceiveMessages(messaging_pb2.ReceiveMessagesRequest(agent_id="t-1"), timeout=10)
    try:
        assert [(await _next(t_call)).message_id for _ in range(2)] == [
            to_testing.message_id,
            to_all.message_id,
        ]
    finally:
        t_call.cancel()

    unknown = await rpc_error(client.send_message(sender="ops", recipient_agent_id="ghost", topic="x"))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    ghost = client.messaging.ReceiveMessages(messaging_pb2.ReceiveMessagesRequest(agent_id="ghost"), timeout=5)
    err = await rpc_error(ghost.read())
    assert err.code() == grpc.StatusCode.NOT_FOUND


# ---- ResourceService --------------------------------------------------------------------------------------


async def test_resource_quota_and_usage(client: OrchestratorClient) -> None:
    await registered(client, "c-1", "coding")
    await registered(client, "t-1", "testing")
    assert await client.resource_usage() == []
    usage = await client.set_resource_quota(agent_type="coding", resource="gpu", quota=10)
    assert (usage.agent_type, usage.resource, usage.allocated, usage.quota) == (
        common_pb2.AGENT_TYPE_CODING,
        "gpu",
        0,
        10,
    )
    await client.set_resource_quota(agent_type="testing", resource="gpu", quota=1)
    allocation = await client.allocate_resource(agent_id="c-1", resource="gpu", amount=6)
    await client.allocate_resource(agent_id="t-1", resource="gpu", amount=1)
    by_type = {(u.agent_type, u.resource): (u.allocated, u.quota) for u in await client.resource_usage()}
    assert by_type == {
        (common_pb2.AGENT_TYPE_CODING, "gpu"): (6, 10),
        (common_pb2.AGENT_TYPE_TESTING, "gpu"): (1, 1),
    }
    assert [(u.resource, u.allocated) for u in await client.resource_usage("coding")] == [("gpu", 6)]
    await client.release_resource(allocation.allocation_id)
    assert [u.allocated for u in await client.resource_usage("coding")] == [0]
    # Raising a quota is reflected at once.
    assert (await client.set_resource_quota(agent_type="coding", resource="gpu", quota=12)).quota == 12


async def test_resource_allocate_and_release_within_quota(client: OrchestratorClient, dsn: str) -> None:
    """Allocation semantics, with quotas written straight to the database."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO resource_quotas (agent_type, resource, quota) VALUES ($1, $2, $3)",
            [("coding", "gpu", 10), ("testing", "gpu", 1)],
        )
    finally:
        await conn.close()
    await registered(client, "c-1", "coding")
    await registered(client, "t-1", "testing")

    first = await client.allocate_resource(agent_id="c-1", resource="gpu", amount=6)
    assert (first.agent_id, first.agent_type, first.resource, first.amount) == (
        "c-1",
        common_pb2.AGENT_TYPE_CODING,
        "gpu",
        6,
    )
    assert uuid.UUID(first.allocation_id) and first.HasField("created_at")
    over = await rpc_error(client.allocate_resource(agent_id="c-1", resource="gpu", amount=5))
    assert over.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "quota" in over.details()
    no_quota = await rpc_error(client.allocate_resource(agent_id="c-1", resource="sandbox", amount=1))
    assert no_quota.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Quotas are per type: the testing quota is independent of coding's usage.
    assert (await client.allocate_resource(agent_id="t-1", resource="gpu", amount=1)).amount == 1
    assert (await rpc_error(client.allocate_resource(agent_id="t-1", resource="gpu", amount=1))).code() == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )

    await client.release_resource(first.allocation_id)
    again = await rpc_error(client.release_resource(first.allocation_id))
    assert again.code() == grpc.StatusCode.NOT_FOUND
    unknown = await rpc_error(client.release_resource(str(uuid.uuid4())))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    # The release made room for the whole quota again.
    held = await client.allocate_resource(agent_id="c-1", resource="gpu", amount=10)
    assert held.amount == 10
    # Deregistering an agent frees what it held.
    await as_agent(client, "c-1", "coding").deregister_agent("c-1")
    await registered(client, "c-2", "coding")
    assert (await client.allocate_resource(agent_id="c-2", resource="gpu", amount=10)).amount == 10
    ghost = await rpc_error(client.allocate_resource(agent_id="ghost", resource="gpu", amount=1))
    assert ghost.code() == grpc.StatusCode.NOT_FOUND


# ---- MonitoringService, health, reflection ----------------------------------------------------------------


async def test_get_status_counts(fast_retry: OrchestratorClient) -> None:
    client = fast_retry
    for i in range(2):
        await client.submit_task("coding", {"queued": i})
    await client.submit_task("coding", {"x": "lease"}, priority=9)
    await client.submit_task("coding", {"x": "ok"}, priority=8)
    await client.submit_task("coding", {"x": "fail"}, priority=7)
    await client.submit_task("coding", {"x": "dead"}, priority=6, max_attempts=1)
    w1 = as_agent(client, "w-1", "coding")
    await lease_one(client)
    ok = await lease_one(client)
    await w1.complete_task(ok.task.task_id, ok.lease_token, {})
    fail = await lease_one(client)
    await w1.fail_task(fail.task.task_id, fail.lease_token, "no", retryable=False)
    dead = await lease_one(client)
    await w1.fail_task(dead.task.task_id, dead.lease_token, "no", retryable=True)
    await client.cancel_task((await client.submit_task("coding", {"x": "cancel"})).task.task_id)
    await client.submit_task("security", {})
    await registered(client, "a-1", "coding")
    await registered(client, "a-2", "coding")
    await client.update_agent("a-2", state="draining")

    status = await client.status()
    assert status.database_ok and status.version
    assert status.orchestrator_id
    by_type = {s.agent_type: s for s in status.types}
    assert set(by_type) == set(range(1, 7)), "every agent type is reported"
    coding = by_type[common_pb2.AGENT_TYPE_CODING]
    assert (
        coding.queued,
        coding.leased,
        coding.succeeded,
        coding.failed,
        coding.cancelled,
        coding.dead_letter,
    ) == (2, 1, 1, 1, 1, 1)
    # w-1 (which leased above) and a-1 are active, a-2 draining.
    assert (coding.agents_active, coding.agents_draining, coding.agents_stale) == (
        2,
        1,
        0,
    )
    assert by_type[common_pb2.AGENT_TYPE_SECURITY].queued == 1
    assert by_type[common_pb2.AGENT_TYPE_TESTING].queued == 0


async def test_grpc_health_serving(orchestrator: Orchestrator) -> None:
    async with grpc.aio.insecure_channel(grpc_target(orchestrator)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ["", *sorted(SERVICES)]:
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service
        err = await rpc_error(stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5))
        assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_services(orchestrator: Orchestrator) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    def discover() -> tuple[set[str], list[str]]:
        # The reflection client is synchronous: run it on a thread so the in-process server keeps serving.
        with grpc.insecure_channel(f"127.0.0.1:{orchestrator.grpc.port}") as channel:  # type: ignore[union-attr]
            database = ProtoReflectionDescriptorDatabase(channel)
            services = set(database.get_services())
            proto = database.FindFileContainingSymbol("ai_agents.v1.TaskService")
            methods = [m.name for s in proto.service for m in s.method if s.name == "TaskService"]
            return services, methods

    services, methods = await asyncio.to_thread(discover)
    assert services >= SERVICES
    assert "grpc.health.v1.Health" in services
    assert {
        "SubmitTask",
        "SubmitTasks",
        "LeaseTasks",
        "CompleteTask",
        "CompleteTasks",
        "FailTask",
        "ReleaseTask",
        "CancelTask",
    } <= set(methods)
