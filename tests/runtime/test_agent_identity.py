"""Agent identity: one agent cannot act for another (issue 11, item 4), against a real orchestrator.

The orchestrator checks agent identity `local` (conftest's secret). Every attacker here holds a valid API
token and a valid credential of its own: it is a real agent of the fleet trying to act for another one.
Calls go through raw stubs with explicit metadata, so each test says exactly what the caller presents.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.serving.identity import CREDENTIAL_METADATA, mint_local_credential
from ai_agents.v1 import agents_pb2, agents_pb2_grpc, common_pb2, tasks_pb2, tasks_pb2_grpc
from waits import assert_eventually_async

from ._api_support import rpc_error
from ._fleet_support import AgentProcesses, OrchestratorFactory, agent_credential, grpc_target

CODING = common_pb2.AGENT_TYPE_CODING
TESTING = common_pb2.AGENT_TYPE_TESTING
Metadata = tuple[tuple[str, str], ...]


def credential_of(agent_id: str, agent_type: str = "coding") -> Metadata:
    return ((CREDENTIAL_METADATA, agent_credential(agent_id, agent_type)),)


class Api:
    """Raw stubs on one channel to the orchestrator."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.tasks = tasks_pb2_grpc.TaskServiceStub(channel)
        self.agents = agents_pb2_grpc.AgentServiceStub(channel)

    async def register(self, agent_id: str, agent_type: str = "coding", capacity: int = 1) -> Any:
        request = agents_pb2.RegisterAgentRequest(
            agent_id=agent_id,
            agent_type=common_pb2.AgentType.Value(f"AGENT_TYPE_{agent_type.upper()}"),
            capacity=capacity,
        )
        return await self.agents.RegisterAgent(request, metadata=credential_of(agent_id, agent_type), timeout=5)

    async def submit(self, agent_type: int = CODING) -> tasks_pb2.Task:
        response = await self.tasks.SubmitTask(tasks_pb2.SubmitTaskRequest(agent_type=agent_type), timeout=5)
        return response.task

    async def lease(self, agent_id: str, agent_type: str = "coding") -> tasks_pb2.TaskLease:
        request = tasks_pb2.LeaseTasksRequest(
            agent_id=agent_id, agent_type=common_pb2.AgentType.Value(f"AGENT_TYPE_{agent_type.upper()}"), max_tasks=1
        )
        response = await self.tasks.LeaseTasks(request, metadata=credential_of(agent_id, agent_type), timeout=5)
        assert len(response.leases) == 1, response
        lease: tasks_pb2.TaskLease = response.leases[0]
        return lease

    async def task(self, task_id: str) -> tasks_pb2.Task:
        return (await self.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=task_id), timeout=5)).task

    async def agent(self, agent_id: str) -> agents_pb2.Agent:
        return (await self.agents.GetAgent(agents_pb2.GetAgentRequest(agent_id=agent_id), timeout=5)).agent


@pytest.fixture
async def api(orchestrator: Orchestrator) -> AsyncIterator[Api]:
    assert orchestrator.settings.agent_identity == "local"
    async with grpc.aio.insecure_channel(grpc_target(orchestrator)) as channel:
        yield Api(channel)


