"""Tracing: with `tracing.otlpEndpoint` set, the orchestrator's and the agents' spans reach Jaeger, and one task is
one trace: the trace of each task submitted over HTTP holds spans of both services, its submit, its lease, its
run and its completion (docs/contracts.md, "Traces"; tests/runtime/test_task_traces.py checks the whole tree)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from _api import OrchestratorApi
from _cluster import JAEGER_SELECTOR
from _kube import forward
from waits import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.release(tracing=True)]
JAEGER_QUERY_PORT = 16686
TASKS = 6


@pytest.fixture(scope="module", autouse=True)
def _needs(need) -> None:
    need("jaeger")


def _jaeger(base_url: str, path: str, **params: Any) -> Any:
    response = requests.get(f"{base_url}{path}", params=params, timeout=15)
    response.raise_for_status()
    return response.json().get("data") or []


def test_task_spans_reach_jaeger_in_joined_traces(release, e2e_note) -> None:
    with release.orchestrator_forward() as orchestrator:
        api = OrchestratorApi(orchestrator.url, release.token())
        submitted = [api.submit("coding", {"trace": n})["task_id"] for n in range(TASKS)]
        eventually(
            lambda: [api.task(t)["state"] for t in submitted],
            lambda states: all(s == "succeeded" for s in states),
            timeout_sec=120,
            interval_sec=2,
            expectation=f"{TASKS} traced tasks succeeded",
        )
    agent_service = f"{release.prefix}-agent-coding"
    with forward(release.kube, release.cfg.jaeger_namespace, JAEGER_SELECTOR, JAEGER_QUERY_PORT) as jaeger:
        services = eventually(
            lambda: set(_jaeger(jaeger.url, "/api/services")),
            lambda names: {"orchestrator", agent_service} <= names,
            timeout_sec=120,
            interval_sec=5,
            expectation=f"Jaeger knows the services orchestrator and {agent_service}",
        )

        def task_traces() -> dict[str, set[str]]:
            """Per submitted task, the operations of its trace when that trace holds spans of both services."""
            found: dict[str, set[str]] = {}
            for task_id in submitted:
                tags = json.dumps({"ai_agents.task_id": task_id})
                traces = _jaeger(jaeger.url, "/api/traces", service=agent_service, tags=tags, lookback="1h")
                for t in traces:
                    if {p["serviceName"] for p in t.get("processes", {}).values()} >= {"orchestrator", agent_service}:
                        found[task_id] = {span["operationName"] for span in t.get("spans", [])}
            return found

        traces = eventually(
            task_traces,
            lambda found: len(found) == TASKS,
            timeout_sec=120,
            interval_sec=5,
            expectation=f"each of the {TASKS} tasks in one trace with spans of both {agent_service} and orchestrator",
        )
    for task_id, operations in traces.items():
        # A plain result is acknowledged in a CompleteTasks call, recorded in the task's trace as `complete task`.
        assert {"POST /v1/tasks", "lease task", "run task", "complete task", "store complete"} <= operations, (
            f"task {task_id}: the trace misses a step of the task's path: {sorted(operations)}"
        )
    e2e_note(f"{len(traces)} tasks, each one trace of both services; services: {', '.join(sorted(services))}")
