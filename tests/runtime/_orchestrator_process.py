"""An orchestrator as its own process (`python -m ai_agents orchestrator`) on free ports, for tests that need the
real entry point: its transport, its signals, its child processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from ai_agents.local.ports import loopback_port_env, server_ports
from ai_agents.local.postgres import LocalPostgres
from waits import assert_eventually_async

from ._fleet_support import create_database


@dataclass
class OrchestratorProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    dsn: str
    http: int
    grpc: int
    health: int
    metrics: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def orchestrator_process(
    postgres: LocalPostgres, log_dir: Path, *, command_prefix: Sequence[str] = (), **env: str
) -> Iterator[OrchestratorProcess]:
    """Yields a ready orchestrator process on a database of its own; SIGTERM (then SIGKILL) at the end.

    `command_prefix` runs it under another command (which must pass SIGTERM on), e.g. as pid 1 of a namespace."""
    dsn = asyncio.run(create_database(postgres))
    ports = server_ports()
    log_path = log_dir / f"orchestrator-{uuid.uuid4().hex[:6]}.log"
    full_env = {
        **os.environ,
        "AI_AGENTS_DATABASE_URL": dsn,
        **loopback_port_env(ports),
        "AI_AGENTS_LOG_FORMAT": "text",
        "AI_AGENTS_SHUTDOWN_GRACE_SECONDS": "1",
        "AI_AGENTS_DATABASE_POOL_MIN": "1",
        **env,
    }
    proc = spawn(["orchestrator"], full_env, log_path, prefix=command_prefix)
    process = OrchestratorProcess(proc, log_path, dsn, **ports)
    try:
        asyncio.run(wait_ready(process.health, log_path, proc))
        yield process
    finally:
        stop(proc)


def spawn(
    args: list[str], env: dict[str, str], log_path: Path, *, prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """`ai-agents ARGS`, its stdout and stderr both into `log_path` (the way a container's output is collected)."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [*prefix, sys.executable, "-m", "ai_agents", *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as Kubernetes stops a container; SIGKILL if it has not ended 15 s later."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def wait_ready(health_port: int, log_path: Path, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until /readyz answers 200; `proc`, when given, must not have exited meanwhile."""

    async def ready() -> None:
        assert proc is None or proc.poll() is None, "the orchestrator exited"
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{health_port}/readyz") as response,
            ):
                assert response.status == 200, f"/readyz answered {response.status}"
        except aiohttp.ClientError as exc:
            raise AssertionError(f"/readyz not answering: {exc!r}") from exc

    await assert_eventually_async(
        ready, timeout_sec=60, message=f"the orchestrator never became ready (its output: {log_path})"
    )
