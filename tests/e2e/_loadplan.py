"""The load's plan, apart from locust (importing locust monkey-patches the process): a bounded task budget,
idempotency keys, the acknowledgement ledger file, and the parsing of locust's CSV summary."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class TaskBudget:
    """At most `limit` submissions in all; `take()` is False once they are spent (the request loop's bound)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the task budget must be at least 1")
        self.limit = limit
        self._taken = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._taken >= self.limit:
                return False
            self._taken += 1
            return True

    @property
    def taken(self) -> int:
        return self._taken


def new_idempotency_key(run_id: str) -> str:
    return f"{run_id}-{uuid.uuid4().hex}"


class AckLog:
    """JSON lines `{"key": ..., "task_id": ..., "agent_type": ...}`, one per acknowledged submission."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, key: str, task_id: str, agent_type: str) -> None:
        line = json.dumps({"key": key, "task_id": task_id, "agent_type": agent_type})
        with self._lock, self.path.open("a") as fh:
            fh.write(line + "\n")

    def read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        acks: dict[str, str] = {}
        for line in self.path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                acks[entry["key"]] = entry["task_id"]
        return acks


@dataclass(frozen=True)
class LoadSummary:
    """`requests`/`failures`: logical requests (a submission retried to success counts once, as a success).
    `attempts`/`failed_attempts`: every HTTP attempt, each retried one a failure of its own. `rps`: logical
    requests per second achieved. Latency percentiles: of the submissions, retries and back-off included."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    attempts: int = 0
    failed_attempts: int = 0

    @property
    def error_rate(self) -> float:
        """Logical requests that failed after their retries (what a client with retries sees)."""
        return self.failures / self.requests if self.requests else 1.0

    @property
    def attempt_error_rate(self) -> float:
        """Attempts that failed, retried ones included: a request that needed a retry did not succeed first time."""
        return self.failed_attempts / self.attempts if self.attempts else 1.0

    def line(self) -> str:
        return (
            f"{self.requests} requests, {self.failures} failed ({self.error_rate:.2%}), "
            f"{self.attempts} attempts, {self.failed_attempts} failed ({self.attempt_error_rate:.2%}), "
            f"{self.rps:.1f} RPS, p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms, p99 {self.p99_ms:.0f} ms"
        )


def write_summary(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"rows": rows}, indent=2))


def logical_summary(path: Path) -> LoadSummary:
    """Counts and RPS of the logical requests (every row but the retried "ATTEMPT"s), every attempt counted
    apart, and the latency percentiles of the submissions (POST /v1/tasks, the request the SLO is about)."""
    all_rows = json.loads(path.read_text())["rows"]
    retried = [r for r in all_rows if r["type"] == "ATTEMPT"]
    rows = [r for r in all_rows if r["type"] != "ATTEMPT"]
    submits = [r for r in rows if r["type"] == "POST" and r["name"] == "/v1/tasks"]
    if not submits:
        raise KeyError(f"no POST /v1/tasks row in {path}: nothing was submitted")
    submit = submits[0]
    requests = sum(int(r["requests"]) for r in rows)
    failures = sum(int(r["failures"]) for r in rows)
    return LoadSummary(
        requests=requests,
        failures=failures,
        rps=sum(float(r["rps"]) for r in rows),
        p50_ms=float(submit["p50_ms"]),
        p95_ms=float(submit["p95_ms"]),
        p99_ms=float(submit["p99_ms"]),
        # A retried attempt is reported as one failed ATTEMPT row entry; the logical request's last attempt is
        # the row's own entry.
        attempts=requests + sum(int(r["requests"]) for r in retried),
        failed_attempts=failures + sum(int(r["failures"]) for r in retried),
    )
