"""The JSON log format the charts run, read back from a real orchestrator and agent.

Both run as `ai-agents orchestrator` / `ai-agents agent` processes with AI_AGENTS_LOG_FORMAT=json and tracing
exported over OTLP to a receiver in this test (tracing is on only with an endpoint). What passing proves:
- every line either process writes is one JSON object with `time` (UTC, RFC 3339 with milliseconds), `level`,
  `logger`, `message` and `component` (docs/contracts.md, "Logs");
- every agent line names the agent (`agent_id`, `agent_type`), and the lines about a task name it (`task_id`),
  on the agent while it runs the task and on the orchestrator when it records the submission and the outcome;
- lines logged inside a span carry `trace_id`/`span_id`; a task's submission line on the orchestrator, the
  agent's lines while it runs the task and the orchestrator's outcome line share one trace (the task's), and
  those traces are the ones the processes exported.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.v1 import tasks_pb2
from waits import assert_eventually_async

from ._fleet_support import AgentProcesses
from ._orchestrator_process import wait_ready
from ._otlp_support import TRACING_ENV, orchestrator_process, otlp_receiver

pytestmark = pytest.mark.timeout(120)

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
LEVELS = {"debug", "info", "warning", "error", "critical"}
HEX_TRACE = re.compile(r"[0-9a-f]{32}")
HEX_SPAN = re.compile(r"[0-9a-f]{16}")
JSON_LOGS = {"AI_AGENTS_LOG_FORMAT": "json", "AI_AGENTS_LOG_LEVEL": "DEBUG"}


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a process's output, each of which must be one JSON object with the common fields."""
    entries = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{path.name}: not a JSON line: {line!r}")
        assert isinstance(entry, dict), line
        assert TIME.fullmatch(entry.get("time", "")), f"time: {line}"
        assert entry.get("level") in LEVELS, f"level: {line}"
        assert isinstance(entry.get("logger"), str) and entry["logger"], f"logger: {line}"
        assert isinstance(entry.get("message"), str) and entry["message"], f"message: {line}"
        assert isinstance(entry.get("component"), str) and entry["component"], f"component: {line}"
        if "trace_id" in entry or "span_id" in entry:
            assert HEX_TRACE.fullmatch(entry["trace_id"]) and HEX_SPAN.fullmatch(entry["span_id"]), line
        entries.append(entry)
    assert entries, f"{path.name} is empty"
    return entries


def about(entries: list[dict[str, Any]], task_id: str, message: str) -> dict[str, Any]:
    """The one line with this message about this task."""
    found = [e for e in entries if e.get("task_id") == task_id and e["message"] == message]
    assert len(found) == 1, f"{message!r} about {task_id}: {found}\nall lines: {entries}"
    return found[0]


async def run_two_tasks(grpc_port: int) -> tuple[str, str]:
    """One task that succeeds and one the handler fails (not retried); returns their ids once both are final."""
    async with await OrchestratorClient.connect(f"ipv4:127.0.0.1:{grpc_port}", timeout=10) as client:
        ok = (await client.submit_task("coding", {})).task
        failing = (await client.submit_task("coding", {"simulate_failure_rate": 1, "simulate_retryable": False})).task

        async def finished() -> None:
            states = [(await client.get_task(t.task_id)).state for t in (ok, failing)]
            assert states == [tasks_pb2.TASK_STATE_SUCCEEDED, tasks_pb2.TASK_STATE_FAILED], states

        await assert_eventually_async(finished, timeout_sec=30, message="the agent did not finish both tasks")
        return ok.task_id, failing.task_id


async def test_json_logs_carry_time_level_logger_message_trace_and_task_fields(
    dsn: str, agents: AgentProcesses, tmp_path: Path
) -> None:
    orchestrator_log = tmp_path / "orchestrator.log"
    async with otlp_receiver() as (endpoint, receiver):
        tracing = {**TRACING_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        async with orchestrator_process(dsn, orchestrator_log, **JSON_LOGS, **tracing) as ports:
            await wait_ready(ports["health"], orchestrator_log)
            agent_id = agents.start("coding", f"ipv4:127.0.0.1:{ports['grpc']}", **JSON_LOGS, **tracing)
            ok, failing = await run_two_tasks(ports["grpc"])
            # Before the orchestrator, so the agent deregisters; in a thread, as the receiver needs this loop.
            await asyncio.to_thread(agents.stop_all)
        # Both processes flush their spans as they exit; the receiver is still listening.

        agent_lines = json_lines(tmp_path / f"{agent_id}.log")
        orchestrator_lines = json_lines(orchestrator_log)

        assert {(e["agent_id"], e["agent_type"], e["component"]) for e in agent_lines} == {
            (agent_id, "coding", "agent-coding")
        }, "every agent line names the agent"
        assert {e["component"] for e in orchestrator_lines} == {"orchestrator"}

        # The agent: its lines while running a task name the task and carry the span of that run.
        started = about(agent_lines, ok, "task started")
        assert about(agent_lines, ok, "task succeeded")["trace_id"] == started["trace_id"]
        handler_failed = about(agent_lines, failing, "handler failed the task")
        assert handler_failed["level"] == "warning" and handler_failed["retryable"] is False
        assert handler_failed["trace_id"] != started["trace_id"], "each task is its own trace"

        # The orchestrator: submission and outcome lines name the task; the outcome names the agent and
        # continues the trace of the agent's run.
        for task_id in (ok, failing):
            submitted = about(orchestrator_lines, task_id, "task submitted")
            assert submitted["agent_type"] == "coding" and "trace_id" in submitted
            # One task, one trace: the agent's run continues the trace of the submit.
            run = about(agent_lines, task_id, "task started")
            assert run["trace_id"] == submitted["trace_id"], "the run is not in the submit's trace"
        completed = about(orchestrator_lines, ok, "task completed")
        assert (completed["agent_id"], completed["state"]) == (agent_id, "succeeded")
        assert completed["trace_id"] == started["trace_id"]
        attempt_failed = about(orchestrator_lines, failing, "task attempt failed")
        assert (attempt_failed["agent_id"], attempt_failed["state"]) == (agent_id, "failed")
        assert attempt_failed["trace_id"] == handler_failed["trace_id"]

        logged_traces = {e["trace_id"] for e in agent_lines + orchestrator_lines if "trace_id" in e}

        async def exported() -> None:
            assert logged_traces <= receiver.trace_ids, sorted(logged_traces - receiver.trace_ids)

        await assert_eventually_async(
            exported, timeout_sec=10, message="trace ids in the logs that no process exported"
        )


def test_without_an_otlp_endpoint_lines_carry_no_trace_ids() -> None:
    """Tracing is off without OTEL_EXPORTER_OTLP_ENDPOINT: no span records, so no ids that lead nowhere."""
    import logging

    from ai_agents.observability.logs import JsonFormatter, bound_log_fields
    from opentelemetry import trace

    formatter = JsonFormatter("agent-coding", {"agent_id": "a-1", "agent_type": "coding"})
    record = logging.LogRecord("ai_agents.agent", logging.INFO, __file__, 1, "task %s", ("started",), None)
    with bound_log_fields(task_id="t-1"), trace.get_tracer("test").start_as_current_span("no provider"):
        entry = json.loads(formatter.format(record))
    assert "trace_id" not in entry and "span_id" not in entry
    assert (entry["message"], entry["task_id"], entry["agent_id"], entry["level"]) == (
        "task started",
        "t-1",
        "a-1",
        "info",
    )
