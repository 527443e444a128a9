"""Group commit keeps every guarantee of the single statements it replaces, on a real PostgreSQL.

Concurrent submits, completions and heartbeats share statements; each caller must still get its own row only
after it is committed, idempotency keys and fencing tokens must refuse exactly what they refused before, and a
batch that fails as a whole must give each caller the outcome it would have had alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from ai_agents.domain import TaskState
from ai_agents.errors import AlreadyExists, FailedPrecondition
from ai_agents.group_commit import RUN_ALONE, Answer, GroupCommit
from ai_agents.store.availability import is_database_unavailable
from ai_agents.store.database import Database, Stores
from ai_agents.store.task_batches import TASKS_CHANNEL
from waits import assert_eventually_async


@pytest.fixture
async def stores(dsn: str) -> AsyncIterator[Stores]:
    database = Database(dsn, min_size=2, max_size=4, agent_stale_seconds=30)
    yield await database.start(connect_timeout=10)
    await database.close()


def grouped(store: Any, name: str) -> GroupCommit[Any, Any]:
    """A store's GroupCommit by attribute name (through the outage wrapper), to see how much it grouped."""
    group = getattr(store, name)
    assert isinstance(group, GroupCommit)
    return group


async def submit(stores: Stores, i: int, key: str | None = None, payload: Any = None) -> Any:
    return await stores.tasks.submit(
        agent_type="coding", payload={"i": i} if payload is None else payload, idempotency_key=key, priority=0,
        max_attempts=3,
    )  # fmt: skip


async def test_concurrent_submits_share_statements_and_each_caller_gets_its_own_committed_row(
    stores: Stores, dsn: str
) -> None:
    results = await asyncio.gather(*(submit(stores, i) for i in range(200)))
    assert [task.payload for task, _ in results] == [{"i": i} for i in range(200)]
    assert all(created for _, created in results)
    group = grouped(stores.tasks, "_submits")
    assert group.items == 200 and group.batches < 50, "concurrent submits were not grouped"
    # Acknowledged means committed: another connection sees every row.
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM tasks WHERE state = 'queued'")
    finally:
        await conn.close()
    assert stored == 200


async def test_one_idempotency_key_twice_in_a_batch_creates_one_task_and_refuses_another_payload(
    stores: Stores,
) -> None:
    same = await asyncio.gather(submit(stores, 1, key="k"), submit(stores, 1, key="k"), submit(stores, 2))
    (first, created_first), (second, created_second), _ = same
    assert first.task_id == second.task_id
    assert sorted([created_first, created_second]) == [False, True]
    outcomes = await asyncio.gather(submit(stores, 3, key="k"), submit(stores, 4), return_exceptions=True)
    assert isinstance(outcomes[0], AlreadyExists)
    assert not isinstance(outcomes[1], BaseException)
    assert sum(n for (_, state), n in (await stores.tasks.all_counts()).items() if state is TaskState.QUEUED) == 3


async def test_a_batch_sends_one_notify_per_agent_type(stores: Stores, dsn: str) -> None:
    heard: list[str] = []
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener(TASKS_CHANNEL, lambda _c, _p, _ch, payload: heard.append(payload))
        await asyncio.gather(
            *(
                stores.tasks.submit(agent_type=t, payload={"i": i}, idempotency_key=None, priority=0, max_attempts=1)
                for i, t in enumerate(["coding"] * 20 + ["testing"] * 20)
            )
        )

        # Notifications arrive after the commits: wait until they account for every task.
        async def all_heard() -> None:
            assert sum(int(p.partition(":")[2]) for p in heard) == 40, heard

        await assert_eventually_async(all_heard, timeout_sec=5, interval_sec=0.02)
    finally:
        await listener.close()
    batches = grouped(stores.tasks, "_submits").batches
    # "<type>:<n>": the tasks of that type the batch inserted, so an orchestrator wakes n waiters, not all.
    per_type: dict[str, int] = {}
    for payload in heard:
        agent_type, _, n = payload.partition(":")
        per_type[agent_type] = per_type.get(agent_type, 0) + int(n)
    assert per_type == {"coding": 20, "testing": 20}
    assert len(heard) <= 2 * batches < 40, "one NOTIFY per batch and type, not one per task"


async def test_a_row_the_database_refuses_fails_alone_and_the_rest_of_its_batch_is_stored(stores: Stores) -> None:
    # jsonb refuses \u0000 in a string (the API refuses it earlier; the store does not check).
    outcomes = await asyncio.gather(
        *(submit(stores, i) for i in range(10)), submit(stores, 99, payload={"bad": "\x00"}), return_exceptions=True
    )
    assert isinstance(outcomes[-1], asyncpg.PostgresError)
    assert all(not isinstance(o, BaseException) and o[1] for o in outcomes[:-1])
    assert sum((await stores.tasks.all_counts()).values()) == 10


