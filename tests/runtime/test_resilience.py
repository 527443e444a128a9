"""Leases, fencing, redelivery and graceful shutdown with real agent processes and real PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from pathlib import Path

import asyncpg
import grpc
import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.convert import TASK_STATE, struct_to_dict
from ai_agents.store.migrations import _migration_files
from ai_agents.v1 import agents_pb2
from prometheus_client.parser import text_string_to_metric_families
from waits import assert_eventually_async

from ._fleet_support import AgentProcesses, OrchestratorFactory, as_agent, grpc_target

pytestmark = pytest.mark.timeout(120)


def sample_value(exposition: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_sigkilled_agent_task_is_redelivered_and_succeeds_exactly_once(
    start_orchestrator: OrchestratorFactory, agents: AgentProcesses, dsn: str
) -> None:
    orchestrator = await start_orchestrator(lease_seconds=2, maintenance_interval_seconds=0.2)
    target = grpc_target(orchestrator)
    async with await OrchestratorClient.connect(target) as client:
        slow = agents.start(
            "coding",
            target,
            AI_AGENTS_SIMULATE_LATENCY_MS="60000",
            AI_AGENTS_HEARTBEAT_INTERVAL_SECONDS="1",
        )
        task = (await client.submit_task("coding", {"step": 1})).task

        async def leased_by_slow() -> None:
            current = await client.get_task(task.task_id)
            assert current.lease_owner == slow, f"lease owner is {current.lease_owner!r}"

        await assert_eventually_async(leased_by_slow, timeout_sec=30, message="the slow agent never leased the task")
        agents.kill(slow, signal.SIGKILL)
        agents.wait(slow, timeout=10)
        agents.start("coding", target)  # the survivor that receives the redelivery

        async def succeeded() -> None:
            current = await client.get_task(task.task_id)
            assert TASK_STATE.to_str(current.state) == "succeeded", TASK_STATE.to_str(current.state)

        await assert_eventually_async(
            succeeded,
            timeout_sec=40,
            message="the task was not redelivered to the surviving agent",
        )
        final = await client.get_task(task.task_id)
        assert final.attempts == 2, "one attempt died with the killed agent, the second succeeded"
        assert struct_to_dict(final.result)["attempt"] == 2, "the recorded result is the second attempt's"

    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM tasks") == 1
        assert await conn.fetchval("SELECT count(*) FROM tasks WHERE state = 'succeeded'") == 1
    finally:
        await conn.close()
    metrics = orchestrator.metrics.registry
    from prometheus_client import generate_latest

    exposition = generate_latest(metrics).decode()
    assert (
        sample_value(
            exposition,
            "ai_agents_tasks_completed_total",
            {"agent_type": "coding", "outcome": "succeeded"},
        )
        == 1
    )
    assert sample_value(exposition, "ai_agents_lease_expiries_total", {"agent_type": "coding"}) >= 1
    assert sample_value(exposition, "ai_agents_task_redeliveries_total", {"agent_type": "coding"}) >= 1


async def test_stale_fencing_token_cannot_complete_or_fail(
    start_orchestrator: OrchestratorFactory,
) -> None:
    orchestrator = await start_orchestrator(lease_seconds=1, maintenance_interval_seconds=0.1)
    async with await OrchestratorClient.connect(grpc_target(orchestrator)) as client:
        task = (await client.submit_task("security", {"repo": "a"})).task
        agent_a = as_agent(client, "agent-a", "security")
        agent_b = as_agent(client, "agent-b", "security")
        for agent_id, agent in (("agent-a", agent_a), ("agent-b", agent_b)):
            await agent.register_agent(agent_id=agent_id, agent_type="security", capacity=1)
        [first] = await agent_a.lease_tasks(agent_id="agent-a", agent_type="security", max_tasks=1, wait_seconds=0)

        async def relet() -> list:
            leases = await agent_b.lease_tasks(agent_id="agent-b", agent_type="security", max_tasks=1, wait_seconds=1)
            assert leases, "lease of agent-a has not expired yet"
            return leases

        [second] = await assert_eventually_async(relet, timeout_sec=10)
        assert second.task.task_id == task.task_id
        assert second.lease_token > first.lease_token, "fencing tokens must increase"

        # agent-a still holds its own (stale) token: refused as stale.
        for call in (
            agent_a.complete_task(task.task_id, first.lease_token, {"ok": True}),
            agent_a.fail_task(task.task_id, first.lease_token, "late", retryable=True),
            agent_a.update_task_progress(task.task_id, first.lease_token, 0.5),
            agent_a.release_task(task.task_id, first.lease_token),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "stale" in (refused.value.details() or "")

        done = await agent_b.complete_task(task.task_id, second.lease_token, {"vulnerabilities_found": 2})
        assert TASK_STATE.to_str(done.state) == "succeeded"
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await agent_b.complete_task(task.task_id, second.lease_token, {"ok": True})
        assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_two_orchestrators_share_one_database_without_double_delivery(
    start_orchestrator: OrchestratorFactory, agents: AgentProcesses, dsn: str
) -> None:
    # Started together: both run migrations at once, the advisory lock must serialize them.
    first, second = await asyncio.gather(start_orchestrator(), start_orchestrator())
    target = grpc_target(first, second)
    for _ in range(3):
        agents.start("testing", target, AI_AGENTS_CONCURRENCY="8")
    total = 300
    async with await OrchestratorClient.connect(target) as client:
        limit = asyncio.Semaphore(20)

        async def submit(i: int):
            async with limit:
                return await client.submit_task("testing", {"n": i})

        submitted = await asyncio.gather(*(submit(i) for i in range(total)))
        ids = {r.task.task_id for r in submitted}
        assert len(ids) == total

    conn = await asyncpg.connect(dsn)
    try:

        async def all_done() -> None:
            done = await conn.fetchval("SELECT count(*) FROM tasks WHERE state = 'succeeded'")
            assert done == total, f"{done}/{total} succeeded"

        await assert_eventually_async(all_done, timeout_sec=60, interval_sec=0.5)
        # Each task was leased exactly once: no orchestrator handed a task out twice.
        assert await conn.fetchval("SELECT max(attempts) FROM tasks") == 1
        # Each migration recorded once: the second orchestrator found them applied and applied none again.
        recorded = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in recorded] == [version for version, _name, _sql in _migration_files()]
    finally:
        await conn.close()
    served = [
        sum(
            s.value
            for f in text_string_to_metric_families(
                __import__("prometheus_client").generate_latest(o.metrics.registry).decode()
            )
            for s in f.samples
            if s.name == "ai_agents_grpc_requests_total"
            # The client batches submits made together: SubmitTasks calls, and SubmitTask for any sent alone.
            and s.labels["method"].rsplit("/", 1)[-1] in ("SubmitTask", "SubmitTasks")
        )
        for o in (first, second)
    ]
    assert all(n > 0 for n in served), f"round_robin should spread submissions over both orchestrators: {served}"


async def test_concurrent_submissions_with_one_idempotency_key_create_one_task(
    orchestrator, client: OrchestratorClient, dsn: str
) -> None:
    responses = await asyncio.gather(
        *(client.submit_task("compliance", {"policy": "hipaa"}, idempotency_key="same-key") for _ in range(20))
    )
    assert len({r.task.task_id for r in responses}) == 1
    assert sum(r.created for r in responses) == 1
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM tasks") == 1
    finally:
        await conn.close()


async def test_sigterm_lets_running_tasks_finish_then_deregisters(
    orchestrator, client: OrchestratorClient, agents: AgentProcesses
) -> None:
    target = grpc_target(orchestrator)
    agent = agents.start(
        "documentation",
        target,
        AI_AGENTS_SIMULATE_LATENCY_MS="1500",
        AI_AGENTS_CONCURRENCY="2",
        AI_AGENTS_SHUTDOWN_GRACE_SECONDS="20",
    )
    tasks = [(await client.submit_task("documentation", {"doc": i})).task.task_id for i in range(2)]

    async def both_running_in_agent() -> None:
        assert sorted(await agents.running_tasks(agent)) == sorted(tasks)

    await assert_eventually_async(both_running_in_agent, timeout_sec=30)
    agents.kill(agent, signal.SIGTERM)
    assert await asyncio.to_thread(agents.wait, agent, 30) == 0
    for task_id in tasks:
        final = await client.get_task(task_id)
        assert TASK_STATE.to_str(final.state) == "succeeded"
        assert final.attempts == 1
    registered = await client.get_agent(agent)
    assert registered.state == agents_pb2.AGENT_STATE_DEREGISTERED, "the agent deregistered on the way out"


async def test_sigterm_past_grace_releases_tasks_without_spending_an_attempt(
    orchestrator, client: OrchestratorClient, agents: AgentProcesses
) -> None:
    target = grpc_target(orchestrator)
    agent = agents.start(
        "discovery",
        target,
        AI_AGENTS_SIMULATE_LATENCY_MS="60000",
        AI_AGENTS_SHUTDOWN_GRACE_SECONDS="0.5",
    )
    task_id = (await client.submit_task("discovery", {"scan": "x"})).task.task_id

    async def running_in_agent() -> None:
        assert task_id in await agents.running_tasks(agent)

    await assert_eventually_async(running_in_agent, timeout_sec=30)
    agents.kill(agent, signal.SIGTERM)
    assert await asyncio.to_thread(agents.wait, agent, 30) == 0
    released = await client.get_task(task_id)
    assert TASK_STATE.to_str(released.state) == "queued"
    assert released.attempts == 0, "a release on shutdown must not use up an attempt"


async def test_orchestrator_waits_for_a_database_that_comes_up_after_it() -> None:
    """As in a fresh install: the orchestrator pods start before the PostgreSQL StatefulSet accepts connections."""
    from ai_agents.local.ports import free_port
    from ai_agents.local.postgres import LocalPostgres
    from ai_agents.orchestrator.app import Orchestrator

    from ._fleet_support import orchestrator_settings

    data_dir = Path(tempfile.mkdtemp(prefix="ai-agents-late-pg-"))
    late = LocalPostgres(data_dir, port=free_port())
    orchestrator = Orchestrator(orchestrator_settings(late.dsn, database_connect_timeout_seconds=60))
    starting = asyncio.create_task(orchestrator.start())
    try:
        await asyncio.sleep(2)
        assert not starting.done(), "start-up must keep retrying while the database is unreachable"
        await asyncio.to_thread(late.start)
        await asyncio.wait_for(starting, 60)
        async with await OrchestratorClient.connect(grpc_target(orchestrator)) as client:
            task = (await client.submit_task("coding", {"after": "late database"})).task
            assert task.task_id
    finally:
        if starting.done():
            await orchestrator.stop()
        else:
            starting.cancel()
        late.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
