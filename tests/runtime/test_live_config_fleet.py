"""Live configuration on the local fleet: a changed file changes what running processes do, with the same PIDs.

`ai-agents local up --config` starts every process on a file laid out as a Kubernetes ConfigMap volume; the
test swaps it as the kubelet does and watches the handler's latency and failure rate, the orchestrator's
attempt limit, the agent's concurrency and log level change, then a bad file refused with the metrics moving.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_cli import alive, run_cli
from live_config_files import ConfigMapVolume
from prometheus_client.parser import text_string_to_metric_families
from waits import consistently, eventually

pytestmark = pytest.mark.timeout(240)

START = """\
agents: {simulate_latency_ms: 5, concurrency: 2}
"""
CHANGED = """\
common: {log_level: DEBUG}
orchestrator: {default_max_attempts: 1}
agents: {simulate_latency_ms: 123, concurrency: 3}
agent_types: {coding: {concurrency: 7}}
"""
FAILING = CHANGED.replace("simulate_latency_ms: 123", "simulate_latency_ms: 1, simulate_failure_rate: 1.0")


class LiveFleet:
    def __init__(self, summary: dict[str, Any], env: dict[str, str], volume: ConfigMapVolume, state_dir: Path):
        self.summary = summary
        self.env = env
        self.volume = volume
        self.state_dir = state_dir

    def endpoints(self) -> list[str]:
        return [o["metrics"] for o in self.summary["orchestrators"]] + [a["metrics"] for a in self.summary["agents"]]

    def pids(self) -> dict[str, int]:
        """Every process's pid and restart count now, from the fleet's state file (the supervisor updates it)."""
        state = json.loads((self.state_dir / "state.json").read_text())
        return {p["name"]: (p["pid"], p["restarts"]) for p in state["processes"]}

    def agent_info(self) -> dict[str, Any]:
        state = json.loads((self.state_dir / "state.json").read_text())
        http = next(p["http"] for p in state["processes"] if p["kind"] == "agent")
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/info", timeout=5) as response:
            return dict(json.loads(response.read()))

    def agent_log(self) -> list[dict[str, Any]]:
        lines = (self.state_dir / "logs" / f"{self.summary['agents'][0]['agent_id']}.log").read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def submit(self) -> dict[str, Any]:
        done = run_cli("submit", "coding", "--wait", env=self.env, check=False)
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _metric(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{url} has no sample {name}{labels}")


def _eventually(what: str, condition: Callable[[], bool], timeout: float = 30) -> None:
    eventually(condition, bool, timeout_sec=timeout, interval_sec=0.2, expectation=what)


@pytest.fixture(scope="module")
def live_fleet() -> Iterator[LiveFleet]:
    state_dir = Path(tempfile.mkdtemp(prefix="ai-agents-live-"))
    volume = ConfigMapVolume(state_dir / "config")
    volume.write(START)
    # A short poll keeps the test quick; the default (2 s) is for a fleet of hundreds reading a ConfigMap.
    env = {**os.environ, "AI_AGENTS_LOCAL_DIR": str(state_dir), "AI_AGENTS_CONFIG_POLL_SECONDS": "0.3"}
    env.pop("AI_AGENTS_ORCHESTRATOR_TARGET", None)
    up = run_cli(
        *("local", "up", "--detach", "--orchestrators", "1", "--agents-per-type", "0", "--agents", "coding=1"),
        *("--config", str(volume.path)),
        env=env,
        timeout=180,
    )
    summary = json.loads(up.stdout.strip().splitlines()[-1])
    try:
        yield LiveFleet(summary, env, volume, state_dir)
    finally:
        run_cli("local", "down", env=env, timeout=120)
        shutil.rmtree(state_dir, ignore_errors=True)


def test_a_changed_file_changes_behaviour_with_the_same_processes(live_fleet: LiveFleet) -> None:
    fleet = live_fleet
    before = fleet.pids()
    first = fleet.submit()
    assert first["state"] == "succeeded" and first["result"]["latency_ms"] == 5, first
    assert fleet.agent_info()["concurrency"] == 2
    assert not [e for e in fleet.agent_log() if e["level"] == "debug"], "INFO at start: no debug lines"
    generations = [_metric(url, "ai_agents_config_generation") for url in fleet.endpoints()]
    assert generations == [1] * len(generations), "the file at start is the first generation everywhere"

    fleet.volume.write(CHANGED)  # the kubelet's ..data swap
    _eventually(
        "every process applied the new file",
        lambda: all(_metric(url, "ai_agents_config_generation") == 2 for url in fleet.endpoints()),
    )
    assert fleet.agent_info()["concurrency"] == 7, "agent_types.coding wins over agents"
    second = fleet.submit()
    assert second["state"] == "succeeded" and second["result"]["latency_ms"] == 123, second
    assert [e for e in fleet.agent_log() if e["level"] == "debug" and e["message"] == "task started"], (
        "log_level DEBUG applied: the agent logs its tasks at debug"
    )

    fleet.volume.write(FAILING)
    _eventually(
        "every process applied the failing file",
        lambda: all(_metric(url, "ai_agents_config_generation") == 3 for url in fleet.endpoints()),
    )
    failed = fleet.submit()
    # Both processes' live values at work: the agent's failure rate and the orchestrator's attempt limit.
    assert failed["state"] == "dead_letter" and failed["attempts"] == 1, failed
    assert "simulated failure" in failed["error"]

    assert fleet.pids() == before, "same PIDs, no restart: applied live"


def test_a_bad_file_is_refused_and_the_settings_in_force_stay(live_fleet: LiveFleet) -> None:
    fleet = live_fleet
    before = fleet.pids()
    generations = {url: _metric(url, "ai_agents_config_generation") for url in fleet.endpoints()}
    refused = {url: _metric(url, "ai_agents_config_reloads_total", result="refused") for url in fleet.endpoints()}
    concurrency = fleet.agent_info()["concurrency"]

    fleet.volume.write("agents: {concurrency: 0}\n")
    _eventually(
        "every process counted the refusal",
        lambda: all(
            _metric(url, "ai_agents_config_reloads_total", result="refused") == refused[url] + 1
            for url in fleet.endpoints()
        ),
    )
    # Through several more polls of the same bad file, no process applies it.
    consistently(
        lambda: {url: _metric(url, "ai_agents_config_generation") for url in fleet.endpoints()},
        lambda seen: seen == generations,
        duration_sec=1.5,
        interval_sec=0.3,
        expectation="the refused file is never applied",
    )
    assert fleet.agent_info()["concurrency"] == concurrency, "the old settings stay"
    refusals = [e for e in fleet.agent_log() if e["message"].startswith("live configuration refused")]
    assert len(refusals) == 1, "logged once"
    assert "concurrency" in refusals[0]["error"]
    assert fleet.pids() == before


def test_sighup_rereads_the_chaos_monkeys_file_at_once(tmp_path: Path, live_fleet: LiveFleet) -> None:
    """The monkey in dry-run, on an hour's interval and an hour's poll: only SIGHUP can bring its round forward."""
    volume = ConfigMapVolume(tmp_path / "config")
    volume.write("chaos_monkey: {chaos_interval_seconds: 3600, chaos_dry_run: true}\n")
    env = {
        **live_fleet.env,
        "AI_AGENTS_CHAOS_MODE": "local",
        "AI_AGENTS_CONFIG_POLL_SECONDS": "3600",
        "AI_AGENTS_HEALTH_PORT": "0",
        "AI_AGENTS_METRICS_PORT": "0",
    }
    log_path = tmp_path / "chaos.log"
    with log_path.open("wb") as log_file:
        monkey = subprocess.Popen(
            [sys.executable, "-m", "ai_agents", "chaos-monkey", "--config", str(volume.path)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:

        def logged(message: str) -> bool:
            return any(message in line for line in log_path.read_text().splitlines())

        _eventually("the monkey applied its file", lambda: logged("live configuration applied"))
        volume.write("chaos_monkey: {chaos_interval_seconds: 0.2, chaos_dry_run: true}\n")
        consistently(
            lambda: logged("dry run: would strike"),
            lambda struck: not struck,
            duration_sec=0.5,
            interval_sec=0.1,
            expectation="no round before SIGHUP (no poll for an hour, so no change yet)",
        )
        monkey.send_signal(signal.SIGHUP)
        _eventually("a dry-run round right after SIGHUP", lambda: logged("dry run: would strike"), timeout=10)
        assert monkey.poll() is None, "SIGHUP re-reads; it does not end the process"
        assert all(alive(a["pid"]) for a in live_fleet.summary["agents"]), "dry run: nothing struck"
    finally:
        monkey.terminate()
        monkey.wait(timeout=30)
