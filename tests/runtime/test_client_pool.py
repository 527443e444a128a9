"""The client's channel pool: N channels are N TCP connections, calls spread over them, the metrics show it.

Connections are counted at the server's end (the kernel's socket table for the orchestrator's port), and which
connection a call came over is what the server saw as its peer, never the pool's own bookkeeping.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from ai_agents.client import ChannelPool, OrchestratorClient, create_channel
from ai_agents.observability.metrics import CommonMetrics, new_registry
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.serving.auth import TokenCheck
from ai_agents.serving.grpc_server import GrpcServer
from ai_agents.v1 import monitoring_pb2, monitoring_pb2_grpc
from waits import assert_eventually_async

from ._fleet_support import AgentProcesses, as_agent, grpc_target

_ESTABLISHED = "01"


def established_connections_to(port: int) -> set[tuple[str, str]]:
    """(local, remote) address pairs of ESTABLISHED TCP sockets whose local port is `port`: a server's accepted
    connections, as the kernel lists them (/proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == _ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port:
                found.add((local, remote))
    return found


def in_flight(metrics: CommonMetrics, target: str, channel: int) -> float:
    value = metrics.registry.get_sample_value(
        "ai_agents_client_pool_in_flight", {"target": target, "channel": str(channel)}
    )
    assert value is not None, f"no in-flight series for channel {channel}"
    return value


async def test_a_pool_of_four_opens_four_connections_and_a_plain_list_of_channels_one(
    orchestrator: Orchestrator,
) -> None:
    assert orchestrator.grpc is not None
    port = orchestrator.grpc.port
    target = grpc_target(orchestrator)
    assert established_connections_to(port) == set()

    # What the bench did before: four channels with the same arguments share grpcio's subchannel, so one connection.
    plain = [create_channel(target) for _ in range(4)]
    try:
        await asyncio.wait_for(asyncio.gather(*(channel.channel_ready() for channel in plain)), 10)
        assert len(established_connections_to(port)) == 1
    finally:
        await asyncio.gather(*(channel.close() for channel in plain))

    async def plain_gone() -> None:
        assert established_connections_to(port) == set()

    await assert_eventually_async(plain_gone, timeout_sec=10)

    metrics = CommonMetrics(new_registry(), "test")
    async with await OrchestratorClient.connect(target, channels=4, metrics=metrics, timeout=10) as client:
        await asyncio.wait_for(client.channel.channel_ready(), 10)
        assert len(established_connections_to(port)) == 4
        assert metrics.registry.get_sample_value("ai_agents_client_pool_channels", {"target": target}) == 4
        results = await asyncio.gather(*(client.submit_task("coding", {"i": i}) for i in range(32)))
        assert all(r.created for r in results)
        assert len(established_connections_to(port)) == 4, "calls use the pool's connections, no new ones"
    assert metrics.registry.get_sample_value("ai_agents_client_pool_channels", {"target": target}) == 0


async def test_an_agent_process_opens_as_many_connections_as_its_setting_asks(
    orchestrator: Orchestrator, agents: AgentProcesses
) -> None:
    assert orchestrator.grpc is not None
    port = orchestrator.grpc.port
    agents.start("coding", grpc_target(orchestrator), AI_AGENTS_ORCHESTRATOR_CHANNELS="3")

    async def three_connections() -> None:
        assert len(established_connections_to(port)) == 3

    await assert_eventually_async(three_connections, timeout_sec=20, interval_sec=0.2)


async def test_long_polls_on_a_real_orchestrator_spread_over_the_pool_and_show_as_in_flight(
    orchestrator: Orchestrator,
) -> None:
    """Eight LeaseTasks long-polls on an empty queue stay open at the orchestrator: two per channel of four."""
    target = grpc_target(orchestrator)
    metrics = CommonMetrics(new_registry(), "test")
    async with await OrchestratorClient.connect(target, channels=4, metrics=metrics, timeout=10) as client:
        agent = as_agent(client, "coding-pool", "coding")
        await agent.register_agent(agent_id="coding-pool", agent_type="coding", capacity=8)
        polls = [
            asyncio.create_task(
                agent.lease_task_batch(agent_id="coding-pool", agent_type="coding", max_tasks=1, wait_seconds=30)
            )
            for _ in range(8)
        ]

        async def all_waiting() -> None:
            assert [in_flight(metrics, target, c) for c in range(4)] == [2, 2, 2, 2]

        await assert_eventually_async(all_waiting, timeout_sec=10)
        assert not any(poll.done() for poll in polls), "the queue is empty: every poll is still waiting"
        # Work arrives: each poll leases one task and returns; the gauges fall back to zero.
        for i in range(8):
            await client.submit_task("coding", {"i": i})
        batches = await asyncio.wait_for(asyncio.gather(*polls), 30)
        assert sorted(len(b.leases) for b in batches) == [1] * 8
        assert [in_flight(metrics, target, c) for c in range(4)] == [0, 0, 0, 0]


class HeldStatus(monitoring_pb2_grpc.MonitoringServiceServicer):
    """GetStatus that records the caller's address (its connection, as the server sees it) and waits to answer."""

    def __init__(self) -> None:
        self.peers: list[str] = []
        self.release = asyncio.Event()

    async def GetStatus(
        self, request: monitoring_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> monitoring_pb2.GetStatusResponse:
        self.peers.append(context.peer())
        await self.release.wait()
        return monitoring_pb2.GetStatusResponse(database_ok=True)


@pytest.fixture
async def held_status() -> AsyncIterator[tuple[HeldStatus, str]]:
    """A real gRPC server (the runtime's GrpcServer) on loopback serving HeldStatus; yields it and its target."""
    servicer = HeldStatus()
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        metrics=CommonMetrics(new_registry(), "stand-in"),
        tokens=TokenCheck(None),
        max_message_bytes=4 * 1024 * 1024,
        add_servicers=[lambda s: monitoring_pb2_grpc.add_MonitoringServiceServicer_to_server(servicer, s)],
        service_names=[],
    )
    await server.start()
    yield servicer, f"127.0.0.1:{server.port}"
    servicer.release.set()
    await server.stop(0)


async def test_concurrent_calls_arrive_over_four_connections_two_each(held_status: tuple[HeldStatus, str]) -> None:
    servicer, target = held_status
    metrics = CommonMetrics(new_registry(), "test")
    pool = ChannelPool(target, size=4, metrics=metrics)
    client = OrchestratorClient(pool, target=target, timeout=10, metrics=metrics)
    try:
        calls = [asyncio.create_task(client.status()) for _ in range(8)]

        async def all_arrived() -> None:
            assert len(servicer.peers) == 8

        await assert_eventually_async(all_arrived, timeout_sec=10)
        per_connection = Counter(servicer.peers)
        assert sorted(per_connection.values()) == [2, 2, 2, 2], f"calls per client address: {per_connection}"
        assert [in_flight(metrics, target, c) for c in range(4)] == [2, 2, 2, 2]
        servicer.release.set()
        assert all(r.database_ok for r in await asyncio.wait_for(asyncio.gather(*calls), 10))
        assert [in_flight(metrics, target, c) for c in range(4)] == [0, 0, 0, 0]
    finally:
        await client.close()


def test_a_pool_needs_a_channel() -> None:
    with pytest.raises(ValueError, match="at least one channel"):
        ChannelPool("127.0.0.1:1", size=0)
