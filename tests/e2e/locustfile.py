"""Load on the orchestrator's HTTP API: submit tasks at a fixed rate, read some back, stop at a task budget.

Run by tests/e2e/_load.py (`locust --headless --run-time ...`), which bounds it twice: by time (`--run-time`)
and by count (E2E_LOAD_MAX_TASKS). Each logical request is reported once: a submission is retried on transport
errors with the same idempotency key (safe: the server returns the same task), and the retried attempts are
reported apart, as request type "ATTEMPT", so they stay visible without counting twice.

Environment: E2E_LOAD_MAX_TASKS, E2E_LOAD_ACK_FILE, E2E_LOAD_TOKEN, E2E_LOAD_AGENT_TYPES (comma-separated),
E2E_LOAD_RATE_PER_USER (requests/s per user), E2E_LOAD_RUN_ID, E2E_LOAD_PAYLOAD (JSON object),
E2E_LOAD_SUMMARY_FILE (written when locust quits: per request name counts, RPS and percentiles).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import gevent
import requests
from locust import User, constant_throughput, events, task
from locust.exception import StopUser

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _loadplan import AckLog, TaskBudget, new_idempotency_key, write_summary

MAX_TASKS = int(os.environ.get("E2E_LOAD_MAX_TASKS", "500"))
ACK_FILE = Path(os.environ.get("E2E_LOAD_ACK_FILE", "acks.jsonl"))
TOKEN = os.environ.get("E2E_LOAD_TOKEN", "")
AGENT_TYPES = [t for t in os.environ.get("E2E_LOAD_AGENT_TYPES", "coding").split(",") if t]
RATE_PER_USER = float(os.environ.get("E2E_LOAD_RATE_PER_USER", "5"))
RUN_ID = os.environ.get("E2E_LOAD_RUN_ID", "e2e-load")
PAYLOAD = json.loads(os.environ.get("E2E_LOAD_PAYLOAD", "{}"))
SUMMARY_FILE = Path(os.environ.get("E2E_LOAD_SUMMARY_FILE", "summary.json"))
ATTEMPTS = 4
TIMEOUT_SEC = 10.0

BUDGET = TaskBudget(MAX_TASKS)
ACKS = AckLog(ACK_FILE)


class ApiUser(User):
    wait_time = constant_throughput(RATE_PER_USER)

    def on_start(self) -> None:
        self.session = requests.Session()
        if TOKEN:
            self.session.headers["Authorization"] = f"Bearer {TOKEN}"
        self.recent: list[str] = []

    def _report(self, method: str, name: str, started: float, length: int, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type=method,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exc,
            context={},
        )

    @task(4)
    def submit(self) -> None:
        if not BUDGET.take():
            # The count bound: stop the whole run (from another greenlet, not from inside this user).
            gevent.spawn(self.environment.runner.quit)
            raise StopUser()
        agent_type = random.choice(AGENT_TYPES)
        key = new_idempotency_key(RUN_ID)
        body = {"agent_type": agent_type, "payload": PAYLOAD, "idempotency_key": key}
        started = time.perf_counter()
        error: Exception | None = None
        for attempt in range(ATTEMPTS):
            attempt_started = time.perf_counter()
            try:
                response = self.session.post(self.host + "/v1/tasks", json=body, timeout=TIMEOUT_SEC)
            except requests.RequestException as exc:
                error = exc
            else:
                if response.status_code in (200, 201):
                    task_id = response.json()["task_id"]
                    ACKS.record(key, task_id, agent_type)
                    self.recent = [*self.recent, task_id][-20:]
                    self._report("POST", "/v1/tasks", started, len(response.content), None)
                    return
                error = RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
                if response.status_code < 500 and response.status_code != 429:
                    break  # a client error is not retried
            if attempt < ATTEMPTS - 1:
                self._report("ATTEMPT", "/v1/tasks (retried)", attempt_started, 0, error)
                gevent.sleep(min(0.1 * 2**attempt, 1.0))
        self._report("POST", "/v1/tasks", started, 0, error)

    @task(1)
    def get_task(self) -> None:
        if not self.recent:
            return
        started = time.perf_counter()
        try:
            response = self.session.get(f"{self.host}/v1/tasks/{random.choice(self.recent)}", timeout=TIMEOUT_SEC)
            error = None if response.status_code == 200 else RuntimeError(f"HTTP {response.status_code}")
            self._report("GET", "/v1/tasks/{task_id}", started, len(response.content), error)
        except requests.RequestException as exc:
            self._report("GET", "/v1/tasks/{task_id}", started, 0, exc)


@events.quitting.add_listener
def _write_summary(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    """The final statistics, written by the process itself (locust's CSV writer may miss a short run's end)."""
    write_summary(
        SUMMARY_FILE,
        [
            {
                "type": entry.method,
                "name": entry.name,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "rps": entry.total_rps,
                "p50_ms": entry.get_response_time_percentile(0.50) or 0.0,
                "p95_ms": entry.get_response_time_percentile(0.95) or 0.0,
                "p99_ms": entry.get_response_time_percentile(0.99) or 0.0,
            }
            for entry in environment.stats.entries.values()
        ],
    )
