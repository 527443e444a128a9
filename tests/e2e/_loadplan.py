"""The load's plan, apart from locust (importing locust monkey-patches the process): a bounded task budget,
idempotency keys, the acknowledgement ledger file, and the parsing of locust's CSV summary."""

from __future__ import annotations

import csv
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
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 1.0

    def line(self) -> str:
        return (f"{self.requests} requests, {self.failures} failed ({self.error_rate:.2%}), {self.rps:.1f} RPS, "
                f"p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms, p99 {self.p99_ms:.0f} ms")


def parse_stats_csv(path: Path, *, name: str = "Aggregated", request_type: str | None = None) -> LoadSummary:
    """One row of locust's `<prefix>_stats.csv` (by default the aggregate of the logical requests)."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        if row["Name"] == name and (request_type is None or row["Type"] == request_type):
            return LoadSummary(
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=float(row["Requests/s"]),
                p50_ms=_num(row["50%"]),
                p95_ms=_num(row["95%"]),
                p99_ms=_num(row["99%"]),
            )
    raise KeyError(f"no row {request_type or '*'} {name!r} in {path}; rows: {[(r['Type'], r['Name']) for r in rows]}")


def _num(value: Any) -> float:
    return float(value) if value not in ("", "N/A", None) else 0.0


def logical_summary(path: Path) -> LoadSummary:
    """The logical requests (every row but the retried "ATTEMPT"s): counts and RPS summed, latency percentiles
    of the submissions (POST /v1/tasks, the request the SLO is about)."""
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["Name"] != "Aggregated" and r["Type"] != "ATTEMPT"]
    if not rows:
        raise KeyError(f"no logical requests in {path}")
    submit = parse_stats_csv(path, name="/v1/tasks", request_type="POST")
    return LoadSummary(
        requests=sum(int(r["Request Count"]) for r in rows),
        failures=sum(int(r["Failure Count"]) for r in rows),
        rps=sum(float(r["Requests/s"]) for r in rows),
        p50_ms=submit.p50_ms,
        p95_ms=submit.p95_ms,
        p99_ms=submit.p99_ms,
    )