async def test_concurrent_completions_keep_the_fence(stores: Stores) -> None:
    await asyncio.gather(*(submit(stores, i) for i in range(40)))
    leased = await stores.tasks.lease(agent_id="a-1", agent_type="coding", max_tasks=40, lease_seconds=60)
    assert len(leased) == 40
    twice, stale, *rest = leased
    assert twice.lease_token is not None and stale.lease_token is not None
    outcomes = await asyncio.gather(
        *(stores.tasks.complete(t.task_id, t.lease_token or 0, {"n": i}) for i, t in enumerate(rest)),
        stores.tasks.complete(twice.task_id, twice.lease_token, {"first": True}),
        stores.tasks.complete(twice.task_id, twice.lease_token, {"again": True}),
        stores.tasks.complete(stale.task_id, stale.lease_token + 1_000_000, {"stale": True}),
        stores.tasks.complete(rest[0].task_id, rest[0].lease_token or 0, {"owner": "other"}, owner="a-2"),
        return_exceptions=True,
    )
    done, (once, again, refused_stale, refused_owner) = outcomes[: len(rest)], outcomes[len(rest) :]
    assert [r.result for r in done if not isinstance(r, BaseException)] == [{"n": i} for i in range(len(rest))]
    # The same completion twice in one batch: one wins, the other is refused as after a sequential retry.
    assert not isinstance(once, BaseException) and once.result == {"first": True}
    assert isinstance(again, FailedPrecondition) and "not leased" in str(again)
    assert isinstance(refused_stale, FailedPrecondition) and "stale" in str(refused_stale)
    assert isinstance(refused_owner, FailedPrecondition)
    assert (await stores.tasks.get(stale.task_id)).state is TaskState.LEASED
    assert grouped(stores.tasks, "_completions").batches < len(outcomes)


async def test_concurrent_heartbeats_answer_each_agent(stores: Stores) -> None:
    for i in range(30):
        await stores.agents.register(
            agent_id=f"a-{i}", agent_type="coding", labels={}, capacity=1, address="", version=""
        )
    await stores.agents.deregister("a-0")
    ids = [f"a-{i}" for i in range(30)] + ["a-5", "unknown"]
    answers = await asyncio.gather(*(stores.agents.heartbeat(agent_id, 2) for agent_id in ids))
    assert answers == [False] + [True] * 29 + [True, False]
    assert (await stores.agents.get("a-7")).running == 2
    assert grouped(stores.agents, "_heartbeats").batches < len(ids)


# ---- the mechanism alone (no database) -------------------------------------------------------------------


async def test_a_caller_cancelled_before_its_batch_starts_is_left_out() -> None:
    seen: list[list[int]] = []

    async def run(items: Sequence[int]) -> list[Answer[int]]:
        seen.append(list(items))
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit("test", run, shared_error=is_database_unavailable)
    kept, dropped = asyncio.create_task(group(1)), asyncio.create_task(group(2))
    await asyncio.sleep(0)  # both queued; the batch starts on the next turn
    dropped.cancel()
    assert await kept == 10
    assert seen == [[1]]


async def test_a_failed_batch_sends_its_callers_alone_and_an_outage_fails_them_all() -> None:
    async def broken(items: Sequence[int]) -> list[Answer[int]]:
        raise ValueError("one bad row")

    group: GroupCommit[int, int] = GroupCommit("test", broken, shared_error=is_database_unavailable)
    assert await asyncio.gather(group(1), group(2)) == [RUN_ALONE, RUN_ALONE]
    with pytest.raises(ValueError):
        await group(3)  # alone already: its own error

    async def down(items: Sequence[int]) -> list[Answer[int]]:
        raise ConnectionRefusedError("database down")

    outage: GroupCommit[int, int] = GroupCommit("test", down, shared_error=is_database_unavailable)
    outcomes = await asyncio.gather(outage(1), outage(2), return_exceptions=True)
    assert all(isinstance(o, ConnectionRefusedError) for o in outcomes)


async def test_a_lingering_batch_takes_the_items_that_arrive_while_it_waits() -> None:
    seen: list[list[int]] = []

    async def run(items: Sequence[int]) -> list[Answer[int]]:
        seen.append(list(items))
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit("test", run, shared_error=is_database_unavailable, linger_seconds=0.2)
    first = asyncio.create_task(group(1))
    await asyncio.sleep(0.05)  # a later turn of the loop: without the linger, 1 would have gone alone
    second = asyncio.create_task(group(2))
    assert await asyncio.gather(first, second) == [10, 20]
    assert seen == [[1, 2]]
