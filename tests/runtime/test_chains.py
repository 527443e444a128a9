"""Chains: a completion hands work on (follow-up tasks, messages) in its own transaction, exactly once.

The store-level guarantees are checked through the gRPC API as an agent would call it (retried completions,
stale tokens, refusals); the end-to-end chain, message delivery to handlers and agents killed mid-chain run with
real agent processes and the `ai-agents` CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from ai_agents.agent._messages import MessageLoop
from ai_agents.client import OrchestratorClient
from ai_agents.convert import TASK_STATE, struct_to_dict
from ai_agents.handlers import HandlerError, HandlerResult, Inbox, ReceivedMessage, TaskContext
from ai_agents.handlers._simulate import SimulateHandler
from ai_agents.handoff import FollowUp, OutgoingMessage
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.serving.identity import CREDENTIAL_METADATA
from ai_agents.store.messages import LOCK_MESSAGE_IDS
from ai_agents.v1 import common_pb2, messaging_pb2, tasks_pb2
from fleet_cli import run_cli
from waits import assert_eventually_async

from ._api_support import connect, rpc_error
from ._fleet_support import (
    AgentProcesses,
    OrchestratorFactory,
    agent_credential,
    as_agent,
    grpc_target,
    http_base,
)
from ._openapi_support import response_validator

pytestmark = pytest.mark.timeout(180)

CHAIN = ["coding", "testing", "security", "documentation"]


async def leased(client: OrchestratorClient, agent_id: str, agent_type: str = "coding") -> tuple[Any, Any]:
    """(the agent's client, its lease of the one queued task of its type)."""
    agent = as_agent(client, agent_id, agent_type)
    await agent.register_agent(agent_id=agent_id, agent_type=agent_type, capacity=1)
    (lease,) = await agent.lease_tasks(agent_id=agent_id, agent_type=agent_type, max_tasks=1, wait_seconds=0)
    return agent, lease


async def children_in_store(dsn: str, parent_id: str) -> list[tuple[str, str, int]]:
    """(task_id, agent_type, follow_up_index) of every task whose parent is `parent_id`, straight from PostgreSQL."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT task_id, agent_type, follow_up_index FROM tasks WHERE parent_task_id = $1 ORDER BY 3",
            parent_id,
        )
    finally:
        await conn.close()
    return [(str(r["task_id"]), r["agent_type"], r["follow_up_index"]) for r in rows]


async def message_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM messages")
        return count
    finally:
        await conn.close()


@pytest.fixture
async def http(orchestrator: Orchestrator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=http_base(orchestrator)) as session:
        yield session


async def http_task(http: aiohttp.ClientSession, task_id: str) -> dict[str, Any]:
    async with http.get(f"/v1/tasks/{task_id}") as response:
        assert response.status == 200, await response.text()
        task: dict[str, Any] = await response.json()
        return task


# ---- the store's guarantees, through the API ---------------------------------------------------------------


async def test_a_completion_queues_its_follow_ups_linked_to_it_and_sends_its_messages(
    client: OrchestratorClient, http: aiohttp.ClientSession, dsn: str
) -> None:
    parent_id = (await client.submit_task("coding", {"change": "x"})).task.task_id
    reader = as_agent(client, "t-reader", "testing")
    await reader.register_agent(agent_id="t-reader", agent_type="testing", capacity=1)
    coder, lease = await leased(client, "c-1")

    done = await coder.complete_task(
        parent_id,
        lease.lease_token,
        {"diff": "+1"},
        follow_ups=[
            FollowUp("testing", {"diff": "+1"}),
            FollowUp("security", {"scan": True}, priority=5, max_attempts=2),
        ],
        messages=[OutgoingMessage("handoff", {"to": "testing"}, recipient_type="testing")],
    )
    assert done.state == tasks_pb2.TASK_STATE_SUCCEEDED
    assert len(done.child_task_ids) == 2 and not done.parent_task_id
    testing_id, security_id = done.child_task_ids
    assert [(c[0], c[1], c[2]) for c in await children_in_store(dsn, parent_id)] == [
        (testing_id, "testing", 0),
        (security_id, "security", 1),
    ]
    testing = await client.get_task(testing_id)
    assert (testing.parent_task_id, list(testing.child_task_ids)) == (parent_id, [])
    assert testing.state == tasks_pb2.TASK_STATE_QUEUED and struct_to_dict(testing.payload) == {"diff": "+1"}
    assert (testing.priority, testing.max_attempts) == (0, 3), "the orchestrator's default max_attempts"
    security = await client.get_task(security_id)
    assert (security.priority, security.max_attempts) == (5, 2)

    # The HTTP API shows the chain from both ends.
    shown = await http_task(http, parent_id)
    assert (shown["parent_task_id"], shown["child_task_ids"]) == (None, [testing_id, security_id])
    assert (await http_task(http, testing_id))["parent_task_id"] == parent_id

    # The follow-up is an ordinary task of its type, and its lease says where it came from.
    (follow_up,) = await reader.lease_tasks(agent_id="t-reader", agent_type="testing", max_tasks=1, wait_seconds=0)
    assert (follow_up.task.task_id, follow_up.task.parent_task_id) == (testing_id, parent_id)

    # The message went out from the agent that completed the task, to the testing type.
    stream = client.receive_messages("t-reader", timeout=10)
    message = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert (message.sender, message.topic, message.recipient_type) == ("c-1", "handoff", common_pb2.AGENT_TYPE_TESTING)
    assert message.sender_task_id == parent_id
    assert struct_to_dict(message.body) == {"to": "testing"}


@pytest.mark.parametrize("group_commit", [True, False], ids=["group-commit", "single-statements"])
async def test_a_retried_completion_creates_the_follow_ups_exactly_once(
    start_orchestrator: OrchestratorFactory, dsn: str, group_commit: bool
) -> None:
    """The agent's retry of a completion that did commit (its answer lost, or the agent died and a copy of the
    call was replayed), sent again and again at once with the same fencing token: one succeeds, nothing doubles."""
    orchestrator = await start_orchestrator(database_group_commit=group_commit)
    async with await connect(orchestrator) as client:
        parent_id = (await client.submit_task("coding", {})).task.task_id
        coder, lease = await leased(client, "c-retry")
        hand_on = {
            "follow_ups": [FollowUp("testing", {"n": 1})],
            "messages": [OutgoingMessage("done", {}, to_all=True)],
        }
        attempts = await asyncio.gather(
            *(coder.complete_task(parent_id, lease.lease_token, {"ok": True}, **hand_on) for _ in range(5)),
            return_exceptions=True,
        )
        succeeded = [a for a in attempts if isinstance(a, tasks_pb2.Task)]
        refused = [a for a in attempts if isinstance(a, grpc.aio.AioRpcError)]
        assert len(succeeded) == 1 and len(refused) == 4, attempts
        assert all(e.code() == grpc.StatusCode.FAILED_PRECONDITION for e in refused)
        # Later still (the agent's retry loop after a lost answer): refused as no longer leased.
        again = await rpc_error(coder.complete_task(parent_id, lease.lease_token, {"ok": True}, **hand_on))
        assert again.code() == grpc.StatusCode.FAILED_PRECONDITION and "succeeded" in again.details()

        children = await children_in_store(dsn, parent_id)
        assert [c[0] for c in children] == list(succeeded[0].child_task_ids) and len(children) == 1
        assert list((await client.get_task(parent_id)).child_task_ids) == [children[0][0]]
    assert await message_count(dsn) == 1


async def test_a_stale_lease_token_creates_no_follow_ups(start_orchestrator: OrchestratorFactory, dsn: str) -> None:
    orchestrator = await start_orchestrator(lease_seconds=1, maintenance_interval_seconds=0.2)
    async with await connect(orchestrator) as client:
        parent_id = (await client.submit_task("coding", {})).task.task_id
        first, stale = await leased(client, "c-slow")

        async def back_in_queue() -> None:
            assert (await client.get_task(parent_id)).state == tasks_pb2.TASK_STATE_QUEUED

        await assert_eventually_async(
            back_in_queue, timeout_sec=15, message="the expired lease was not returned to the queue"
        )
        second, current = await leased(client, "c-fast")
        assert current.lease_token != stale.lease_token

        late = await rpc_error(
            first.complete_task(parent_id, stale.lease_token, {"who": "slow"}, follow_ups=[FollowUp("testing")])
        )
        assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert await children_in_store(dsn, parent_id) == [], "a refused completion creates nothing"

        done = await second.complete_task(
            parent_id, current.lease_token, {"who": "fast"}, follow_ups=[FollowUp("testing")]
        )
        assert len(done.child_task_ids) == 1 and struct_to_dict(done.result) == {"who": "fast"}
        assert len(await children_in_store(dsn, parent_id)) == 1


def _raw_request(task_id: str, token: int, **fields: Any) -> tasks_pb2.CompleteTaskRequest:
    return tasks_pb2.CompleteTaskRequest(task_id=task_id, lease_token=token, **fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"follow_ups": [tasks_pb2.FollowUp(agent_type=99)]}, "follow_ups[0].agent_type: unknown agent type '#99'"),
        ({"follow_ups": [tasks_pb2.FollowUp()]}, "follow_ups[0].agent_type: required"),
        (
            {"follow_ups": [tasks_pb2.FollowUp(agent_type=common_pb2.AGENT_TYPE_TESTING)] * 17},
            "follow_ups: 17 follow-ups exceeds the limit of 16",
        ),
        (
            {"follow_ups": [tasks_pb2.FollowUp(agent_type=common_pb2.AGENT_TYPE_TESTING, priority=5000)]},
            "follow_ups[0].priority: must be an integer between -1000 and 1000",
        ),
        ({"messages": [tasks_pb2.CompletionMessage(topic="x")]}, "messages[0]: set exactly one of"),
        (
            {"messages": [tasks_pb2.CompletionMessage(to_all=True, recipient_type=common_pb2.AGENT_TYPE_CODING)]},
            "messages[0]: set exactly one of",
        ),
        (
            {"messages": [tasks_pb2.CompletionMessage(recipient_agent_id="ghost")]},
            "messages[0].recipient_agent_id: no agent 'ghost' is registered",
        ),
        ({"messages": [tasks_pb2.CompletionMessage(to_all=True)] * 17}, "messages: 17 messages exceeds the limit"),
    ],
)
async def test_what_a_completion_hands_on_is_validated_naming_the_field(
    client: OrchestratorClient, dsn: str, fields: dict[str, Any], expected: str
) -> None:
    parent_id = (await client.submit_task("coding", {})).task.task_id
    coder, lease = await leased(client, "c-bad")
    metadata = ((CREDENTIAL_METADATA, agent_credential("c-bad", "coding")),)
    err = await rpc_error(
        coder.tasks.CompleteTask(_raw_request(parent_id, lease.lease_token, **fields), metadata=metadata)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in err.details(), err.details()
    # Refused as a whole: the task is still leased, nothing was created, and a valid completion still works.
    assert (await client.get_task(parent_id)).state == tasks_pb2.TASK_STATE_LEASED
    assert await children_in_store(dsn, parent_id) == [] and await message_count(dsn) == 0
    done = await coder.complete_task(parent_id, lease.lease_token, {}, follow_ups=[FollowUp("testing")])
    assert len(done.child_task_ids) == 1


async def test_an_oversized_follow_up_payload_is_refused_naming_it(start_orchestrator: OrchestratorFactory) -> None:
    orchestrator = await start_orchestrator(max_payload_bytes=1024)
    async with await connect(orchestrator) as client:
        parent_id = (await client.submit_task("coding", {})).task.task_id
        coder, lease = await leased(client, "c-big")
        big = {"blob": "x" * 2000}
        err = await rpc_error(
            coder.complete_task(
                parent_id, lease.lease_token, {}, follow_ups=[FollowUp("testing"), FollowUp("security", big)]
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "follow_ups[1].payload: 2011 bytes exceeds the limit of 1024" in err.details()
        err = await rpc_error(
            coder.complete_task(parent_id, lease.lease_token, {}, messages=[OutgoingMessage("t", big, to_all=True)])
        )
        assert "messages[0].body: 2011 bytes exceeds the limit of 1024" in err.details()


async def test_a_stream_from_now_skips_the_history_and_says_where_it_starts(client: OrchestratorClient) -> None:
    reader = as_agent(client, "c-new", "coding")
    await reader.register_agent(agent_id="c-new", agent_type="coding", capacity=1)
    old = await client.broadcast_message(sender="ops", agent_type="coding", topic="old")
    call = client.messaging.ReceiveMessages(
        messaging_pb2.ReceiveMessagesRequest(agent_id="c-new", from_now=True), timeout=20
    )
    try:
        opening = await asyncio.wait_for(call.read(), 10)
        assert not opening.HasField("message") and opening.opened_after_message_id == old.message_id
        new = await client.broadcast_message(sender="ops", agent_type="coding", topic="new")
        arrived = await asyncio.wait_for(call.read(), 10)
        assert (arrived.message.message_id, arrived.message.topic) == (new.message_id, "new")
    finally:
        call.cancel()
    unknown = client.messaging.ReceiveMessages(
        messaging_pb2.ReceiveMessagesRequest(agent_id="ghost", from_now=True), timeout=5
    )
    assert (await rpc_error(unknown.read())).code() == grpc.StatusCode.NOT_FOUND


# ---- the handler's side -------------------------------------------------------------------------------------


def context(
    agent_type: str, payload: dict[str, Any], inbox: Inbox | None = None, *, parent: str | None = None
) -> TaskContext:
    async def no_progress(_progress: float, _message: str) -> None:
        return None

    return TaskContext(
        task_id="t",
        agent_type=agent_type,
        payload=payload,
        attempt=1,
        report_progress=no_progress,
        inbox=inbox or Inbox(),
        parent_task_id=parent,
    )


async def test_simulate_hands_on_the_rest_of_its_chain() -> None:
    handler = SimulateHandler(latency_ms=0, failure_rate=0)
    payload = {"work": 1, "simulate_chain": ["testing", "security"]}
    step = await handler.run(context("coding", payload))
    assert isinstance(step, HandlerResult) and step.result["handed_on_to"] == "testing"
    assert list(step.follow_ups) == [FollowUp("testing", {"work": 1, "simulate_chain": ["security"]})]
    last = await handler.run(context("security", {"work": 1, "simulate_chain": []}))
    assert isinstance(last, dict) and "handed_on_to" not in last, "the end of a chain hands nothing on"
    with pytest.raises(HandlerError, match="simulate_chain: must be a list") as refused:
        await handler.run(context("coding", {"simulate_chain": "testing"}))
    assert not refused.value.retryable


async def test_simulate_sends_the_messages_of_its_type_and_waits_for_the_topic_it_awaits() -> None:
    handler = SimulateHandler(latency_ms=0, failure_rate=0)
    spec = {"recipient_type": "testing", "topic": "handoff", "body": {"k": "v"}}
    payload = {"simulate_send": {"coding": [spec]}, "simulate_await_topic": {"testing": "handoff"}}
    sent = await handler.run(context("coding", payload))
    assert isinstance(sent, HandlerResult)
    assert list(sent.messages) == [OutgoingMessage("handoff", {"k": "v"}, recipient_type="testing")]

    # A follow-up waits for what its parent sent, not for the same topic from another chain's task.
    inbox = Inbox()
    waiting = asyncio.create_task(handler.run(context("testing", payload, inbox, parent="p-1")))
    inbox.add(ReceivedMessage(message_id=6, sender="coding-2", topic="handoff", body={}, sender_task_id="p-2"))
    inbox.add(ReceivedMessage(message_id=7, sender="other", topic="noise", body={}, sender_task_id="p-1"))
    await asyncio.sleep(0)  # the handler looks at what it holds and goes on waiting
    assert not waiting.done()
    inbox.add(ReceivedMessage(message_id=8, sender="coding-1", topic="handoff", body={"k": "v"}, sender_task_id="p-1"))
    result = await asyncio.wait_for(waiting, 5)
    assert isinstance(result, dict)
    assert result["received_messages"] == [
        {"message_id": 8, "sender": "coding-1", "sender_task_id": "p-1", "topic": "handoff", "body": {"k": "v"}}
    ]
    with pytest.raises(HandlerError, match=r"no message with topic 'handoff' arrived within 0\.05s"):
        await handler.run(context("testing", {**payload, "simulate_await_seconds": 0.05}))


# ---- with real agent processes -----------------------------------------------------------------------------


def cli_env(orchestrator: Orchestrator) -> dict[str, str]:
    return {**os.environ, "AI_AGENTS_ORCHESTRATOR_TARGET": grpc_target(orchestrator)}


async def agent_info(agents: AgentProcesses, agent_id: str) -> dict[str, Any]:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{agents.http_ports[agent_id]}/v1/info") as response,
        ):
            info: dict[str, Any] = await response.json()
            return info
    except aiohttp.ClientError as exc:
        raise AssertionError(f"agent {agent_id} not answering yet: {exc!r}") from exc


async def test_a_chain_of_four_agent_types_runs_end_to_end_and_watch_shows_it(
    orchestrator: Orchestrator, client: OrchestratorClient, agents: AgentProcesses, http: aiohttp.ClientSession
) -> None:
    target = grpc_target(orchestrator)
    for agent_type in CHAIN:
        agents.start(agent_type, target)
    payload = {"change": "add a health check", "simulate_chain": CHAIN[1:], "vulnerabilities_found": 2}
    root_id = (await client.submit_task("coding", payload)).task.task_id

    # `watch` follows the chain as the completions create it, and prints each task in chain order.
    watched = await asyncio.to_thread(
        run_cli, "watch", root_id, "--quiet", "--timeout-total", "90", env=cli_env(orchestrator), timeout=120
    )
    chain = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [t["agent_type"] for t in chain] == CHAIN
    assert [t["state"] for t in chain] == ["succeeded"] * 4
    assert chain[0]["task_id"] == root_id and chain[0]["parent_task_id"] is None
    for parent, child in itertools.pairwise(chain):
        assert parent["child_task_ids"] == [child["task_id"]]
        assert child["parent_task_id"] == parent["task_id"]
        assert parent["result"]["handed_on_to"] == child["agent_type"]
        assert child["payload"]["change"] == "add a health check", "the work itself is handed on"
    assert chain[-1]["child_task_ids"] == [] and "handed_on_to" not in chain[-1]["result"]
    assert chain[2]["result"]["vulnerabilities_found"] == 2
    # The CLI prints each task exactly as GET /v1/tasks/{id} answers it, and that is what openapi.json describes.
    for task in chain:
        assert await http_task(http, task["task_id"]) == task
        response_validator("/v1/tasks/{task_id}", "GET", 200).validate(task)

    # Without following the chain, watch waits for the named task only.
    alone = await asyncio.to_thread(
        run_cli, "watch", root_id, "--quiet", "--no-chain", env=cli_env(orchestrator), timeout=60
    )
    assert [json.loads(line)["task_id"] for line in alone.stdout.splitlines()] == [root_id]


async def test_messages_reach_the_handler_of_the_agent_they_are_addressed_to(
    orchestrator: Orchestrator, client: OrchestratorClient, agents: AgentProcesses
) -> None:
    target = grpc_target(orchestrator)
    coder = agents.start("coding", target)
    tester = agents.start("testing", target)

    async def stream_open() -> None:
        info = await agent_info(agents, tester)
        assert info["messages"]["cursor"] is not None, info

    await assert_eventually_async(
        stream_open, timeout_sec=30, message="the testing agent never opened its message stream"
    )
    # A direct message from an operator, then a chain whose coding step sends the testing type a message with
    # its completion; the testing step waits for that message and reports what its agent received.
    await client.send_message(sender="ops", recipient_agent_id=tester, topic="direct", body={"n": 1})
    payload = {
        "simulate_chain": ["testing"],
        "simulate_send": {"coding": [{"recipient_type": "testing", "topic": "handoff", "body": {"notes": "see diff"}}]},
        "simulate_await_topic": {"testing": "handoff"},
        # A loaded machine (a CI run beside other suites) once let the default 10 s pass before the stream delivered.
        "simulate_await_seconds": 45,
    }
    root_id = (await client.submit_task("coding", payload)).task.task_id

    async def chain_done() -> str:
        root = await client.get_task(root_id)
        assert TASK_STATE.to_str(root.state) == "succeeded" and root.child_task_ids, TASK_STATE.to_str(root.state)
        child = await client.get_task(root.child_task_ids[0])
        assert TASK_STATE.to_str(child.state) == "succeeded", (TASK_STATE.to_str(child.state), child.error)
        return child.task_id

    child_id = await assert_eventually_async(chain_done, timeout_sec=60, message="the chain did not finish")
    result = struct_to_dict((await client.get_task(child_id)).result)
    (received,) = result["received_messages"]
    assert (received["topic"], received["sender"], received["body"]) == ("handoff", coder, {"notes": "see diff"})
    assert received["sender_task_id"] == root_id, "sent by the completion of the follow-up's parent"
    info = await agent_info(agents, tester)
    assert info["messages"]["received"] == 2, "the direct message and the handoff"
    # The coding agent is not of the addressed type: it received neither.
    assert (await agent_info(agents, coder))["messages"]["received"] == 0


async def test_chains_finish_exactly_once_when_agents_die_mid_chain(
    start_orchestrator: OrchestratorFactory, agents: AgentProcesses, dsn: str
) -> None:
    """Agents SIGKILLed while they run chain steps (and between completing one and leasing the next): every
    chain still finishes, each step exactly once, because a follow-up exists only with its parent's completion."""
    orchestrator = await start_orchestrator(lease_seconds=2, maintenance_interval_seconds=0.2)
    target = grpc_target(orchestrator)
    slow = {"AI_AGENTS_SIMULATE_LATENCY_MS": "400", "AI_AGENTS_HEARTBEAT_INTERVAL_SECONDS": "1"}
    # Each victim is at first the only agent of its type, so it is certain to lease that type's steps; its
    # survivor starts only once it is dead. (Started side by side, the survivor could take every step first.)
    victims = {agent_type: agents.start(agent_type, target, **slow) for agent_type in ("coding", "testing")}
    for agent_type in CHAIN:
        if agent_type not in victims:
            agents.start(agent_type, target, **slow)
    chains = 6
    async with await OrchestratorClient.connect(target) as client:
        roots = [
            (await client.submit_task("coding", {"n": n, "simulate_chain": CHAIN[1:]})).task.task_id
            for n in range(chains)
        ]

        async def running_a_task(agent_id: str) -> None:
            assert await agents.running_tasks(agent_id), f"{agent_id} runs nothing yet"

        for agent_type, victim in victims.items():
            await assert_eventually_async(
                lambda v=victim: running_a_task(v), timeout_sec=30, message=f"{victim} never ran a task"
            )
            agents.kill(victim, signal.SIGKILL)
            agents.wait(victim, timeout=10)
            agents.start(agent_type, target, **slow)

        async def all_finished() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                done = await conn.fetchval("SELECT count(*) FROM tasks WHERE state = 'succeeded'")
            finally:
                await conn.close()
            assert done == chains * len(CHAIN), f"{done} of {chains * len(CHAIN)} steps succeeded"

        await assert_eventually_async(
            all_finished, timeout_sec=120, interval_sec=0.5, message="not every chain finished"
        )

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT task_id, parent_task_id, agent_type, state, attempts, child_task_ids FROM tasks"
        )
    finally:
        await conn.close()
    assert len(rows) == chains * len(CHAIN), "no step was created twice"
    by_id = {str(r["task_id"]): r for r in rows}
    for root in roots:
        walked, task_id = [], root
        while task_id is not None:
            row = by_id[task_id]
            walked.append(row["agent_type"])
            kids = [str(k) for k in row["child_task_ids"]]
            assert len(kids) <= 1 and all(str(by_id[k]["parent_task_id"]) == task_id for k in kids)
            task_id = kids[0] if kids else None
        assert walked == CHAIN
    assert any(r["attempts"] > 1 for r in rows), "a killed agent's step was redelivered"


