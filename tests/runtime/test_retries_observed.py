"""Retries, backoff and the circuit breaker, observed on real servers with their real default settings.

- gRPC's retry policy (ChannelOptions defaults: 5 attempts, UNAVAILABLE only): an orchestrator whose PostgreSQL
  is down answers UNAVAILABLE, and the orchestrator itself counts every attempt and every retry
  (`ai_agents_grpc_retried_requests_total`). A Python client cannot see gRPC's attempts (grpcio reports neither
  the count nor `grpc-previous-rpc-attempts` back), so the client counts calls, one per call, whatever the attempts.
- The task requeue backoff (orchestrator `retry_backoff_seconds`, default 1 s, doubling per attempt): a real
  agent process fails a task at every attempt; the stored timestamps of each failure show the wait growing.
- The circuit breaker (defaults: opens after 5 failing calls, half-opens after 5 s): opens, refuses without
  calling, lets one probe through on schedule, re-opens when it fails and closes when it succeeds. An agent's
  message stream is never that probe: a stream holding it kept the circuit half-open, and every heartbeat
  refused, for as long as the stream stayed open (agents stayed stale after a database outage).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import grpc
import pytest
from ai_agents.client import CircuitOpenError, OrchestratorClient
from ai_agents.client._breaker import BreakerState
from ai_agents.config import OrchestratorLive
from ai_agents.local.ports import free_port
from ai_agents.local.postgres import LocalPostgres
from ai_agents.observability.metrics import CommonMetrics, new_registry
from ai_agents.orchestrator.app import Orchestrator
from waits import assert_eventually_async

from ._api_support import rpc_error
from ._fleet_support import AgentProcesses, as_agent, grpc_target, orchestrator_settings

# What the client sends a submit as by default (it batches submits made together).
_SUBMIT_MANY = "/ai_agents.v1.TaskService/SubmitTasks"
_GET = "/ai_agents.v1.TaskService/GetTask"
_UNKNOWN_TASK = "00000000-0000-0000-0000-000000000000"


@dataclass
class OwnDatabaseOrchestrator:
    """An orchestrator on a PostgreSQL of its own, so a test may stop and start that database."""

    orchestrator: Orchestrator
    postgres: LocalPostgres

    @property
    def target(self) -> str:
        return grpc_target(self.orchestrator)

    def served(self, method: str, code: str | None = None) -> float:
        """Requests the orchestrator served for `method` (every attempt counts), with `code` or any."""
        registry = self.orchestrator.metrics.registry
        codes = [code] if code else [c.name for c in grpc.StatusCode]
        return sum(
            registry.get_sample_value("ai_agents_grpc_requests_total", {"method": method, "code": c}) or 0
            for c in codes
        )

    def retried(self, method: str) -> float:
        registry = self.orchestrator.metrics.registry
        return registry.get_sample_value("ai_agents_grpc_retried_requests_total", {"method": method}) or 0


@pytest.fixture
async def own_database_orchestrator() -> AsyncIterator[OwnDatabaseOrchestrator]:
    data_dir = Path(tempfile.mkdtemp(prefix="ai-agents-retry-pg-"))
    postgres = LocalPostgres(data_dir, port=free_port())
    await asyncio.to_thread(postgres.start)
    orchestrator = Orchestrator(orchestrator_settings(postgres.dsn))
    try:
        await orchestrator.start()
        yield OwnDatabaseOrchestrator(orchestrator, postgres)
    finally:
        await orchestrator.stop()
        await asyncio.to_thread(postgres.stop, mode="immediate")
        shutil.rmtree(data_dir, ignore_errors=True)


def _client_calls(metrics: CommonMetrics, method: str, code: str) -> float:
    return metrics.registry.get_sample_value("ai_agents_client_requests_total", {"method": method, "code": code}) or 0


@pytest.mark.parametrize(
    ("call_timeout", "method"),
    [(10.0, "SubmitTask"), (None, "SubmitTasks")],
    ids=["a submit of its own", "a submit the client batches"],
)
async def test_grpc_retries_unavailable_answers_and_the_orchestrator_counts_them(
    own_database_orchestrator: OwnDatabaseOrchestrator, call_timeout: float | None, method: str
) -> None:
    """A database outage fails a SubmitTasks call as a whole, so it is retried as SubmitTask is."""
    subject = own_database_orchestrator
    path = f"/ai_agents.v1.TaskService/{method}"
    metrics = CommonMetrics(new_registry(), "test")
    async with await OrchestratorClient.connect(subject.target, metrics=metrics, timeout=10) as client:
        # An answer that is not UNAVAILABLE is final: one attempt, no retry.
        assert (await rpc_error(client.get_task(_UNKNOWN_TASK))).code() == grpc.StatusCode.NOT_FOUND
        assert (subject.served(_GET), subject.retried(_GET)) == (1, 0)

        await asyncio.to_thread(subject.postgres.stop, mode="immediate")
        err = await rpc_error(client.submit_task("coding", {"while": "database down"}, timeout=call_timeout))
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        # ChannelOptions().max_attempts = 5: the first attempt and four retries, each answered UNAVAILABLE.
        assert subject.served(path, "UNAVAILABLE") == 5
        assert subject.retried(path) == 4
        assert _client_calls(metrics, method, "UNAVAILABLE") == 1, "the client counts the call once"

        # Back up: a call now succeeds at its first attempt (the idempotency key makes retrying a submit safe).
        await asyncio.to_thread(subject.postgres.start)

        async def submit_succeeds() -> None:
            try:
                await client.submit_task("coding", {"while": "database up"})
            except grpc.aio.AioRpcError as exc:
                raise AssertionError(f"submit still failing: {exc.code().name}") from exc

        await assert_eventually_async(submit_succeeds, timeout_sec=30, interval_sec=0.2)


@dataclass
class FailedAttempt:
    leased_at: datetime
    failed_at: datetime  # updated_at of the row the failure wrote
    available_at: datetime  # when the task may be leased again


async def test_requeue_backoff_grows_between_attempts_with_the_default_settings(
    orchestrator: Orchestrator, agents: AgentProcesses, dsn: str
) -> None:
    base = orchestrator.settings.retry_backoff_seconds
    assert base == OrchestratorLive.model_fields["retry_backoff_seconds"].default == 1.0, "the real default"
    agents.start("coding", grpc_target(orchestrator), AI_AGENTS_SIMULATE_FAILURE_RATE="1")
    async with await OrchestratorClient.connect(grpc_target(orchestrator)) as client:
        # Four attempts (the default is three) so that three backoffs can be compared: 1 s, 2 s, 4 s.
        task_id = (await client.submit_task("coding", {"fails": "always"}, max_attempts=4)).task.task_id

    failures: dict[int, FailedAttempt] = {}
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 40
        while True:
            row = await connection.fetchrow(
                "SELECT state, attempts, leased_at, updated_at, available_at FROM tasks WHERE task_id = $1", task_id
            )
            assert row is not None
            if row["state"] == "queued" and row["attempts"] > 0:
                # Between a failure and the next lease the row holds that failure's timestamps; each wait lasts
                # a second or more, so a poll every 50 ms sees every one.
                failures[row["attempts"]] = FailedAttempt(row["leased_at"], row["updated_at"], row["available_at"])
            if row["state"] == "dead_letter":
                final_lease = row["leased_at"]
                break
            assert time.monotonic() < deadline, f"task still {row['state']} after {row['attempts']} attempts"
            await asyncio.sleep(0.05)
    finally:
        await connection.close()

    assert sorted(failures) == [1, 2, 3], "every failed attempt before the last was seen waiting"
    waits = [(failures[n].available_at - failures[n].failed_at).total_seconds() for n in (1, 2, 3)]
    assert waits == pytest.approx([base, 2 * base, 4 * base], abs=1e-3), "retry_backoff_seconds * 2^(attempt-1)"
    leases = [failures[1].leased_at, failures[2].leased_at, failures[3].leased_at, final_lease]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(leases)]
    for n in (1, 2, 3):
        next_lease = leases[n]
        assert next_lease >= failures[n].available_at, f"attempt {n + 1} was leased before its backoff ended"
        # An idle queue is re-checked every 2 s (orchestrator/service.py): a due retry waits at most that long.
        assert (next_lease - failures[n].available_at).total_seconds() < 2.0 + 1.0
        assert gaps[n - 1] >= waits[n - 1]
    assert gaps[2] > gaps[0], f"seconds between leases: {gaps}"


async def test_circuit_breaker_opens_refuses_and_half_opens_on_schedule(
    own_database_orchestrator: OwnDatabaseOrchestrator,
) -> None:
    subject = own_database_orchestrator
    metrics = CommonMetrics(new_registry(), "test")
    async with await OrchestratorClient.connect(subject.target, metrics=metrics, timeout=10) as client:
        breaker = client.breaker
        # CircuitBreaker's defaults, which connect() uses (and docs/configuration.md states).
        threshold, reset_timeout = breaker.failure_threshold, breaker.reset_timeout
        assert (threshold, reset_timeout) == (5, 5.0)

        def state() -> float | None:
            return metrics.registry.get_sample_value("ai_agents_circuit_breaker_state", {"target": subject.target})

        assert (await client.submit_task("coding", {"before": "outage"})).created
        await asyncio.to_thread(subject.postgres.stop, mode="immediate")
        for failure in range(1, threshold + 1):
            assert state() == BreakerState.CLOSED, f"open before failure {failure}"
            before_last = time.monotonic()
            err = await rpc_error(client.submit_task("coding", {"during": "outage"}))
            assert err.code() == grpc.StatusCode.UNAVAILABLE
        opened = (before_last, time.monotonic())  # the breaker opened within this span
        assert state() == BreakerState.OPEN

        # Open: refused at once, nothing reaches the orchestrator.
        served = subject.served(_SUBMIT_MANY)
        started = time.monotonic()
        with pytest.raises(CircuitOpenError):
            await client.submit_task("coding", {"during": "open circuit"})
        assert time.monotonic() - started < 0.05
        assert subject.served(_SUBMIT_MANY) == served
        assert (
            metrics.registry.get_sample_value("ai_agents_circuit_breaker_rejections_total", {"target": subject.target})
            == 1
        )

        async def next_probe() -> tuple[float, grpc.StatusCode]:
            """Call every 50 ms until a call gets past the breaker; returns when and how that probe ended."""
            deadline = time.monotonic() + reset_timeout + 5
            while time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    await client.submit_task("coding", {"probe": sent})
                except CircuitOpenError:
                    await asyncio.sleep(0.05)
                    continue
                except grpc.aio.AioRpcError as exc:
                    return sent, exc.code()
                return sent, grpc.StatusCode.OK
            raise AssertionError("no call got past the breaker")

        # Half-open after reset_timeout: one probe; the database is still down, so it fails and re-opens.
        probe_at, code = await next_probe()
        assert code == grpc.StatusCode.UNAVAILABLE
        assert opened[0] + reset_timeout <= probe_at <= opened[1] + reset_timeout + 0.5
        assert subject.served(_SUBMIT_MANY) > served, "the probe reached the orchestrator"
        assert state() == BreakerState.OPEN, "one failed probe re-opens the circuit"

        # The database comes back; each later probe comes a full reset_timeout after the one before it,
        # until one succeeds and closes the circuit.
        await asyncio.to_thread(subject.postgres.start)
        while code != grpc.StatusCode.OK:
            previous, (probe_at, code) = probe_at, await next_probe()
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE)
            assert previous + reset_timeout <= probe_at <= previous + reset_timeout + 1.5
        assert state() == BreakerState.CLOSED
        assert (await client.submit_task("coding", {"after": "recovery"})).created


async def test_a_message_stream_never_holds_the_half_open_probe(
    own_database_orchestrator: OwnDatabaseOrchestrator,
) -> None:
    subject = own_database_orchestrator
    async with await OrchestratorClient.connect(subject.target, timeout=10) as client:
        agent = as_agent(client, "stream-probe-1", "coding")
        await agent.register_agent(agent_id="stream-probe-1", agent_type="coding", capacity=1)
        await asyncio.to_thread(subject.postgres.stop, mode="immediate")
        for _ in range(client.breaker.failure_threshold):
            await rpc_error(agent.heartbeat("stream-probe-1", [], 0))
        assert client.breaker.state is BreakerState.OPEN
        await asyncio.to_thread(subject.postgres.start)

        async def half_open() -> None:
            assert client.breaker.state is BreakerState.HALF_OPEN

        await assert_eventually_async(half_open, timeout_sec=client.breaker.reset_timeout + 2, interval_sec=0.05)
        # The agent's message loop reopens its stream first (its back-off is the shortest): it is refused
        # without taking the probe, and backs off.
        stream = agent.message_stream("stream-probe-1", after_message_id=None)
        with pytest.raises(CircuitOpenError):
            await anext(stream)
        # So the next heartbeat is the probe; its success closes the circuit (the database is back).
        await agent.heartbeat("stream-probe-1", [], 0)
        assert client.breaker.state is BreakerState.CLOSED
        # And the stream opens now, without holding anything the unary calls need.
        stream = agent.message_stream("stream-probe-1", after_message_id=None)
        opening = await anext(stream)
        assert not opening.HasField("message")
        await stream.aclose()
        for _ in range(3):
            await agent.heartbeat("stream-probe-1", [], 0)
