"""The `simulate` handler: configurable latency and failure rate, type-shaped results (load and chaos work)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from ai_agents.config import AgentLive
from ai_agents.handlers._base import HandlerError, TaskContext


class SimulateHandler:
    """Sleeps `latency_ms` (payload `simulate_latency_ms` overrides) and fails with `failure_rate`.

    Results carry the fields that feed the type-specific scaling signals, so load tests exercise them:
    testing -> test_duration_seconds, security -> vulnerabilities_found, compliance -> compliance_violations.
    A payload may fix those values (e.g. {"vulnerabilities_found": 3}) for deterministic tests.
    """

    def __init__(self, *, latency_ms: float, failure_rate: float, rng: random.Random | None = None) -> None:
        self._latency_ms = latency_ms
        self._failure_rate = failure_rate
        self._rng = rng or random.Random()

    def reconfigure(self, live: AgentLive) -> None:
        self._latency_ms = live.simulate_latency_ms
        self._failure_rate = live.simulate_failure_rate

    async def run(self, task: TaskContext) -> dict[str, Any]:
        latency_ms = float(task.payload.get("simulate_latency_ms", self._latency_ms))
        failure_rate = float(task.payload.get("simulate_failure_rate", self._failure_rate))
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
        if self._rng.random() < failure_rate:
            raise HandlerError("simulated failure", retryable=bool(task.payload.get("simulate_retryable", True)))
        result: dict[str, Any] = {"handler": "simulate", "latency_ms": latency_ms, "attempt": task.attempt}
        if task.agent_type == "testing":
            result["test_duration_seconds"] = float(
                task.payload.get("test_duration_seconds", round(self._rng.uniform(0.5, 30.0), 3))
            )
            result["tests_run"] = int(task.payload.get("tests_run", self._rng.randint(1, 500)))
        elif task.agent_type == "security":
            result["vulnerabilities_found"] = int(task.payload.get("vulnerabilities_found", self._rng.randint(0, 3)))
        elif task.agent_type == "compliance":
            result["compliance_violations"] = int(task.payload.get("compliance_violations", self._rng.randint(0, 2)))
        return result

    async def close(self) -> None:
        return None
