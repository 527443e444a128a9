"""What the local tier's tests share: agent credentials, orchestrator settings and addresses, agents as
processes. The fixtures that use them are in conftest.py; tests import from here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from ai_agents.client import OrchestratorClient
from ai_agents.config import OrchestratorSettings
from ai_agents.local.ports import loopback_port_env, server_ports
from ai_agents.local.postgres import LocalPostgres
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.serving.identity import mint_local_credential

# The orchestrators under test check agent identity `local` with this secret; tests mint agents' credentials with it.
AGENT_IDENTITY_SECRET = "test-agent-identity-secret-" + uuid.uuid4().hex


def agent_credential(agent_id: str, agent_type: str) -> str:
    """The credential of one agent, as the local fleet would hand it out."""
    return mint_local_credential(AGENT_IDENTITY_SECRET, agent_id, agent_type)


def as_agent(client: OrchestratorClient, agent_id: str, agent_type: str) -> OrchestratorClient:
    """`client`'s channel, acting as one agent (its credential on every call)."""
    return client.as_agent(agent_credential(agent_id, agent_type))


async def create_database(postgres: LocalPostgres) -> str:
    """A new, empty database on the shared server; returns its DSN."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"postgresql://{postgres.user}@127.0.0.1:{postgres.port}/{name}"


def orchestrator_settings(dsn: str, **overrides: Any) -> OrchestratorSettings:
    values: dict[str, Any] = {
        "database_url": dsn,
        "host": "127.0.0.1",
        "http_port": 0,
        "grpc_port": 0,
        "health_port": 0,
        "metrics_port": 0,
        "log_format": "text",
        "shutdown_grace_seconds": 1.0,
        "lease_seconds": 30,
        "database_pool_min": 1,
        "database_pool_max": 10,
        "agent_identity": "local",
        "agent_identity_secret": AGENT_IDENTITY_SECRET,
    }
    values.update(overrides)
    return OrchestratorSettings(**values)


OrchestratorFactory = Callable[..., Awaitable[Orchestrator]]


def grpc_target(*orchestrators: Orchestrator) -> str:
    return "ipv4:" + ",".join(f"127.0.0.1:{o.grpc.port}" for o in orchestrators if o.grpc)


def http_base(orchestrator: Orchestrator) -> str:
    assert orchestrator.http is not None
    return f"http://127.0.0.1:{orchestrator.http.port}"


class AgentProcesses:
    """Agents as real OS processes (so SIGKILL and SIGTERM mean what they mean in a pod)."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.health_ports: dict[str, int] = {}
        self.http_ports: dict[str, int] = {}

    def start(self, agent_type: str, target: str, *, agent_id: str | None = None, **env: str) -> str:
        agent_id = agent_id or f"{agent_type}-{uuid.uuid4().hex[:8]}"
        ports = server_ports()
        full_env = {
            **os.environ,
            "AI_AGENTS_AGENT_TYPE": agent_type,
            "AI_AGENTS_AGENT_ID": agent_id,
            "AI_AGENTS_ORCHESTRATOR_TARGET": target,
            **loopback_port_env(ports),
            "AI_AGENTS_LOG_FORMAT": "text",
            "AI_AGENTS_SIMULATE_LATENCY_MS": "0",
            "AI_AGENTS_AGENT_CREDENTIAL": agent_credential(agent_id, agent_type),
            **env,
        }
        log = (self._log_dir / f"{agent_id}.log").open("wb")
        self.procs[agent_id] = subprocess.Popen(
            [sys.executable, "-m", "ai_agents", "agent"],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.health_ports[agent_id] = ports["health"]
        self.http_ports[agent_id] = ports["http"]
        return agent_id

    async def running_tasks(self, agent_id: str) -> list[str]:
        """The task ids the agent process itself says it is running (its /v1/info)."""
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{self.http_ports[agent_id]}/v1/info") as response,
            ):
                return list((await response.json())["running"])
        except aiohttp.ClientError as exc:
            # Not an observation: `assert_eventually_async` keeps polling and reports this if the deadline passes.
            raise AssertionError(f"agent {agent_id} not answering yet: {exc!r}") from exc

    def log(self, agent_id: str) -> str:
        return (self._log_dir / f"{agent_id}.log").read_text()

    def kill(self, agent_id: str, sig: signal.Signals = signal.SIGKILL) -> None:
        self.procs[agent_id].send_signal(sig)

    def wait(self, agent_id: str, timeout: float) -> int:
        return self.procs[agent_id].wait(timeout=timeout)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