async def test_an_agent_cannot_complete_fail_or_progress_another_agents_task(api: Api) -> None:
    """The attack of the issue: the right token (or any guess near it) from another agent is refused."""
    await api.register("victim")
    await api.register("intruder")
    task = await api.submit()
    lease = await api.lease("victim")
    intruder = credential_of("intruder")
    for token in (lease.lease_token, lease.lease_token - 1, lease.lease_token + 1):
        for call in (
            api.tasks.CompleteTask(
                tasks_pb2.CompleteTaskRequest(task_id=task.task_id, lease_token=token), metadata=intruder, timeout=5
            ),
            api.tasks.FailTask(
                tasks_pb2.FailTaskRequest(task_id=task.task_id, lease_token=token, error="x", retryable=False),
                metadata=intruder,
                timeout=5,
            ),
            api.tasks.UpdateTaskProgress(
                tasks_pb2.UpdateTaskProgressRequest(task_id=task.task_id, lease_token=token, progress=0.9),
                metadata=intruder,
                timeout=5,
            ),
        ):
            refused = await rpc_error(call)
            assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION, (token, refused)
        # In a batch, the same refusal is that completion's outcome.
        batch = await api.tasks.CompleteTasks(
            tasks_pb2.CompleteTasksRequest(
                completions=[tasks_pb2.TaskCompletion(task_id=task.task_id, lease_token=token)]
            ),
            metadata=intruder,
            timeout=5,
        )
        assert [o.code for o in batch.outcomes] == [grpc.StatusCode.FAILED_PRECONDITION.value[0]], (token, batch)
    untouched = await api.task(task.task_id)
    assert (untouched.state, untouched.lease_owner, untouched.attempts, untouched.progress) == (
        tasks_pb2.TASK_STATE_LEASED,
        "victim",
        1,
        0.0,
    )

    # The rightful holder completes normally.
    done = await api.tasks.CompleteTask(
        tasks_pb2.CompleteTaskRequest(task_id=task.task_id, lease_token=lease.lease_token),
        metadata=credential_of("victim"),
        timeout=5,
    )
    assert done.task.state == tasks_pb2.TASK_STATE_SUCCEEDED


async def test_a_third_party_cannot_release_a_running_task(api: Api) -> None:
    """Release used to requeue someone else's task and take an attempt off it (unbounded re-runs)."""
    await api.register("victim")
    await api.register("bystander", "testing")
    task = await api.submit()
    lease = await api.lease("victim")
    refused = await rpc_error(
        api.tasks.ReleaseTask(
            tasks_pb2.ReleaseTaskRequest(task_id=task.task_id, lease_token=lease.lease_token),
            metadata=credential_of("bystander", "testing"),
            timeout=5,
        )
    )
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    after = await api.task(task.task_id)
    assert (after.state, after.lease_owner, after.attempts) == (tasks_pb2.TASK_STATE_LEASED, "victim", 1)
    # Its holder may release it.
    released = await api.tasks.ReleaseTask(
        tasks_pb2.ReleaseTaskRequest(task_id=task.task_id, lease_token=lease.lease_token),
        metadata=credential_of("victim"),
        timeout=5,
    )
    assert (released.task.state, released.task.attempts) == (tasks_pb2.TASK_STATE_QUEUED, 0)


async def test_heartbeat_register_and_deregister_for_another_id_are_refused(api: Api) -> None:
    await api.register("victim")
    task = await api.submit()
    lease = await api.lease("victim")
    before = await api.agent("victim")
    intruder = credential_of("intruder")
    await api.register("intruder")

    calls = {
        "Heartbeat": api.agents.Heartbeat(
            agents_pb2.HeartbeatRequest(
                agent_id="victim", running=0, leases=[agents_pb2.HeldLease(task_id=task.task_id, lease_token=1)]
            ),
            metadata=intruder,
            timeout=5,
        ),
        "DeregisterAgent": api.agents.DeregisterAgent(
            agents_pb2.DeregisterAgentRequest(agent_id="victim"), metadata=intruder, timeout=5
        ),
        # The re-registration as another type with capacity 10000.
        "RegisterAgent": api.agents.RegisterAgent(
            agents_pb2.RegisterAgentRequest(agent_id="victim", agent_type=TESTING, capacity=10_000),
            metadata=intruder,
            timeout=5,
        ),
        "LeaseTasks": api.tasks.LeaseTasks(
            tasks_pb2.LeaseTasksRequest(agent_id="victim", agent_type=CODING, max_tasks=1),
            metadata=intruder,
            timeout=5,
        ),
    }
    for name, call in calls.items():
        refused = await rpc_error(call)
        assert refused.code() == grpc.StatusCode.PERMISSION_DENIED, (name, refused)
        assert "victim" in (refused.details() or ""), name

    after = await api.agent("victim")
    assert (after.agent_type, after.capacity, after.state, after.last_heartbeat_at) == (
        CODING,
        1,
        agents_pb2.AGENT_STATE_ACTIVE,
        before.last_heartbeat_at,
    ), "the registry entry is untouched, not even its heartbeat time"
    assert (await api.task(task.task_id)).lease_owner == "victim"
    assert lease.lease_token


