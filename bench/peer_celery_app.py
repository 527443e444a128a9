"""The peer's side of `make bench-compare`: a Celery app with one no-op task, as a user would configure it.

Imported by the bench (to publish) and by the Celery worker processes it starts (`celery -A peer_celery_app`).
The broker and result backend come from the environment the bench sets: a Redis it started on 127.0.0.1.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

app = Celery(
    "ai_agents_bench_peer",
    broker=os.environ.get("BENCH_PEER_BROKER", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("BENCH_PEER_BACKEND", "redis://127.0.0.1:6379/1"),
)
app.conf.update(
    # The same promise our leases make: a task is acknowledged to the broker only after it ran, so a worker
    # that dies mid-task has it redelivered.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Results are kept (a result backend), as our store keeps every task's outcome.
    task_ignore_result=False,
    result_expires=3600,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(payload: dict[str, Any]) -> dict[str, Any]:
    """The no-op workload: like the simulate handler at 0 ms latency, it returns a small result at once."""
    return {"ok": True, "i": payload.get("i")}
