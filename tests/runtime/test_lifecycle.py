"""One process lifecycle: `run()` returns only when shutdown is complete, `shutdown()` is idempotent and safe
before `run()`, and an agent whose loops fail stops as a whole instead of leasing on with dead heartbeats."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ai_agents.agent import AgentProcess
from ai_agents.chaos import ChaosMonkeyProcess, LocalProcessTargets
from ai_agents.client import OrchestratorClient
from ai_agents.config import AgentSettings, ChaosMonkeySettings
from ai_agents.convert import TASK_STATE
from ai_agents.lifecycle import Lifecycle
from ai_agents.local.ports import free_port
from ai_agents.orchestrator.app import Orchestrator
from waits import assert_eventually_async

from ._fleet_support import (
    AgentProcesses,
    OrchestratorFactory,
    agent_credential,
    as_agent,
    grpc_target,
    orchestrator_settings,
)


def _replace(path: Path, text: str) -> None:
    """Swap a file's content in one step, as the kubelet rotates a projected token."""
    staged = path.with_suffix(".new")
    staged.write_text(text)
    staged.replace(path)


async def test_agent_whose_reregistration_is_refused_releases_its_tasks_and_exits(
    start_orchestrator: OrchestratorFactory, agents: AgentProcesses, tmp_path: Path
) -> None:
    """A refused re-registration used to end the heartbeat loop alone: the agent kept leasing, its tasks' leases
    ran out unextended. Now the agent stops as a whole: running tasks released, a clear log line, status 1."""
    orchestrator = await start_orchestrator(heartbeat_interval_seconds=1)
    target = grpc_target(orchestrator)
    agent_id = "coding-refused-reregistration"
    credential = tmp_path / "credential"
    credential.write_text(agent_credential(agent_id, "coding"))
    agents.start(
        "coding",
        target,
        agent_id=agent_id,
        AI_AGENTS_AGENT_CREDENTIAL_FILE=str(credential),
        AI_AGENTS_SIMULATE_LATENCY_MS="60000",
        AI_AGENTS_SHUTDOWN_GRACE_SECONDS="0.5",
    )
    async with await OrchestratorClient.connect(target, timeout=10) as client:
        task_id = (await client.submit_task("coding", {"work": "long"})).task.task_id

        async def running_in_agent() -> None:
            assert task_id in await agents.running_tasks(agent_id)

        await assert_eventually_async(running_in_agent, timeout_sec=30)
        # The credential still names this agent (heartbeats pass) but for another type, so registering is
        # refused with PERMISSION_DENIED: a non-transient error, as a revoked or mis-issued credential gives.
        _replace(credential, agent_credential(agent_id, "testing"))
        # Deregistered (as the orchestrator's sweep does to a silent agent): the next heartbeat says "register again".
        await as_agent(client, agent_id, "coding").deregister_agent(agent_id)

        # Well inside the 30 s lease: an exit here cannot be waiting for the lease to expire.
        code = await asyncio.to_thread(agents.wait, agent_id, 20)
        assert code != 0, "an agent that cannot register again must exit with a failure status"
        log = agents.log(agent_id)
        assert "agent heartbeat loop failed: PERMISSION_DENIED" in log, log
        task = await client.get_task(task_id)
        assert TASK_STATE.to_str(task.state) == "queued", "the running task is released, not left to its lease"
        assert task.attempts == 0, "a release on the way out must not use up an attempt"


async def test_agent_drains_once_when_asked_to_shut_down_twice(
    start_orchestrator: OrchestratorFactory, agents: AgentProcesses
) -> None:
    """A second SIGTERM (shutdown() again) during the drain changes nothing: the running task still finishes."""
    orchestrator = await start_orchestrator()
    target = grpc_target(orchestrator)
    agent_id = agents.start(
        "testing", target, AI_AGENTS_SIMULATE_LATENCY_MS="1500", AI_AGENTS_SHUTDOWN_GRACE_SECONDS="20"
    )
    async with await OrchestratorClient.connect(target, timeout=10) as client:
        task_id = (await client.submit_task("testing", {"suite": "unit"})).task.task_id

        async def running_in_agent() -> None:
            assert task_id in await agents.running_tasks(agent_id)

        await assert_eventually_async(running_in_agent, timeout_sec=30)
        agents.kill(agent_id, signal.SIGTERM)
        agents.kill(agent_id, signal.SIGTERM)
        assert await asyncio.to_thread(agents.wait, agent_id, 30) == 0
        task = await client.get_task(task_id)
        assert TASK_STATE.to_str(task.state) == "succeeded"
        assert task.attempts == 1


# ---- shutdown() before run(), and twice, for every process kind ------------------------------------------------


def _dead_address() -> str:
    """127.0.0.1 on a port nothing listens on: whatever tries to reach it waits and retries."""
    return f"127.0.0.1:{free_port()}"


def _unstarted_orchestrator() -> Lifecycle:
    # Against a database that is not there, start-up would retry for a minute.
    return Orchestrator(orchestrator_settings(f"postgresql://nobody@{_dead_address()}/none"))


