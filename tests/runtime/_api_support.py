"""Helpers shared by the API conformance tests (gRPC, HTTP, bad input, handlers and client)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import aiohttp
import grpc
import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.orchestrator.app import Orchestrator
from prometheus_client.parser import text_string_to_metric_families

from ._fleet_support import grpc_target


async def connect(orchestrator: Orchestrator, *, token: str | None = None, timeout: float = 10) -> OrchestratorClient:
    return await OrchestratorClient.connect(grpc_target(orchestrator), token=token, timeout=timeout)


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """Await a call that must fail with a gRPC status; return the error."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def metrics_port(orchestrator: Orchestrator) -> int:
    assert orchestrator.metrics_server is not None
    return orchestrator.metrics_server.port


def health_port(orchestrator: Orchestrator) -> int:
    assert orchestrator.health is not None
    return orchestrator.health.port


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Scrape /metrics into {(sample name, sorted labels): value}."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
    **labels: str,
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