async def test_an_id_keeps_its_type(api: Api) -> None:
    """Even with a credential naming that id (type is part of it), an id registered as coding stays coding."""
    await api.register("worker-1")
    refused = await rpc_error(api.register("worker-1", "testing", capacity=10_000))
    assert refused.code() == grpc.StatusCode.ALREADY_EXISTS and "another agent type" in (refused.details() or "")
    agent = await api.agent("worker-1")
    assert (agent.agent_type, agent.capacity) == (CODING, 1)
    # The same type may register again (a restarted process), with a capacity inside the bound.
    again = await api.register("worker-1", capacity=10_000)
    assert again.agent.capacity == 10_000
    over = await rpc_error(api.register("worker-1", capacity=10_001))
    assert over.code() == grpc.StatusCode.INVALID_ARGUMENT and "capacity" in (over.details() or "")


async def test_lease_needs_a_registered_agent_of_that_type(api: Api) -> None:
    task = await api.submit()
    request = tasks_pb2.LeaseTasksRequest(agent_id="ghost", agent_type=CODING, max_tasks=1)
    unregistered = await rpc_error(api.tasks.LeaseTasks(request, metadata=credential_of("ghost"), timeout=5))
    assert unregistered.code() == grpc.StatusCode.FAILED_PRECONDITION and "not registered" in unregistered.details()

    await api.register("leaver")
    await api.agents.DeregisterAgent(
        agents_pb2.DeregisterAgentRequest(agent_id="leaver"), metadata=credential_of("leaver"), timeout=5
    )
    deregistered = await rpc_error(
        api.tasks.LeaseTasks(
            tasks_pb2.LeaseTasksRequest(agent_id="leaver", agent_type=CODING, max_tasks=1),
            metadata=credential_of("leaver"),
            timeout=5,
        )
    )
    assert deregistered.code() == grpc.StatusCode.FAILED_PRECONDITION

    # A credential for another type than the request's.
    await api.register("coder")
    wrong_type = await rpc_error(
        api.tasks.LeaseTasks(
            tasks_pb2.LeaseTasksRequest(agent_id="coder", agent_type=TESTING, max_tasks=1),
            metadata=credential_of("coder"),
            timeout=5,
        )
    )
    assert wrong_type.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await api.task(task.task_id)).state == tasks_pb2.TASK_STATE_QUEUED, "nobody leased it"
    assert (await api.lease("coder")).task.task_id == task.task_id


