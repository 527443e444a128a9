"""A stopping orchestrator ends the agents' open streams at once instead of waiting out its grace period.

Every agent holds a HeartbeatStream (and a ReceiveMessages stream when it takes messages) for as long as it runs;
grpc.aio's stop(grace) would wait the whole grace for them, so every rolling update would too. Against a real
orchestrator with a 30 s grace: both streams end as finished calls (OK, the agent reopens elsewhere), and the stop
takes a small part of the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import grpc
from ai_agents.client import OrchestratorClient
from ai_agents.v1 import agents_pb2, agents_pb2_grpc, messaging_pb2, messaging_pb2_grpc

from ._api_support import connect
from ._fleet_support import OrchestratorFactory, as_agent, grpc_target

GRACE_SECONDS = 30.0

Metadata = tuple[tuple[str, str], ...]


async def _registered_with_a_stream(
    admin: OrchestratorClient, raw: grpc.aio.Channel, agent_id: str
) -> tuple[Metadata, grpc.aio.StreamStreamCall[Any, Any]]:
    """A registered agent's credential, and its HeartbeatStream with one beat answered (so the stream is open)."""
    agent = as_agent(admin, agent_id, "coding")
    await agent.register_agent(agent_id=agent_id, agent_type="coding", capacity=1)
    metadata = agent.call_metadata()
    beats = agents_pb2_grpc.AgentServiceStub(raw).HeartbeatStream(metadata=metadata)
    await beats.write(agents_pb2.HeartbeatStreamRequest(heartbeat=agents_pb2.HeartbeatRequest(agent_id=agent_id)))
    answer = await beats.read()
    assert isinstance(answer, agents_pb2.HeartbeatStreamResponse) and not answer.heartbeat.reregister
    return metadata, beats


async def test_stop_ends_heartbeat_and_message_streams_within_a_fraction_of_the_grace(
    start_orchestrator: OrchestratorFactory,
) -> None:
    orchestrator = await start_orchestrator(shutdown_grace_seconds=GRACE_SECONDS)
    async with await connect(orchestrator) as admin, grpc.aio.insecure_channel(grpc_target(orchestrator)) as raw:
        metadata, beats = await _registered_with_a_stream(admin, raw, "stop-1")
        messages = messaging_pb2_grpc.MessagingServiceStub(raw).ReceiveMessages(
            messaging_pb2.ReceiveMessagesRequest(agent_id="stop-1", from_now=True), metadata=metadata
        )
        opened = await messages.read()
        assert isinstance(opened, messaging_pb2.ReceiveMessagesResponse) and not opened.HasField("message")

        started = time.monotonic()
        await orchestrator.stop()
        took = time.monotonic() - started

        assert took < GRACE_SECONDS / 6, f"the stop took {took:.1f}s of a {GRACE_SECONDS:.0f}s grace"
        # Ended by the server as finished calls, not cut off: what an agent reads as "reopen elsewhere".
        assert await asyncio.wait_for(beats.code(), 5) == grpc.StatusCode.OK
        assert await asyncio.wait_for(messages.code(), 5) == grpc.StatusCode.OK


async def test_a_stream_opened_after_the_stop_began_is_refused(start_orchestrator: OrchestratorFactory) -> None:
    """The server refuses new calls from the stop's first step: an agent reopening at once goes elsewhere."""
    orchestrator = await start_orchestrator(shutdown_grace_seconds=GRACE_SECONDS)
    async with await connect(orchestrator) as admin, grpc.aio.insecure_channel(grpc_target(orchestrator)) as raw:
        metadata, first = await _registered_with_a_stream(admin, raw, "stop-2")
        stopping = asyncio.create_task(orchestrator.stop())
        assert await asyncio.wait_for(first.code(), 5) == grpc.StatusCode.OK
        again = agents_pb2_grpc.AgentServiceStub(raw).HeartbeatStream(metadata=metadata, timeout=5)
        # Refused, maybe before the write: the status code says how.
        with contextlib.suppress(grpc.aio.AioRpcError):
            await again.write(
                agents_pb2.HeartbeatStreamRequest(heartbeat=agents_pb2.HeartbeatRequest(agent_id="stop-2"))
            )
        assert await again.code() == grpc.StatusCode.UNAVAILABLE
        await asyncio.wait_for(stopping, GRACE_SECONDS / 6)