def _unstarted_agent() -> Lifecycle:
    # Against an orchestrator that is not there, registration would retry until shutdown.
    return AgentProcess(AgentSettings(agent_type="coding", orchestrator_target=_dead_address(), **_FREE_PORTS))


def _unstarted_chaos_monkey(victim: int) -> Lifecycle:
    # A round every 10 ms would kill the victim at once.
    settings = _chaos_settings(chaos_interval_seconds=0.01)
    return ChaosMonkeyProcess(settings, targets=LocalProcessTargets([("victim", victim)]))


_FREE_PORTS: dict[str, Any] = {"host": "127.0.0.1", "http_port": 0, "grpc_port": 0, "health_port": 0, "metrics_port": 0}


def _chaos_settings(**overrides: Any) -> ChaosMonkeySettings:
    return ChaosMonkeySettings(chaos_mode="local", log_format="text", **_FREE_PORTS, **overrides)


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """A real process for the chaos monkey to (not) kill."""
    process = subprocess.Popen(["sleep", "600"])
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("kind", ["orchestrator", "agent", "chaos-monkey"])
async def test_shutdown_before_run_and_twice_makes_run_return_at_once(
    kind: str, victim: subprocess.Popen[bytes]
) -> None:
    process = {
        "orchestrator": _unstarted_orchestrator,
        "agent": _unstarted_agent,
        "chaos-monkey": lambda: _unstarted_chaos_monkey(victim.pid),
    }[kind]()
    process.shutdown()
    process.shutdown()
    # Each would otherwise keep going far past this bound (see the factories above).
    await asyncio.wait_for(process.run(), 5)
    assert victim.poll() is None, "a chaos monkey shut down before it ran must strike nothing"
    process.shutdown()  # and once more after run() returned


async def _health_answers(port: Callable[[], int | None]) -> None:
    number = port()
    assert number, "not listening yet"
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{number}/readyz") as response:
            assert response.status == 200, await response.text()
    except aiohttp.ClientError as exc:
        raise AssertionError(f"health port not answering: {exc!r}") from exc


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


async def test_orchestrator_run_serves_until_shutdown_then_returns_stopped(dsn: str) -> None:
    orchestrator = Orchestrator(orchestrator_settings(dsn))
    running = asyncio.create_task(orchestrator.run())
    try:
        await assert_eventually_async(
            lambda: _health_answers(lambda: orchestrator.health.port if orchestrator.health else None)
        )
        assert orchestrator.grpc is not None
        async with await OrchestratorClient.connect(grpc_target(orchestrator), timeout=10) as client:
            assert (await client.submit_task("coding", {"served": True})).task.task_id
        orchestrator.shutdown()
        orchestrator.shutdown()
        await asyncio.wait_for(running, 30)
    finally:
        orchestrator.shutdown()
        await asyncio.wait_for(running, 30)
    assert orchestrator.http is not None and orchestrator.health is not None
    for port in (orchestrator.grpc.port, orchestrator.http.port, orchestrator.health.port):
        assert await _refused(port), f"port {port} still open after run() returned"


async def test_chaos_monkey_run_strikes_until_shutdown_then_returns_stopped(victim: subprocess.Popen[bytes]) -> None:
    process = ChaosMonkeyProcess(
        _chaos_settings(chaos_interval_seconds=3600),
        targets=LocalProcessTargets([("victim", victim.pid)]),
    )
    running = asyncio.create_task(process.run())
    try:
        await assert_eventually_async(lambda: _health_answers(lambda: process.health.port if process.health else None))
        process.shutdown()
        process.shutdown()
        # The next round is an hour away: returning now means shutdown() interrupted the wait for it.
        await asyncio.wait_for(running, 5)
    finally:
        process.shutdown()
        await asyncio.wait_for(running, 5)
    assert victim.poll() is None, "stopped before its first round, the monkey struck nobody"
    assert process.health is not None and await _refused(process.health.port)


_SERVING_COLLECTOR_PROBE = """
import gc
from ai_agents.lifecycle import Lifecycle, run_until_signalled

class Probe(Lifecycle):
    async def _serve(self, stop):
        print(gc.get_threshold()[0], gc.get_freeze_count())

raise SystemExit(run_until_signalled(Probe()))
"""


def test_a_process_serves_with_rare_young_collections_and_its_startup_frozen() -> None:
    """Every process enters through `run_until_signalled`; by the time it serves, what startup made is out of the
    collector's generations and young collections wait for ai_agents.gc_settings' threshold, not CPython's 700."""
    from ai_agents.gc_settings import YOUNG_GENERATION_THRESHOLD

    done = subprocess.run(
        [sys.executable, "-c", _SERVING_COLLECTOR_PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    threshold, frozen = map(int, done.stdout.split())
    assert threshold == YOUNG_GENERATION_THRESHOLD > 700
    assert frozen > 10_000, "startup's objects (modules, classes, settings) should be frozen"
