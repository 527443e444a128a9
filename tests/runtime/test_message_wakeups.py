"""A message wakes the message streams of its recipients only: its NOTIFY names them (an agent, a type, everyone),
and each orchestrator wakes just the streams that payload concerns. Before, every message woke every stream, and
1,000 agents meant 1,000 reads per message on every orchestrator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.handoff import OutgoingMessage
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.store.database import Database, Stores, Wakeups
from ai_agents.store.follow_ups import Handoff
from ai_agents.store.messages import MESSAGES_CHANNEL, stream_wake_keys
from ai_agents.v1 import messaging_pb2
from waits import assert_eventually_async

from ._fleet_support import as_agent


@pytest.fixture
async def database(dsn: str) -> AsyncIterator[tuple[Database, Stores]]:
    db = Database(dsn, min_size=2, max_size=4, agent_stale_seconds=30)
    stores = await db.start(connect_timeout=10)
    yield db, stores
    await db.close()


async def _stream_waiting(wakeups: Wakeups, agent_id: str, agent_type: str) -> asyncio.Task[bool]:
    seen = {key: wakeups.generation(key) for key in stream_wake_keys(agent_id, agent_type)}
    waiter = asyncio.create_task(wakeups.wait_any(seen, 5.0))
    await asyncio.sleep(0)
    return waiter


async def _until_marker(conn: asyncpg.Connection, heard: list[str]) -> None:
    """Wait for everything committed so far to be heard: notifications arrive in commit order, so once a marker
    sent now arrives, so has every one before it (no fixed sleep). The marker is taken off `heard`."""
    await conn.execute("SELECT pg_notify($1, 'marker')", MESSAGES_CHANNEL)

    async def marker_heard() -> None:
        assert "marker" in heard, heard

    await assert_eventually_async(marker_heard, timeout_sec=5, interval_sec=0.02)
    heard.remove("marker")


async def test_a_waiter_on_several_keys_wakes_on_any_of_them_and_on_no_other() -> None:
    wakeups = Wakeups()
    a = await _stream_waiting(wakeups, "a-1", "coding")
    b = await _stream_waiting(wakeups, "b-1", "testing")
    wakeups.notify("agent:a-1")
    done, _ = await asyncio.wait([a, b], timeout=0.2)
    assert done == {a}, "a direct message woke another agent's stream"
    b_again = b
    wakeups.notify("type:testing")
    assert await b_again is True
    seen = {key: wakeups.generation(key) for key in stream_wake_keys("c-1", "coding")}
    wakeups.notify("all")  # before the wait: not lost
    assert await wakeups.wait_any(seen, 0.01) is True


async def test_each_orchestrator_wakes_only_the_streams_a_notification_names(
    database: tuple[Database, Stores],
) -> None:
    db, _ = database
    wakeups = db.message_wakeups
    coder = await _stream_waiting(wakeups, "coder-1", "coding")
    other_coder = await _stream_waiting(wakeups, "coder-2", "coding")
    tester = await _stream_waiting(wakeups, "tester-1", "testing")
    db._on_notification(None, 0, MESSAGES_CHANNEL, "agent:coder-1")
    done, _ = await asyncio.wait([coder, other_coder, tester], timeout=0.2)
    assert done == {coder}
    db._on_notification(None, 0, MESSAGES_CHANNEL, "type:coding")
    done, _ = await asyncio.wait([other_coder, tester], timeout=0.2)
    assert done == {other_coder}
    # An older orchestrator announces a bare message id: every stream wakes, as before.
    db._on_notification(None, 0, MESSAGES_CHANNEL, "1234")
    assert await tester is True


async def test_messages_announce_their_recipients(database: tuple[Database, Stores], dsn: str) -> None:
    _, stores = database
    heard: list[str] = []
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener(MESSAGES_CHANNEL, lambda _c, _p, _ch, payload: heard.append(payload))
        for audience in ({"recipient_agent_id": "a-1"}, {"recipient_type": "security"}, {"to_all": True}):
            await stores.messages.insert(
                sender="s",
                recipient_agent_id=audience.get("recipient_agent_id"),
                recipient_type=audience.get("recipient_type"),
                to_all=bool(audience.get("to_all")),
                topic="t",
                body={},
            )
        await _until_marker(listener, heard)
        assert heard == ["agent:a-1", "type:security", "all"]

        # A completion's messages: one NOTIFY per distinct audience, however many messages it sends.
        heard.clear()
        task, _ = await stores.tasks.submit(
            agent_type="coding", payload={}, idempotency_key=None, priority=0, max_attempts=3
        )
        (leased,) = await stores.tasks.lease(agent_id="coder-9", agent_type="coding", max_tasks=1, lease_seconds=30)
        messages = (
            OutgoingMessage(topic="x", recipient_agent_id="a-2"),
            OutgoingMessage(topic="y", recipient_agent_id="a-2"),
            OutgoingMessage(topic="z", recipient_type="testing"),
        )
        await stores.tasks.complete(
            task.task_id, leased.lease_token or 0, {}, owner="coder-9", handoff=Handoff(messages=messages)
        )
        await _until_marker(listener, heard)
        assert sorted(heard) == ["agent:a-2", "type:testing"]
    finally:
        await listener.close()


async def test_keys_of_agents_not_streaming_here_are_not_kept() -> None:
    wakeups = Wakeups()
    # Agents streaming from another orchestrator get messages too: their notifications create nothing here.
    for i in range(100):
        wakeups.notify(f"agent:elsewhere-{i}")
    assert not [k for k in wakeups._generation if k.startswith("agent:")]
    # A stream that ended forgets its agent's key; one still waiting keeps its own.
    ended = await _stream_waiting(wakeups, "gone-1", "coding")
    still = await _stream_waiting(wakeups, "here-1", "coding")
    ended.cancel()
    await asyncio.gather(ended, return_exceptions=True)
    wakeups.forget("agent:gone-1")
    wakeups.forget("agent:here-1")  # refused: a stream still waits on it
    assert [k for k in wakeups._generation if k.startswith("agent:")] == ["agent:here-1"]
    wakeups.notify("agent:here-1")
    assert await still is True


async def test_a_stream_that_ends_forgets_its_agent(orchestrator: Orchestrator, client: OrchestratorClient) -> None:
    agent = as_agent(client, "c-1", "coding")
    await agent.register_agent(agent_id="c-1", agent_type="coding", capacity=1)
    wakeups = orchestrator.database.message_wakeups
    call = agent.messaging.ReceiveMessages(messaging_pb2.ReceiveMessagesRequest(agent_id="c-1"), timeout=30)

    async def watched() -> None:
        assert wakeups._live.get("agent:c-1") == 1, dict(wakeups._live)

    await assert_eventually_async(watched, timeout_sec=5, interval_sec=0.02)
    call.cancel()

    async def forgotten() -> None:
        assert "agent:c-1" not in wakeups._generation, list(wakeups._generation)

    await assert_eventually_async(forgotten, timeout_sec=5, interval_sec=0.02)