async def test_agent_rpcs_without_a_valid_credential_are_unauthenticated(api: Api) -> None:
    await api.register("victim")
    task = await api.submit()
    lease = await api.lease("victim")
    forged = mint_local_credential("a-secret-the-orchestrator-does-not-hold-0123456789", "victim", "coding")
    valid = agent_credential("victim", "coding")
    tampered = valid[:-2] + ("AA" if not valid.endswith("AA") else "BB")
    for presented in ((), ((CREDENTIAL_METADATA, forged),), ((CREDENTIAL_METADATA, tampered),)):
        calls = [
            api.agents.RegisterAgent(
                agents_pb2.RegisterAgentRequest(agent_id="victim", agent_type=CODING), metadata=presented, timeout=5
            ),
            api.agents.DeregisterAgent(
                agents_pb2.DeregisterAgentRequest(agent_id="victim"), metadata=presented, timeout=5
            ),
            api.agents.Heartbeat(agents_pb2.HeartbeatRequest(agent_id="victim"), metadata=presented, timeout=5),
            api.tasks.LeaseTasks(
                tasks_pb2.LeaseTasksRequest(agent_id="victim", agent_type=CODING), metadata=presented, timeout=5
            ),
            api.tasks.UpdateTaskProgress(
                tasks_pb2.UpdateTaskProgressRequest(task_id=task.task_id, lease_token=lease.lease_token, progress=0.5),
                metadata=presented,
                timeout=5,
            ),
            api.tasks.CompleteTask(
                tasks_pb2.CompleteTaskRequest(task_id=task.task_id, lease_token=lease.lease_token),
                metadata=presented,
                timeout=5,
            ),
            api.tasks.CompleteTasks(
                tasks_pb2.CompleteTasksRequest(
                    completions=[tasks_pb2.TaskCompletion(task_id=task.task_id, lease_token=lease.lease_token)]
                ),
                metadata=presented,
                timeout=5,
            ),
            api.tasks.FailTask(
                tasks_pb2.FailTaskRequest(task_id=task.task_id, lease_token=lease.lease_token, error="x"),
                metadata=presented,
                timeout=5,
            ),
            api.tasks.ReleaseTask(
                tasks_pb2.ReleaseTaskRequest(task_id=task.task_id, lease_token=lease.lease_token),
                metadata=presented,
                timeout=5,
            ),
        ]
        for call in calls:
            refused = await rpc_error(call)
            assert refused.code() == grpc.StatusCode.UNAUTHENTICATED, (presented, refused)
    after = await api.task(task.task_id)
    assert (after.state, after.lease_owner, after.attempts) == (tasks_pb2.TASK_STATE_LEASED, "victim", 1)
    # User-facing calls need no agent credential.
    listed = await api.tasks.ListTasks(tasks_pb2.ListTasksRequest(), timeout=5)
    assert [t.task_id for t in listed.tasks] == [task.task_id]
    cancelled = await api.tasks.CancelTask(tasks_pb2.CancelTaskRequest(task_id=task.task_id), timeout=5)
    assert cancelled.task.state == tasks_pb2.TASK_STATE_CANCELLED


async def test_without_identity_lease_still_needs_registration(start_orchestrator: OrchestratorFactory) -> None:
    """`none` trusts the request's agent id, but an id never registered (or of another type) still cannot lease."""
    orchestrator = await start_orchestrator(agent_identity="none")
    async with grpc.aio.insecure_channel(grpc_target(orchestrator)) as channel:
        api = Api(channel)
        task = await api.submit()
        never = await rpc_error(
            api.tasks.LeaseTasks(tasks_pb2.LeaseTasksRequest(agent_id="ghost", agent_type=CODING), timeout=5)
        )
        assert never.code() == grpc.StatusCode.FAILED_PRECONDITION
        await api.agents.RegisterAgent(agents_pb2.RegisterAgentRequest(agent_id="t-1", agent_type=TESTING), timeout=5)
        other_type = await rpc_error(
            api.tasks.LeaseTasks(tasks_pb2.LeaseTasksRequest(agent_id="t-1", agent_type=CODING), timeout=5)
        )
        assert other_type.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (await api.task(task.task_id)).state == tasks_pb2.TASK_STATE_QUEUED


async def test_agent_processes_use_their_own_credential_and_no_other(
    orchestrator: Orchestrator, agents: AgentProcesses, client: OrchestratorClient
) -> None:
    """A real agent process registers and completes work with its credential; one holding another's exits."""
    target = grpc_target(orchestrator)
    rightful = agents.start("coding", target)
    task = (await client.submit_task("coding", {"who": "rightful"})).task

    async def succeeded() -> None:
        assert (await client.get_task(task.task_id)).state == tasks_pb2.TASK_STATE_SUCCEEDED

    await assert_eventually_async(
        succeeded, timeout_sec=30, message="the agent with its own credential completes the task"
    )
    assert (await client.get_agent(rightful)).agent_type == CODING

    impostor = agents.start("coding", target, AI_AGENTS_AGENT_CREDENTIAL=agent_credential(rightful, "coding"))
    assert await asyncio.to_thread(agents.wait, impostor, 30) != 0, "an agent acting as another is refused and exits"
    assert "PERMISSION_DENIED" in agents.log(impostor)
    unknown = agents.start("coding", target, AI_AGENTS_AGENT_CREDENTIAL="")
    assert await asyncio.to_thread(agents.wait, unknown, 30) != 0
    assert "UNAUTHENTICATED" in agents.log(unknown)
    assert [a.agent_id for a in (await client.list_agents(agent_type="coding")).agents] == [rightful]
