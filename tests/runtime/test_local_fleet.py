"""`ai-agents local up/down`, the CLI commands, the chaos monkey, and the metrics contract, with real processes.

The fleet here is the one a developer runs: a throwaway PostgreSQL, two orchestrators and agents as processes.
The metrics contract test ties docs/contracts.md (which the charts' queries are checked against) to what the
running processes really export.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from fleet_cli import alive as _alive
from fleet_cli import run_cli
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(240)


def test_local_up_prints_the_fleet_as_one_json_line(fleet: tuple[dict, dict]) -> None:
    summary, _ = fleet
    assert len(summary["orchestrators"]) == 2
    for orchestrator in summary["orchestrators"]:
        assert orchestrator["http"].startswith("http://127.0.0.1:")
        assert orchestrator["grpc"].startswith("127.0.0.1:")
        assert isinstance(orchestrator["pid"], int) and _alive(orchestrator["pid"])
        with urllib.request.urlopen(orchestrator["http"] + "/v1/status", timeout=5) as response:
            assert response.status == 200
    types = sorted(a["agent_type"] for a in summary["agents"])
    assert types == sorted(["coding", "testing", "security", "compliance", "documentation", "discovery"])


def test_cli_submits_and_waits_for_a_task(fleet: tuple[dict, dict]) -> None:
    _, env = fleet
    done = run_cli(
        "submit",
        "security",
        "--payload",
        '{"repo": "demo", "vulnerabilities_found": 4}',
        "--wait",
        "--quiet",
        env=env,
    )
    task = json.loads(done.stdout)
    assert task["state"] == "succeeded"
    assert task["result"]["vulnerabilities_found"] == 4
    fetched = json.loads(run_cli("get", task["task_id"], env=env).stdout)
    assert fetched["task_id"] == task["task_id"] and fetched["state"] == "succeeded"
    listed = json.loads(run_cli("list", "--agent-type", "security", "--state", "succeeded", env=env).stdout)
    assert task["task_id"] in [t["task_id"] for t in listed["tasks"]]


def test_cli_lists_agents_and_status(fleet: tuple[dict, dict]) -> None:
    _, env = fleet
    agents = json.loads(run_cli("agents", "--json", env=env).stdout)
    by_type: dict[str, int] = {}
    for agent in agents:
        assert agent["state"] == "active"
        by_type[agent["agent_type"]] = by_type.get(agent["agent_type"], 0) + 1
    assert by_type == {
        t: 1
        for t in (
            "coding",
            "testing",
            "security",
            "compliance",
            "documentation",
            "discovery",
        )
    }
    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert status["database_ok"] is True
    assert len(status["types"]) == 6


def test_cli_reports_errors_as_json(fleet: tuple[dict, dict]) -> None:
    _, env = fleet
    missing = run_cli("get", "00000000-0000-0000-0000-000000000000", env=env, check=False)
    assert missing.returncode == 2
    assert json.loads(missing.stderr)["error"]["code"] == "NOT_FOUND"


def _scrape(url: str) -> tuple[set[str], set[str]]:
    """(metric names declared, sample names present) of one /metrics endpoint."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    declared: set[str] = set()
    samples: set[str] = set()
    for family in text_string_to_metric_families(text):
        declared.add(family.name)
        if family.type == "counter":
            declared.add(family.name + "_total")
        for sample in family.samples:
            samples.add(sample.name)
    return declared, samples


def test_every_contract_metric_is_exported_by_the_running_fleet(
    fleet: tuple[dict, dict],
) -> None:
    summary, env = fleet
    # Traffic for the type-specific signals: a testing, a security and a compliance task.
    for agent_type in ("testing", "security", "compliance"):
        run_cli("submit", agent_type, "--wait", "--quiet", env=env)
    declared: set[str] = set()
    samples: set[str] = set()
    for endpoint in [o["metrics"] for o in summary["orchestrators"]] + [a["metrics"] for a in summary["agents"]]:
        d, s = _scrape(endpoint)
        declared |= d
        samples |= s
    from promql import contract_metric_names  # the same reader the chart tests check queries with

    contract = contract_metric_names(REPO_ROOT / "docs" / "contracts.md")
    assert contract, "the contract lists no metrics"
    missing = sorted(name for name in contract if name not in declared)
    assert not missing, f"named in docs/contracts.md but not exported by any process: {missing}"
    # The series that scaling and alerting read must carry data, not just be declared.
    for name in (
        "ai_agents_queue_depth",
        "ai_agents_tasks_submitted_total",
        "ai_agents_tasks_completed_total",
        "ai_agents_agents",
        "ai_agents_test_duration_seconds_bucket",
        "ai_agents_vulnerabilities_found_total",
        "ai_agents_compliance_violations_total",
        "ai_agents_grpc_requests_total",
        "ai_agents_grpc_request_duration_seconds_bucket",
        "ai_agents_agent_tasks_total",
        "ai_agents_log_messages_total",
        "ai_agents_client_requests_total",
    ):
        assert name in samples, f"{name} has no samples after traffic"


def test_chaos_monkey_kills_local_agents_and_respects_dry_run(
    own_fleet: tuple[dict, dict],
) -> None:
    summary, env = own_fleet
    chaos_env = {
        **env,
        "AI_AGENTS_CHAOS_MODE": "local",
        "AI_AGENTS_CHAOS_INTERVAL_SECONDS": "0.2",
        "AI_AGENTS_CHAOS_MAX_ROUNDS": "1",
        "AI_AGENTS_CHAOS_MAX_DELETIONS_PER_RUN": "1",
        "AI_AGENTS_HEALTH_PORT": "0",
        "AI_AGENTS_METRICS_PORT": "0",
        "AI_AGENTS_LOG_FORMAT": "text",
    }
    agent_pids = [a["pid"] for a in summary["agents"]]
    run_cli("chaos-monkey", env={**chaos_env, "AI_AGENTS_CHAOS_DRY_RUN": "true"}, timeout=60)
    assert all(_alive(p) for p in agent_pids), "a dry run must not kill anything"
    run_cli("chaos-monkey", env=chaos_env, timeout=60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and all(_alive(p) for p in agent_pids):
        time.sleep(0.1)
    dead = [p for p in agent_pids if not _alive(p)]
    assert len(dead) == 1, f"one round with max 1 deletion kills exactly one agent, killed {dead}"
    orchestrators = [o["pid"] for o in summary["orchestrators"]]
    assert all(_alive(p) for p in orchestrators), "the monkey targets agents only"


def test_foreground_local_up_stops_the_whole_fleet_on_sigterm() -> None:
    state_dir = tempfile.mkdtemp(prefix="ai-agents-fleet-fg-")
    env = {**os.environ, "AI_AGENTS_LOCAL_DIR": state_dir}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ai_agents",
            "local",
            "up",
            "--orchestrators",
            "1",
            "--agents",
            "coding=1",
            "--agents-per-type",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        summary = json.loads(proc.stdout.readline())
        pids = [o["pid"] for o in summary["orchestrators"]] + [a["pid"] for a in summary["agents"]]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not [p for p in pids if _alive(p)], "SIGTERM to `local up` must stop every process it started"
        assert not (Path(state_dir) / "state.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run([sys.executable, "-m", "ai_agents", "local", "down"], env=env, capture_output=True, timeout=60)
