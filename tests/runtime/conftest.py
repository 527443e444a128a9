"""Fixtures for the local tier: a real PostgreSQL, real orchestrators and agents (in-process or as processes)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.local.postgres import LocalPostgres, PostgresNotFound
from ai_agents.orchestrator.app import Orchestrator

from ._fleet_support import (
    AgentProcesses,
    OrchestratorFactory,
    create_database,
    grpc_target,
    orchestrator_settings,
)


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """One real PostgreSQL server for the whole test run; each test gets its own database (see `dsn`)."""
    # Not under pytest's tmp dir: as root, PostgreSQL runs as another user who must be able to reach the directory.
    data_dir = Path(tempfile.mkdtemp(prefix="ai-agents-test-pg-"))
    try:
        server = LocalPostgres(data_dir)
        server.start()
    except PostgresNotFound as exc:
        pytest.skip(f"PostgreSQL server binaries are not installed: {exc}")
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def dsn(postgres: LocalPostgres) -> str:
    """A fresh, empty database per test, so tests never see each other's tasks."""
    return await create_database(postgres)


@pytest.fixture
async def start_orchestrator(dsn: str) -> AsyncIterator[OrchestratorFactory]:
    """Factory: start an in-process orchestrator on free ports against the test database; stopped at teardown."""
    started: list[Orchestrator] = []

    async def start(**overrides: Any) -> Orchestrator:
        orchestrator = Orchestrator(orchestrator_settings(dsn, **overrides))
        await orchestrator.start()
        started.append(orchestrator)
        return orchestrator

    yield start
    for orchestrator in reversed(started):
        await orchestrator.stop()


@pytest.fixture
async def orchestrator(start_orchestrator: OrchestratorFactory) -> Orchestrator:
    return await start_orchestrator()


@pytest.fixture
async def client(orchestrator: Orchestrator) -> AsyncIterator[OrchestratorClient]:
    token = orchestrator.settings.api_token
    async with await OrchestratorClient.connect(
        grpc_target(orchestrator),
        token=token.get_secret_value() if token else None,
        timeout=10,
    ) as c:
        yield c


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[AgentProcesses]:
    processes = AgentProcesses(tmp_path)
    yield processes
    processes.stop_all()
