"""Faults under load, on the local fleet a developer runs (`ai-agents local up --detach`).

Each test submits a bounded load over HTTP (a fixed number of tasks at a fixed rate, every submit retried with
its idempotency key until acknowledged or a deadline), injects one fault while the load runs, then checks in
the database itself that:
- every acknowledged task exists and reaches a final state (nothing acknowledged is lost);
- no task succeeded twice: a trigger records every transition into `succeeded`; fencing must keep it at one;
- no request got a 5xx other than 503 (a database outage is 503, never 500);
and prints the counts. The faults: PostgreSQL crash-stopped and restarted, an orchestrator SIGKILLed, an agent
SIGKILLed, an agent SIGSTOPped past its lease and then resumed. The fleet's supervisor restarts what is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import grpc
import pytest
from ai_agents import convert as c
from ai_agents.local.fleet import FleetState, ProcessInfo
from ai_agents.local.postgres import LocalPostgres
from ai_agents.v1 import tasks_pb2, tasks_pb2_grpc
from fleet_cli import alive, run_cli
from waits import assert_eventually_async

pytestmark = pytest.mark.timeout(240)

# The load: RATE submits per second for LOAD_SECONDS, over both orchestrators, to the two types that have agents.
LOAD_SECONDS = 15.0
RATE = 100
MAX_IN_FLIGHT = 64
# A submit is retried (503, connection refused or reset) with its idempotency key until this deadline.
SUBMIT_DEADLINE_SECONDS = 40.0
FAULT_AT_SECONDS = 4.0
LOAD_TYPES = ("coding", "testing")
# Short leases, so a killed or stopped agent's tasks are redelivered within the test.
LEASE_SECONDS = 3
TASK_LATENCY_MS = 100
FINAL_STATES = ("succeeded", "failed", "cancelled", "dead_letter")
DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")

_AUDIT_SQL = """
CREATE TABLE IF NOT EXISTS fault_test_successes (
    task_id     uuid NOT NULL,
    old_state   text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION fault_test_record_success() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fault_test_successes (task_id, old_state) VALUES (NEW.task_id, OLD.state);
    RETURN NEW;
END $$;
-- Every write that leaves a task succeeded, except one that changes nothing of the outcome: a second
-- completion (even one overwriting the first with the same state) is recorded, so a double success shows.
CREATE OR REPLACE TRIGGER fault_test_success AFTER UPDATE ON tasks FOR EACH ROW
WHEN (NEW.state = 'succeeded' AND (
    OLD.state <> 'succeeded'
    OR NEW.result IS DISTINCT FROM OLD.result
    OR NEW.finished_at IS DISTINCT FROM OLD.finished_at))
EXECUTE FUNCTION fault_test_record_success();
"""


@dataclass
class FaultFleet:
    state_dir: Path
    env: dict[str, str]
    dsn: str

    def state(self) -> FleetState:
        state = FleetState.load(self.state_dir)
        assert state is not None, "the fleet's state file is gone"
        return state

    def process(self, name: str) -> ProcessInfo:
        return next(p for p in self.state().processes if p.name == name)

    def http_bases(self) -> list[str]:
        return [f"http://127.0.0.1:{p.http}" for p in self.state().orchestrators]

    def postgres(self) -> LocalPostgres:
        port = urlsplit(self.dsn).port
        assert port is not None
        return LocalPostgres(self.state_dir / "postgres", port=port)

    def log_lines(self) -> Iterator[dict[str, Any]]:
        for path in (self.state_dir / "logs").glob("local-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue


@pytest.fixture(scope="module")
def fault_fleet() -> Iterator[FaultFleet]:
    """Two orchestrators, two coding and two testing agents, durable PostgreSQL; `local down` at the end."""
    state_dir = Path(tempfile.mkdtemp(prefix="ai-agents-faults-"))
    env = {
        **os.environ,
        "AI_AGENTS_LOCAL_DIR": str(state_dir),
        "AI_AGENTS_LEASE_SECONDS": str(LEASE_SECONDS),
        "AI_AGENTS_HEARTBEAT_INTERVAL_SECONDS": "1",
        "AI_AGENTS_CONCURRENCY": "8",
    }
    for inherited in ("AI_AGENTS_ORCHESTRATOR_TARGET", "AI_AGENTS_API_TOKEN"):
        env.pop(inherited, None)
    up = run_cli(
        *("local", "up", "--detach", "--orchestrators", "2", "--agents-per-type", "0"),
        *("--agents", "coding=2", "--agents", "testing=2", "--latency-ms", str(TASK_LATENCY_MS)),
        env=env,
        timeout=180,
    )
    summary = json.loads(up.stdout)
    assert summary["fast"] is False and "warning" not in summary, "the local fleet must be durable by default"
    fleet = FaultFleet(state_dir, env, summary["dsn"])
    last_pids: list[int] = []
    try:
        assert asyncio.run(durability_settings(fleet.dsn)) == dict.fromkeys(DURABILITY, "on")
        asyncio.run(_install_success_audit(fleet.dsn))
        yield fleet
    finally:
        state = FleetState.load(state_dir)
        if state is not None:
            last_pids = [p.pid for p in state.processes] + [state.supervisor_pid]
        run_cli("local", "down", env=env, timeout=180)
        deadline = time.monotonic() + 30
        while [p for p in last_pids if alive(p)] and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in last_pids if alive(p)]
        shutil.rmtree(state_dir, ignore_errors=True)
        assert not left, f"`local down` left processes running (restarted ones included): {left}"


async def _install_success_audit(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_AUDIT_SQL)
    finally:
        await conn.close()


async def durability_settings(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        return {name: await conn.fetchval(f"SHOW {name}") for name in DURABILITY}
    finally:
        await conn.close()


# ---- load --------------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    name: str
    submitted: int = 0
    # idempotency key -> task id, for every submit that got 201 (or 200: an earlier attempt was stored)
    acked: dict[str, str] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    retried_after_503: int = 0
    retried_after_connection_error: int = 0
    unavailable_messages: set[str] = field(default_factory=set)
    # Anything but 200/201/503: a 500 (or a 4xx) here is a bug.
    unexpected: list[str] = field(default_factory=list)
    not_acked: list[str] = field(default_factory=list)


async def run_load(
    fleet: FaultFleet, name: str, fault: Callable[[LoadReport], Awaitable[None]]
) -> tuple[LoadReport, dict[str, Any]]:
    """Submit RATE*LOAD_SECONDS tasks, run `fault` after FAULT_AT_SECONDS, wait until every acked task is final."""
    report = LoadReport(name)
    bases = fleet.http_bases()
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
    loop = asyncio.get_running_loop()

    async def submit(session: aiohttp.ClientSession, index: int) -> None:
        key = f"{name}-{index}"
        body = {
            "agent_type": LOAD_TYPES[index % len(LOAD_TYPES)],
            "payload": {"fault_test": name, "n": index},
            "idempotency_key": key,
        }
        deadline = loop.time() + SUBMIT_DEADLINE_SECONDS
        attempt = 0
        async with in_flight:
            while loop.time() < deadline:
                base = bases[(index + attempt) % len(bases)]
                attempt += 1
                try:
                    async with session.post(f"{base}/v1/tasks", json=body) as response:
                        report.statuses[str(response.status)] += 1
                        if response.status in (200, 201):
                            report.acked[key] = (await response.json())["task_id"]
                            return
                        text = await response.text()
                        if response.status != 503:
                            report.unexpected.append(f"{response.status} {text[:300]}")
                            return
                        report.unavailable_messages.add(text)
                        report.retried_after_503 += 1
                except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                    # The orchestrator was killed (refused, or reset mid-request): retry on the next one.
                    report.statuses[f"connection error ({type(exc).__name__})"] += 1
                    report.retried_after_connection_error += 1
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
            report.not_acked.append(key)

    async def delayed_fault() -> None:
        await asyncio.sleep(FAULT_AT_SECONDS)
        await fault(report)

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        fault_task = asyncio.create_task(delayed_fault())
        submits: list[asyncio.Task[None]] = []
        started = loop.time()
        for index in range(int(RATE * LOAD_SECONDS)):
            await asyncio.sleep(max(0.0, started + index / RATE - loop.time()))
            submits.append(asyncio.create_task(submit(session, index)))
            report.submitted += 1
        await asyncio.gather(*submits)
        await fault_task
    outcome = await _await_final_states(fleet.dsn, name, report)
    return report, outcome


async def _await_final_states(dsn: str, name: str, report: LoadReport) -> dict[str, Any]:
    """Bounded wait until every acked task is final; then what the database says about this load's tasks."""
    conn = await asyncpg.connect(dsn)
    try:
        task_ids = list(report.acked.values())

        async def all_final() -> None:
            pending = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE task_id = ANY($1::uuid[]) AND state <> ALL($2::text[])",
                task_ids,
                list(FINAL_STATES),
            )
            assert pending == 0, f"{pending} acknowledged tasks are not final yet"

        await assert_eventually_async(all_final, timeout_sec=90, interval_sec=0.5)
        rows = await conn.fetch(
            "SELECT task_id::text, state, attempts FROM tasks WHERE payload->>'fault_test' = $1", name
        )
        doubles = await conn.fetch(
            """
            SELECT task_id::text, count(*) AS n FROM fault_test_successes
            WHERE task_id = ANY($1::uuid[]) GROUP BY task_id HAVING count(*) > 1
            """,
            task_ids,
        )
    finally:
        await conn.close()
    by_id = {r["task_id"]: r for r in rows}
    return {
        "rows": len(rows),
        "missing": [t for t in task_ids if t not in by_id],
        "states": Counter(by_id[t]["state"] for t in task_ids if t in by_id),
        "delivered_more_than_once": sum(1 for t in task_ids if t in by_id and by_id[t]["attempts"] > 1),
        "attempts": {t: by_id[t]["attempts"] for t in task_ids if t in by_id},
        "succeeded_twice": {r["task_id"]: r["n"] for r in doubles},
    }


