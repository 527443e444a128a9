"""Tracing: with `tracing.otlpEndpoint` set, the orchestrator's and the agents' spans reach Jaeger, joined in one
trace where an agent calls the orchestrator (the client propagates the trace context over gRPC)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from _api import OrchestratorApi
from _cluster import JAEGER_SELECTOR
from _kube import forward
from _waits import eventually

pytestmark = [pytest.mark.cluster]
release_overrides = {"tracing": True}
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

        def joined() -> list[str]:
            """IDs of the agent's traces that also hold orchestrator spans."""
            traces = _jaeger(jaeger.url, "/api/traces", service=agent_service, limit=100, lookback="1h")
            return [
                t["traceID"]
                for t in traces
                if {p["serviceName"] for p in t.get("processes", {}).values()} >= {"orchestrator", agent_service}
            ]

        traces = eventually(
            joined,
            bool,
            timeout_sec=120,
            interval_sec=5,
            expectation=f"a trace with spans of both {agent_service} and orchestrator",
        )
    e2e_note(f"{len(traces)} joined traces; services: {', '.join(sorted(services))}")