async def test_a_follow_up_of_an_unknown_agent_type_fails_the_task_with_the_reason(
    orchestrator: Orchestrator, client: OrchestratorClient, agents: AgentProcesses
) -> None:
    agents.start("coding", grpc_target(orchestrator))
    task_id = (await client.submit_task("coding", {"simulate_chain": ["nobody"]})).task.task_id

    async def failed() -> tasks_pb2.Task:
        task = await client.get_task(task_id)
        assert TASK_STATE.to_str(task.state) == "failed", TASK_STATE.to_str(task.state)
        return task

    task = await assert_eventually_async(
        failed, timeout_sec=30, message="the task with an unknown follow-up type did not fail"
    )
    assert "follow_ups[0].agent_type: unknown agent type 'nobody'" in task.error
    assert task.attempts == 1 and not task.child_task_ids, "not retried: no attempt could succeed"


async def test_an_agent_killed_right_after_completing_leaves_its_follow_ups_exactly_once(
    start_orchestrator: OrchestratorFactory, agents: AgentProcesses, dsn: str
) -> None:
    orchestrator = await start_orchestrator(lease_seconds=1, maintenance_interval_seconds=0.2)
    target = grpc_target(orchestrator)
    coder = agents.start("coding", target)
    async with await OrchestratorClient.connect(target) as client:
        root_id = (await client.submit_task("coding", {"simulate_chain": ["testing"]})).task.task_id

        async def completed() -> None:
            assert (await client.get_task(root_id)).state == tasks_pb2.TASK_STATE_SUCCEEDED

        await assert_eventually_async(
            completed, timeout_sec=30, interval_sec=0.02, message="the coding step did not complete"
        )
        agents.kill(coder, signal.SIGKILL)  # before it hears back, or just after: the completion has committed
        agents.wait(coder, timeout=10)
        agents.start("testing", target)

        async def follow_up_done() -> str:
            children = list((await client.get_task(root_id)).child_task_ids)
            assert len(children) == 1, f"follow-ups: {children}"
            child = await client.get_task(children[0])
            assert child.state == tasks_pb2.TASK_STATE_SUCCEEDED, TASK_STATE.to_str(child.state)
            return child.task_id

        child_id = await assert_eventually_async(follow_up_done, timeout_sec=30, message="the follow-up did not run")
        root = await client.get_task(root_id)
        assert (root.attempts, list(root.child_task_ids)) == (1, [child_id]), "completed once, never redelivered"
    assert [c[0] for c in await children_in_store(dsn, root_id)] == [child_id]