def check_and_print(
    fleet: FaultFleet, report: LoadReport, outcome: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    task_ids = set(report.acked.values())
    # A handler that ran but whose outcome the orchestrator refused (stale lease) or never got: a second run.
    discarded = {
        line["task_id"]
        for line in fleet.log_lines()
        if line.get("task_id") in task_ids
        and str(line.get("message", "")).startswith(("outcome refused", "outcome lost"))
    }
    counts = {
        "submitted": report.submitted,
        "acked": len(report.acked),
        "succeeded": outcome["states"]["succeeded"],
        "dead_letter": outcome["states"]["dead_letter"],
        "failed": outcome["states"]["failed"],
        "retried_after_503": report.retried_after_503,
        "retried_after_connection_error": report.retried_after_connection_error,
        "delivered_more_than_once": outcome["delivered_more_than_once"],
        "handler_results_discarded": len(discarded),
        "succeeded_twice": len(outcome["succeeded_twice"]),
        "http_statuses": dict(report.statuses),
    }
    with capsys.disabled():
        print(f"\n[{report.name}] {json.dumps(counts)}")
    assert not report.unexpected, f"answers other than 200/201/503: {report.unexpected[:5]}"
    assert not report.not_acked, f"{len(report.not_acked)} submits never acknowledged: {report.not_acked[:5]}"
    assert not outcome["missing"], f"acknowledged tasks missing from the database: {outcome['missing'][:5]}"
    assert outcome["rows"] == report.submitted, "one task per idempotency key, however often a submit was retried"
    assert not outcome["succeeded_twice"], f"tasks that succeeded more than once: {outcome['succeeded_twice']}"
    for message in report.unavailable_messages:
        error = json.loads(message)["error"]
        assert error["code"] == "unavailable" and "database" in error["message"], message


# ---- fleet helpers -----------------------------------------------------------------------------------------


async def _ready(session: aiohttp.ClientSession, process: ProcessInfo) -> None:
    try:
        async with session.get(f"http://127.0.0.1:{process.health}/readyz") as response:
            assert response.status == 200, f"{process.name} not ready: {response.status}"
    except aiohttp.ClientError as exc:
        raise AssertionError(f"{process.name} not answering: {exc!r}") from exc


async def fleet_ready(fleet: FaultFleet) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def every_process_ready() -> None:
            for process in fleet.state().processes:
                assert alive(process.pid), f"{process.name} (pid {process.pid}) is not running"
                await _ready(session, process)

        await assert_eventually_async(
            every_process_ready, timeout_sec=60, interval_sec=0.5, message="the fleet did not become ready"
        )


async def restarted(fleet: FaultFleet, name: str, restarts_before: int) -> ProcessInfo:
    """Wait until the supervisor restarted `name` and the new process is ready."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def back() -> ProcessInfo:
            process = fleet.process(name)
            assert process.restarts == restarts_before + 1, f"{name} restarts: {process.restarts}"
            await _ready(session, process)
            return process

        result: ProcessInfo = await assert_eventually_async(
            back, timeout_sec=30, interval_sec=0.2, message=f"{name} was not restarted"
        )
        return result


async def freeze_while_holding(fleet: FaultFleet, process: ProcessInfo, *, at_least: int = 2) -> list[str]:
    """SIGSTOP an agent at a moment it holds `at_least` leases; the ids of the tasks leased to it then.

    The agent's own /v1/info says when it is busy; once it is frozen the database says what it really holds. Too
    few (its tasks finished in between): resume it and try again, a bounded number of times.
    """
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        conn = await asyncpg.connect(fleet.dsn)
        try:

            async def busy() -> None:
                async with session.get(f"http://127.0.0.1:{process.http}/v1/info") as response:
                    running = (await response.json())["running"]
                assert len(running) >= at_least, f"{process.name} runs {len(running)} tasks right now"

            for _ in range(20):
                await assert_eventually_async(busy, timeout_sec=10, interval_sec=0.01)
                os.kill(process.pid, signal.SIGSTOP)
                rows = await conn.fetch(
                    "SELECT task_id::text FROM tasks WHERE state = 'leased' AND lease_owner = $1", process.agent_id
                )
                if len(rows) >= at_least:
                    return [r["task_id"] for r in rows]
                os.kill(process.pid, signal.SIGCONT)
        finally:
            await conn.close()
    raise AssertionError(f"{process.name} never held {at_least} leases at the moment it was stopped")


# ---- the faults --------------------------------------------------------------------------------------------


async def every_orchestrator_listens(fleet: FaultFleet) -> None:
    """Each orchestrator holds its LISTEN connection (the wake-ups); after an outage it must open a new one."""
    conn = await asyncpg.connect(fleet.dsn)
    try:
        listening = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'"
        )
    finally:
        await conn.close()
    orchestrators = len(fleet.state().orchestrators)
    assert listening == orchestrators, f"{listening} LISTEN connections for {orchestrators} orchestrators"


async def _probe_every_api_unavailable(fleet: FaultFleet, task_id: str) -> None:
    """While the database is down every API call that needs it answers 503 / UNAVAILABLE naming the database."""
    base = fleet.http_bases()[0]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        calls = [
            ("POST", "/v1/tasks", {"agent_type": "coding", "payload": {}}),
            ("GET", f"/v1/tasks/{task_id}", None),
            ("GET", "/v1/tasks?page_size=1", None),
            ("POST", f"/v1/tasks/{task_id}:cancel", None),
            ("GET", "/v1/agents", None),
            ("GET", "/v1/agents/local-coding-0", None),
        ]
        for method, path, body in calls:
            async with session.request(method, base + path, json=body) as response:
                text = await response.text()
                assert response.status == 503, f"{method} {path} during the outage: {response.status} {text}"
                assert json.loads(text)["error"]["code"] == "unavailable", text
    target = f"127.0.0.1:{fleet.state().orchestrators[0].grpc}"
    # No client retries: the first answer is what is checked.
    async with grpc.aio.insecure_channel(target, options=[("grpc.enable_retries", 0)]) as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        grpc_calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: stub.SubmitTask(
                tasks_pb2.SubmitTaskRequest(agent_type=c.AGENT_TYPE.to_proto("coding")), timeout=10
            ),
            lambda: stub.GetTask(tasks_pb2.GetTaskRequest(task_id=task_id), timeout=10),
            lambda: stub.ListTasks(tasks_pb2.ListTasksRequest(page_size=1), timeout=10),
        ]
        for call in grpc_calls:
            with pytest.raises(grpc.aio.AioRpcError) as failure:
                await call()
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE, failure.value
            assert "database" in (failure.value.details() or ""), failure.value.details()


async def test_postgres_crash_stop_and_restart_loses_nothing_and_answers_503(
    fault_fleet: FaultFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    await fleet_ready(fault_fleet)
    await every_orchestrator_listens(fault_fleet)
    restarts_before = {p.name: p.restarts for p in fault_fleet.state().processes}
    postgres = fault_fleet.postgres()

    async def crash_postgres(report: LoadReport) -> None:
        await asyncio.to_thread(postgres.stop, mode="immediate")

        async def saw_503() -> None:
            assert report.statuses["503"] > 0, "no submit has met the outage yet"

        try:
            await assert_eventually_async(
                saw_503, timeout_sec=10, message="no submit got 503 while PostgreSQL was down"
            )
            await _probe_every_api_unavailable(fault_fleet, next(iter(report.acked.values())))
        finally:
            await asyncio.to_thread(postgres.start)

    report, outcome = await run_load(fault_fleet, "postgres-crash", crash_postgres)
    check_and_print(fault_fleet, report, outcome, capsys)
    assert report.statuses["503"] > 0
    assert "500" not in report.statuses
    # The orchestrators rode out the outage: the pool and the LISTEN connection reconnected, nothing restarted.
    assert {p.name: p.restarts for p in fault_fleet.state().processes} == restarts_before
    await fleet_ready(fault_fleet)
    await assert_eventually_async(lambda: every_orchestrator_listens(fault_fleet), timeout_sec=20, interval_sec=0.5)
    # The outage is logged by the store, rate-limited; background rounds it skipped are not failures with tracebacks.
    logs = [path.read_text() for path in (fault_fleet.state_dir / "logs").glob("orchestrator-*.log")]
    assert logs, "no orchestrator log found"
    failed_rounds = [line for text in logs for line in text.splitlines() if "round failed" in line]
    assert not failed_rounds, f"maintenance logged the outage as failures: {failed_rounds[:2]}"


async def test_sigkilled_orchestrator_is_restarted_and_loses_nothing(
    fault_fleet: FaultFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    await fleet_ready(fault_fleet)
    victim = fault_fleet.process("orchestrator-0")

    async def kill_orchestrator(_report: LoadReport) -> None:
        os.kill(victim.pid, signal.SIGKILL)
        back = await restarted(fault_fleet, victim.name, victim.restarts)
        assert back.pid != victim.pid and (back.http, back.grpc) == (victim.http, victim.grpc)
        supervisor_log = (fault_fleet.state_dir / "logs" / "supervisor.log").read_text().splitlines()
        logged = [json.loads(line) for line in supervisor_log if line.startswith("{")]
        assert any(
            entry["message"] == "process restarted"
            and entry["fleet_process"] == victim.name
            and entry["restarts"] == back.restarts
            for entry in logged
        ), "the restart is not in the supervisor's log"

    report, outcome = await run_load(fault_fleet, "orchestrator-kill", kill_orchestrator)
    check_and_print(fault_fleet, report, outcome, capsys)


async def test_sigkilled_agent_is_restarted_and_its_tasks_redelivered(
    fault_fleet: FaultFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    await fleet_ready(fault_fleet)
    victim = fault_fleet.process("local-coding-0")
    held: list[str] = []

    async def kill_agent(_report: LoadReport) -> None:
        # Frozen first, so what it holds is read before it dies, then killed.
        held.extend(await freeze_while_holding(fault_fleet, victim))
        os.kill(victim.pid, signal.SIGKILL)
        await restarted(fault_fleet, victim.name, victim.restarts)

    report, outcome = await run_load(fault_fleet, "agent-kill", kill_agent)
    check_and_print(fault_fleet, report, outcome, capsys)
    assert held, "the agent held no lease when it was killed"
    # `any`, not `all`: an outcome already on the wire when the signal landed may still have been accepted.
    assert any(outcome["attempts"].get(task_id, 0) > 1 for task_id in held), (
        f"none of the killed agent's tasks {held} was redelivered: {[outcome['attempts'].get(t) for t in held]}"
    )


async def test_sigstopped_agent_past_its_lease_cannot_complete_twice(
    fault_fleet: FaultFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    await fleet_ready(fault_fleet)
    victim = fault_fleet.process("local-coding-1")
    held: list[str] = []

    async def stop_agent_past_its_lease(_report: LoadReport) -> None:
        try:
            held.extend(await freeze_while_holding(fault_fleet, victim))
            conn = await asyncpg.connect(fault_fleet.dsn)
            try:

                async def leases_moved_on() -> None:
                    still = await conn.fetchval(
                        "SELECT count(*) FROM tasks WHERE task_id = ANY($1::uuid[]) AND lease_owner = $2",
                        held,
                        victim.agent_id,
                    )
                    assert still == 0, f"{still} tasks still leased to the stopped agent"

                # Its leases expire and the tasks go to the other coding agent while it is frozen.
                await assert_eventually_async(leases_moved_on, timeout_sec=LEASE_SECONDS + 15, interval_sec=0.2)
            finally:
                await conn.close()
        finally:
            os.kill(victim.pid, signal.SIGCONT)

    report, outcome = await run_load(fault_fleet, "agent-stop", stop_agent_past_its_lease)
    check_and_print(fault_fleet, report, outcome, capsys)
    assert held, "the agent held no lease when it was stopped"
    # `any`, not `all`: an outcome already on the wire when the signal landed may still have been accepted.
    assert any(outcome["attempts"].get(task_id, 0) > 1 for task_id in held), (
        f"none of the stopped agent's tasks {held} was redelivered: {[outcome['attempts'].get(t) for t in held]}"
    )
    assert fault_fleet.process(victim.name).restarts == victim.restarts, "a stopped process is alive: no restart"


def test_fast_mode_turns_durability_off_and_says_so() -> None:
    state_dir = tempfile.mkdtemp(prefix="ai-agents-fast-")
    env = {**os.environ, "AI_AGENTS_LOCAL_DIR": state_dir}
    env.pop("AI_AGENTS_ORCHESTRATOR_TARGET", None)
    refused = run_cli("local", "up", "--fast", "--dsn", "postgresql://127.0.0.1:1/x", env=env, check=False)
    assert refused.returncode != 0 and "--dsn" in refused.stderr, refused.stderr
    try:
        up = run_cli(
            *("local", "up", "--detach", "--fast", "--orchestrators", "1", "--agents-per-type", "0"),
            env=env,
            timeout=180,
        )
        summary = json.loads(up.stdout)
        assert summary["fast"] is True
        assert "fsync=off" in summary["warning"] and "lose" in summary["warning"]
        assert "WARNING" in up.stderr and "synchronous_commit=off" in up.stderr
        assert asyncio.run(durability_settings(summary["dsn"])) == dict.fromkeys(DURABILITY, "off")
    finally:
        run_cli("local", "down", env=env, timeout=120)
        shutil.rmtree(state_dir, ignore_errors=True)
