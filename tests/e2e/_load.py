"""Run locust headless against a URL (a port-forward on 127.0.0.1), bounded by task count and by time."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _loadplan import AckLog, LoadSummary, logical_summary
from ai_agents.domain import AGENT_TYPES

log = logging.getLogger("e2e.load")

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


@dataclass(frozen=True)
class LoadProfile:
    users: int = 4
    rate_per_user: float = 5.0
    run_time_sec: int = 60
    max_tasks: int = 1000
    agent_types: tuple[str, ...] = AGENT_TYPES
    payload: dict[str, Any] | None = None

    @property
    def target_rps(self) -> float:
        return self.users * self.rate_per_user

    @classmethod
    def at_rate(cls, rps: float, run_time_sec: int, *, per_user_rps: float = 5.0, **fields: Any) -> LoadProfile:
        """`rps` requests/s in all, from as many users as a rate of `per_user_rps` each needs; at most as many
        tasks as the rate and time could submit (the count bound)."""
        users = max(1, math.ceil(rps / per_user_rps))
        fields.setdefault("max_tasks", math.ceil(rps * run_time_sec))
        return cls(users=users, rate_per_user=rps / users, run_time_sec=run_time_sec, **fields)


@dataclass
class LoadResult:
    summary: LoadSummary
    acknowledged: dict[str, str]
    returncode: int
    elapsed_sec: float
    output_tail: str


def locust_command(host: str, profile: LoadProfile) -> list[str]:
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "--users",
        str(profile.users),
        "--spawn-rate",
        str(profile.users),
        "--run-time",
        f"{profile.run_time_sec}s",
        "--stop-timeout",
        "15",
        "--only-summary",
        "--exit-code-on-error",
        "0",
    ]


class LoadRun:
    """locust in a subprocess; `start()` returns at once, `wait()` returns the result."""

    def __init__(self, host: str, profile: LoadProfile, workdir: Path, *, token: str | None, run_id: str) -> None:
        self.profile = profile
        self.workdir = workdir
        self.ack_file = workdir / "acks.jsonl"
        self.summary_file = workdir / "summary.json"
        self._cmd = locust_command(host, profile)
        self._env = {
            **os.environ,
            "E2E_LOAD_MAX_TASKS": str(profile.max_tasks),
            "E2E_LOAD_ACK_FILE": str(self.ack_file),
            "E2E_LOAD_TOKEN": token or "",
            "E2E_LOAD_AGENT_TYPES": ",".join(profile.agent_types),
            "E2E_LOAD_RATE_PER_USER": str(profile.rate_per_user),
            "E2E_LOAD_RUN_ID": run_id,
            "E2E_LOAD_PAYLOAD": json.dumps(profile.payload or {}),
            "E2E_LOAD_SUMMARY_FILE": str(self.summary_file),
        }
        self._proc: subprocess.Popen[str] | None = None
        self._started = 0.0
        self._output: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> LoadRun:
        log.info("$ %s", " ".join(self._cmd))
        self._started = time.monotonic()
        self._proc = subprocess.Popen(
            self._cmd, env=self._env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.workdir
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._output.append(line)
            del self._output[:-200]

    def wait(self, *, grace_sec: float = 60) -> LoadResult:
        assert self._proc is not None
        budget = self.profile.run_time_sec + grace_sec
        try:
            rc = self._proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
            raise AssertionError(
                f"locust did not stop within {budget:.0f}s (--run-time {self.profile.run_time_sec}s)"
            ) from None
        if self._reader is not None:
            self._reader.join(timeout=5)
        tail = "".join(self._output[-40:])
        if not self.summary_file.exists():
            raise AssertionError(f"locust exited {rc} without writing {self.summary_file}:\n{tail}")
        return LoadResult(
            summary=logical_summary(self.summary_file),
            acknowledged=AckLog(self.ack_file).read(),
            returncode=rc,
            elapsed_sec=time.monotonic() - self._started,
            output_tail=tail,
        )

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()


@dataclass(frozen=True)
class Slo:
    """What a rate must meet to count as held: errors over every attempt, submission p95, and the rate itself
    reached (an overloaded client or server falls behind its schedule rather than failing)."""

    max_attempt_error_rate: float = 0.01
    p95_ms: float = 100.0
    min_achieved_share: float = 0.9

    def misses(self, target_rps: float, summary: LoadSummary) -> list[str]:
        missed = []
        if summary.attempt_error_rate >= self.max_attempt_error_rate:
            missed.append(f"attempt errors {summary.attempt_error_rate:.2%} >= {self.max_attempt_error_rate:.1%}")
        if summary.p95_ms >= self.p95_ms:
            missed.append(f"p95 {summary.p95_ms:.0f} ms >= {self.p95_ms:.0f} ms")
        if summary.rps < self.min_achieved_share * target_rps:
            missed.append(f"achieved {summary.rps:.1f} RPS < {self.min_achieved_share:.0%} of {target_rps:.0f}")
        return missed


@dataclass
class RampStep:
    target_rps: float
    result: LoadResult
    missed: list[str]

    def line(self) -> str:
        verdict = "held" if not self.missed else "not held: " + "; ".join(self.missed)
        return f"{self.target_rps:.0f} RPS: {verdict} ({self.result.summary.line()})"


def stepped_ramp(
    host: str,
    rates: list[float],
    step_sec: int,
    workdir: Path,
    *,
    token: str | None,
    run_id: str,
    slo: Slo,
    **profile_fields: Any,
) -> list[RampStep]:
    """One bounded locust run per rate, in order, until the first rate the SLO does not hold (the steps above it
    are not run: the server is past what it holds)."""
    steps: list[RampStep] = []
    for index, rps in enumerate(rates):
        step_dir = workdir / f"step-{index}-{rps:.0f}rps"
        step_dir.mkdir(parents=True, exist_ok=True)
        profile = LoadProfile.at_rate(rps, step_sec, **profile_fields)
        result = LoadRun(host, profile, step_dir, token=token, run_id=f"{run_id}-{index}").start().wait()
        step = RampStep(rps, result, slo.misses(rps, result.summary))
        log.info("ramp %s", step.line())
        steps.append(step)
        if step.missed:
            break
    return steps