async def test_a_completion_too_large_to_send_fails_the_task_instead_of_being_retried(
    orchestrator: Orchestrator, client: OrchestratorClient, agents: AgentProcesses
) -> None:
    # The agent's message limit, as the orchestrator's would refuse it: the follow-up repeats the 3 KB payload.
    agents.start("coding", grpc_target(orchestrator), AI_AGENTS_MAX_MESSAGE_BYTES="4096")
    payload = {"blob": "x" * 3000, "simulate_chain": ["testing"]}
    task_id = (await client.submit_task("coding", payload)).task.task_id

    async def failed() -> tasks_pb2.Task:
        task = await client.get_task(task_id)
        assert TASK_STATE.to_str(task.state) == "failed", TASK_STATE.to_str(task.state)
        return task

    task = await assert_eventually_async(
        failed, timeout_sec=30, message="the oversized completion did not fail the task"
    )
    assert "over the 4096-byte limit" in task.error and task.attempts == 1, task.error


async def test_the_agent_message_loop_resumes_after_the_last_message_it_saw(
    start_orchestrator: OrchestratorFactory,
) -> None:
    """The stream's orchestrator stops; what is sent meanwhile arrives once the loop reopens, and only once."""
    first = await start_orchestrator()
    other = await start_orchestrator()
    assert first.grpc is not None
    port = first.grpc.port
    async with await connect(other) as admin, await OrchestratorClient.connect(f"ipv4:127.0.0.1:{port}") as client:
        await as_agent(admin, "c-loop", "coding").register_agent(agent_id="c-loop", agent_type="coding", capacity=1)
        before = await admin.broadcast_message(sender="ops", agent_type="coding", topic="history")
        inbox = Inbox()
        loop = MessageLoop(client, "c-loop", inbox)
        running = asyncio.create_task(loop.run())
        try:

            async def holds(topics: list[str]) -> None:
                assert [m.topic for m in inbox.messages()] == topics

            async def opened() -> None:
                assert inbox.cursor == before.message_id and loop.open

            await assert_eventually_async(opened, timeout_sec=10, message="the stream did not open from now")
            await admin.broadcast_message(sender="ops", agent_type="coding", topic="one")
            await assert_eventually_async(lambda: holds(["one"]), timeout_sec=10)

            await first.stop()  # ends the stream; the loop retries the same address with a back-off
            await admin.send_message(sender="ops", recipient_agent_id="c-loop", topic="two")
            await start_orchestrator(grpc_port=port)
            await assert_eventually_async(
                lambda: holds(["one", "two"]), timeout_sec=20, message="not resumed after the last message"
            )
            await admin.broadcast_message(sender="ops", agent_type=None, topic="three")
            await assert_eventually_async(lambda: holds(["one", "two", "three"]), timeout_sec=10)
            assert inbox.received == 3, "nothing held twice, no history replayed"
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


