"""HeartbeatStream: an agent's beats over one long-lived stream, each answered as Heartbeat would answer it.

Against real orchestrators: the stream's answers (leases extended and revoked, "register again"), its refusals
(the same status codes as Heartbeat), and the client's fallback to unary calls whenever the stream cannot carry a
beat (an orchestrator restarted under it; one that does not serve the stream at all).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.v1 import agents_pb2, agents_pb2_grpc

from ._api_support import connect, metrics_port, rpc_error, sample, scrape
from ._fleet_support import OrchestratorFactory, as_agent, grpc_target

HEARTBEAT = "/ai_agents.v1.AgentService/Heartbeat"
HEARTBEAT_STREAM = "/ai_agents.v1.AgentService/HeartbeatStream"


async def served(orchestrator: Orchestrator, method: str, code: str = "OK") -> float:
    return sample(await scrape(metrics_port(orchestrator)), "ai_agents_grpc_requests_total", method=method, code=code)


async def test_one_stream_answers_every_beat_as_heartbeat_would(start_orchestrator: OrchestratorFactory) -> None:
    orchestrator = await start_orchestrator()
    async with await connect(orchestrator) as admin:
        agent = as_agent(admin, "hb-1", "coding")
        await agent.register_agent(agent_id="hb-1", agent_type="coding", capacity=2)
        task = (await admin.submit_task("coding", {})).task
        [lease] = await agent.lease_tasks(agent_id="hb-1", agent_type="coding", max_tasks=1, wait_seconds=0)
        beats = agent.heartbeat_stream()
        try:
            await asyncio.sleep(0.05)
            first = await beats.beat("hb-1", [(task.task_id, lease.lease_token)], 1)
            assert list(first.revoked_task_ids) == [] and not first.reregister
            assert (first.heartbeat_interval_seconds, first.lease_seconds) == (10, 30), "the live settings"
            extended = await admin.get_task(task.task_id)
            assert extended.lease_expires_at.ToDatetime() > lease.task.lease_expires_at.ToDatetime()
            assert (await admin.get_agent("hb-1")).running == 1

            await admin.cancel_task(task.task_id)
            revoked = await beats.beat("hb-1", [(task.task_id, lease.lease_token)], 1)
            assert list(revoked.revoked_task_ids) == [task.task_id]

            await agent.deregister_agent("hb-1")
            assert (await beats.beat("hb-1", [], 0)).reregister
            assert (beats.streamed, beats.unary) == (3, 0), "every beat went over the stream"
            assert beats.open
        finally:
            await beats.close()
        assert not beats.open
        # One stream call, ended as a finished call (OK), and no unary Heartbeat at all.
        assert await served(orchestrator, HEARTBEAT_STREAM) == 1
        assert await served(orchestrator, HEARTBEAT) == 0


async def test_a_beat_the_orchestrator_refuses_ends_the_stream_with_heartbeats_code(
    start_orchestrator: OrchestratorFactory,
) -> None:
    orchestrator = await start_orchestrator()
    async with await connect(orchestrator) as admin, grpc.aio.insecure_channel(grpc_target(orchestrator)) as raw:
        agent = as_agent(admin, "hb-own", "coding")
        await agent.register_agent(agent_id="hb-own", agent_type="coding", capacity=1)
        call = agents_pb2_grpc.AgentServiceStub(raw).HeartbeatStream(metadata=agent.call_metadata(), timeout=10)
        await call.write(agents_pb2.HeartbeatStreamRequest(heartbeat=agents_pb2.HeartbeatRequest(agent_id="hb-own")))
        answer = await call.read()
        assert isinstance(answer, agents_pb2.HeartbeatStreamResponse) and not answer.heartbeat.reregister
        # This agent's credential, another agent's beat: what a unary Heartbeat answers, and the stream ends.
        await call.write(agents_pb2.HeartbeatStreamRequest(heartbeat=agents_pb2.HeartbeatRequest(agent_id="hb-else")))
        assert await call.code() == grpc.StatusCode.PERMISSION_DENIED
        unary = await rpc_error(agent.heartbeat("hb-else", [], 0))
        assert unary.code() == grpc.StatusCode.PERMISSION_DENIED
        assert await call.details() == unary.details()

        # Through the client the refused beat is answered by the unary call's refusal; the next beat streams again.
        beats = agent.heartbeat_stream()
        try:
            refused = await rpc_error(beats.beat("hb-else", [], 0))
            assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
            assert not (await beats.beat("hb-own", [], 0)).reregister
            assert (beats.streamed, beats.unary) == (1, 1)
        finally:
            await beats.close()


async def test_beats_go_on_through_an_orchestrator_restart(start_orchestrator: OrchestratorFactory) -> None:
    """The stream ends with its orchestrator; the next beat opens a new one to the orchestrator now serving."""
    first = await start_orchestrator()
    port = grpc_target(first).rsplit(":", 1)[1]
    async with await OrchestratorClient.connect(f"ipv4:127.0.0.1:{port}", timeout=10) as client:
        agent = as_agent(client, "hb-restart", "coding")
        await agent.register_agent(agent_id="hb-restart", agent_type="coding", capacity=1)
        beats = agent.heartbeat_stream()
        try:
            assert not (await beats.beat("hb-restart", [], 0)).reregister
            assert beats.open
            await first.stop()
            assert not beats.open, "the stream ended with its orchestrator"
            second = await start_orchestrator(grpc_port=int(port))
            await asyncio.wait_for(client.channel.channel_ready(), 10)
            assert not (await beats.beat("hb-restart", [], 0)).reregister, "same database: still registered"
            assert (beats.streamed, beats.unary) == (2, 0), "over a new stream, not a call"
            assert beats.open
        finally:
            await beats.close()
        assert await served(second, HEARTBEAT_STREAM) == 1
        assert await served(second, HEARTBEAT) == 0


class _OlderAgentService(agents_pb2_grpc.AgentServiceServicer):
    """An orchestrator from before HeartbeatStream: the generated base answers it UNIMPLEMENTED."""

    def __init__(self) -> None:
        self.beats: list[str] = []

    async def Heartbeat(
        self, request: agents_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> agents_pb2.HeartbeatResponse:
        self.beats.append(request.agent_id)
        return agents_pb2.HeartbeatResponse(heartbeat_interval_seconds=10, lease_seconds=30)


@pytest.fixture
async def older_orchestrator() -> AsyncIterator[tuple[_OlderAgentService, str]]:
    server = grpc.aio.server()
    service = _OlderAgentService()
    agents_pb2_grpc.add_AgentServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield service, f"ipv4:127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_an_orchestrator_without_the_stream_gets_unary_calls(
    older_orchestrator: tuple[_OlderAgentService, str],
) -> None:
    service, target = older_orchestrator
    async with await OrchestratorClient.connect(target, timeout=10) as client:
        beats = client.heartbeat_stream()
        for _ in range(3):
            answer = await beats.beat("hb-old", [], 0)
            assert (answer.heartbeat_interval_seconds, answer.reregister) == (10, False)
        assert beats.unsupported and not beats.open
        assert (beats.streamed, beats.unary) == (0, 3)
        assert service.beats == ["hb-old"] * 3, "every beat reached the orchestrator exactly once"
