"""Records and counts of the store carry TaskState and AgentState members, while the columns keep the same words."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from ai_agents.domain import AgentState, TaskState
from ai_agents.store.database import Database, Stores


@pytest.fixture
async def stores(dsn: str) -> AsyncIterator[Stores]:
    database = Database(dsn, min_size=1, max_size=2, agent_stale_seconds=30)
    yield await database.start(connect_timeout=10)
    await database.close()


async def test_task_records_and_counts_hold_task_states(stores: Stores, dsn: str) -> None:
    queued, _ = await stores.tasks.submit(
        agent_type="coding", payload={}, idempotency_key=None, priority=0, max_attempts=3
    )
    assert queued.state is TaskState.QUEUED
    (leased,) = await stores.tasks.lease(agent_id="a-1", agent_type="coding", max_tasks=1, lease_seconds=0)
    assert leased.state is TaskState.LEASED
    page, _ = await stores.tasks.list(
        agent_type=None, state=TaskState.LEASED, page_size=10, page_token=None, max_bytes=1 << 20
    )
    assert [t.task_id for t in page] == [queued.task_id]
    assert await stores.tasks.all_counts() == {("coding", TaskState.LEASED): 1}
    assert all(isinstance(state, TaskState) for _, state in await stores.tasks.active_counts())

    await asyncio.sleep(0.01)  # the zero-second lease is now past its expiry
    (expired,) = await stores.tasks.expire_leases()
    assert expired.new_state is TaskState.QUEUED
    assert (await stores.tasks.get(queued.task_id)).state is TaskState.QUEUED
    # The database keeps the words it always held.
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT state FROM tasks") == "queued"
    finally:
        await conn.close()


async def test_agent_records_and_counts_hold_agent_states(stores: Stores) -> None:
    agent = await stores.agents.register(
        agent_id="a-1", agent_type="coding", labels={}, capacity=1, address="", version=""
    )
    assert agent.state is AgentState.ACTIVE
    drained = await stores.agents.update("a-1", labels=None, capacity=None, state=AgentState.DRAINING)
    assert drained.state is AgentState.DRAINING
    page, _ = await stores.agents.list(
        agent_type=None, state=AgentState.DRAINING, page_size=10, after=None, max_bytes=1 << 20
    )
    assert [a.agent_id for a in page] == ["a-1"]
    assert await stores.agents.counts() == {("coding", AgentState.DRAINING): 1}
    assert all(isinstance(state, AgentState) for _, state in await stores.agents.counts())