async def chain_rows(dsn: str, root_id: str) -> list[tuple[str, int, str | None]]:
    """(agent_type, chain_depth, root_task_id) of the chain's first task and every task of the chain."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT agent_type, chain_depth, root_task_id FROM tasks WHERE task_id = $1 OR root_task_id = $1 "
            "ORDER BY chain_depth, agent_type",
            root_id,
        )
    finally:
        await conn.close()
    return [(r["agent_type"], r["chain_depth"], str(r["root_task_id"]) if r["root_task_id"] else None) for r in rows]


async def test_a_follow_up_past_max_chain_depth_is_refused_and_creates_nothing(
    start_orchestrator: OrchestratorFactory, dsn: str
) -> None:
    orchestrator = await start_orchestrator(max_chain_depth=2)
    async with await connect(orchestrator) as client:
        root_id = (await client.submit_task("coding", {})).task.task_id
        step, lease = await leased(client, "depth-0", "coding")
        await step.complete_task(root_id, lease.lease_token, {}, follow_ups=[FollowUp("testing")])
        step, lease = await leased(client, "depth-1", "testing")
        await step.complete_task(lease.task.task_id, lease.lease_token, {}, follow_ups=[FollowUp("security")])
        step, lease = await leased(client, "depth-2", "security")

        err = await rpc_error(
            step.complete_task(lease.task.task_id, lease.lease_token, {}, follow_ups=[FollowUp("documentation")])
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "3 steps after the first task" in err.details() and "max_chain_depth" in err.details(), err.details()
        assert (await client.get_task(lease.task.task_id)).state == tasks_pb2.TASK_STATE_LEASED, "nothing applied"
        assert await children_in_store(dsn, lease.task.task_id) == []
        # The same step without a follow-up is within budget.
        await step.complete_task(lease.task.task_id, lease.lease_token, {"last": True})
    assert await chain_rows(dsn, root_id) == [("coding", 0, None), ("testing", 1, root_id), ("security", 2, root_id)]


async def test_concurrent_steps_of_one_chain_cannot_together_overrun_max_chain_tasks(
    start_orchestrator: OrchestratorFactory, dsn: str
) -> None:
    orchestrator = await start_orchestrator(max_chain_tasks=10)
    async with await connect(orchestrator) as client:
        root_id = (await client.submit_task("coding", {})).task.task_id
        step, lease = await leased(client, "fan-0", "coding")
        await step.complete_task(
            root_id, lease.lease_token, {}, follow_ups=[FollowUp("testing", {"n": n}) for n in range(6)]
        )
        # Seven tasks in the chain; six steps each ask for one more at the same instant: three fit.
        tester = as_agent(client, "fan-1", "testing")
        await tester.register_agent(agent_id="fan-1", agent_type="testing", capacity=6)
        leases = await tester.lease_tasks(agent_id="fan-1", agent_type="testing", max_tasks=6, wait_seconds=0)
        assert len(leases) == 6
        outcomes = await asyncio.gather(
            *(
                tester.complete_task(lease.task.task_id, lease.lease_token, {}, follow_ups=[FollowUp("security")])
                for lease in leases
            ),
            return_exceptions=True,
        )
        done = [o for o in outcomes if isinstance(o, tasks_pb2.Task)]
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert (len(done), len(refused)) == (3, 3), outcomes
        assert all(e.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_chain_tasks" in e.details() for e in refused)
        assert "would hold 11 tasks, over the limit of 10" in refused[0].details(), refused[0].details()
    rows = await chain_rows(dsn, root_id)
    assert len(rows) == 10 and sorted({r[1] for r in rows}) == [0, 1, 2]


async def test_a_message_id_is_never_seen_before_a_smaller_one_commits(client: OrchestratorClient, dsn: str) -> None:
    """Ids follow commit order: a reader's cursor that passed id N would otherwise skip, for good, a smaller id
    committed after it. Here a writer holds a message uncommitted (as every writer does, under the ids' lock)."""
    agent = as_agent(client, "c-late", "coding")
    await agent.register_agent(agent_id="c-late", agent_type="coding", capacity=1)
    writer = await asyncpg.connect(dsn)
    try:
        in_flight = writer.transaction()
        await in_flight.start()
        await writer.execute(LOCK_MESSAGE_IDS)
        early_id = await writer.fetchval(
            "INSERT INTO messages (sender, recipient_agent_id, topic, body) "
            "VALUES ('w', 'c-late', 'early', '{}') RETURNING message_id"
        )
        late = asyncio.create_task(
            client.send_message(sender="ops", recipient_agent_id="c-late", topic="late", body={})
        )
        finished, _ = await asyncio.wait({late}, timeout=1.0)
        assert not finished, "a later message must not commit while an earlier id is still in flight"
        await in_flight.commit()
        late_message = await asyncio.wait_for(late, 10)
    finally:
        await writer.close()
    assert late_message.message_id > early_id
    stream = agent.message_stream("c-late", after_message_id=0)
    received = [await asyncio.wait_for(anext(stream), 10) for _ in range(2)]
    await stream.aclose()
    assert [(r.message.message_id, r.message.topic) for r in received] == [
        (early_id, "early"),
        (late_message.message_id, "late"),
    ]
