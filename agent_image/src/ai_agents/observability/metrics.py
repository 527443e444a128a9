"""Every metric the runtime exports (docs/contracts.md lists them; charts query exactly these names).

Each gauge names how processes serving one orchestrator together combine it (`multiprocess_mode`, used only then:
orchestrator/processes.py); counters and histograms add up.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from ai_agents import __version__
from ai_agents.domain import AGENT_TYPES

# prometheus_client's multiprocess mode is on in a process whose environment names this directory.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Task run times span milliseconds (simulate) to minutes (LLM calls).
_TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# API latency buckets dense around the 100 ms SLO.
_RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)


def new_registry() -> CollectorRegistry:
    """A per-process registry with the standard process metrics (no module-level global state)."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def exposition_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """What /metrics serves: the process's own registry; or, when processes share the metrics directory that
    prometheus_client's multiprocess mode names in the environment, every one of their values combined, so any of
    them answers for all (per-process metrics such as process_cpu_seconds are then left out)."""
    if MULTIPROCESS_DIR_ENV not in os.environ:
        return registry
    combined = CollectorRegistry()
    MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    return combined


class CommonMetrics:
    """Metrics every process exports: API servers, gRPC clients, logs, build info."""

    def __init__(self, registry: CollectorRegistry, component: str) -> None:
        self.registry = registry
        self.build_info = Gauge(
            "ai_agents_build_info",
            "Version of the running runtime.",
            ["version", "component"],
            multiprocess_mode="max",
            registry=registry,
        )
        self.build_info.labels(__version__, component).set(1)
        self.grpc_requests = Counter(
            "ai_agents_grpc_requests", "gRPC requests served.", ["method", "code"], registry=registry
        )
        self.grpc_retried = Counter(
            "ai_agents_grpc_retried_requests",
            "gRPC requests that arrived as a retry by gRPC's own retry policy (grpc-previous-rpc-attempts > 0).",
            ["method"],
            registry=registry,
        )
        self.grpc_duration = Histogram(
            "ai_agents_grpc_request_duration_seconds",
            "gRPC request handling time.",
            ["method"],
            buckets=_RPC_BUCKETS,
            registry=registry,
        )
        self.http_requests = Counter(
            "ai_agents_http_requests",
            "HTTP API requests served.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_duration = Histogram(
            "ai_agents_http_request_duration_seconds",
            "HTTP API request handling time.",
            ["route", "method"],
            buckets=_RPC_BUCKETS,
            registry=registry,
        )
        self.client_requests = Counter(
            "ai_agents_client_requests",
            "gRPC calls made by this process, one per call: attempts made by gRPC's own retry policy are not visible "
            "to a Python client (the server counts them: ai_agents_grpc_retried_requests).",
            ["method", "code"],
            registry=registry,
        )
        self.client_retries = Counter(
            "ai_agents_client_retries",
            "Calls this process repeated itself after gRPC's own retries gave up.",
            ["method"],
            registry=registry,
        )
        self.client_pool_channels = Gauge(
            "ai_agents_client_pool_channels",
            "Open channels (each with its own connection to every backend) in this process's pool to a target.",
            ["target"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.client_pool_in_flight = Gauge(
            "ai_agents_client_pool_in_flight",
            "Calls (and open streams) running now on one channel of the pool to a target.",
            ["target", "channel"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.circuit_state = Gauge(
            "ai_agents_circuit_breaker_state",
            "Client circuit breaker: 0 closed, 1 half-open, 2 open.",
            ["target"],
            multiprocess_mode="max",
            registry=registry,
        )
        self.circuit_rejections = Counter(
            "ai_agents_circuit_breaker_rejections",
            "Calls refused locally by an open circuit breaker.",
            ["target"],
            registry=registry,
        )
        self.log_messages = Counter(
            "ai_agents_log_messages", "Log records emitted, by level.", ["level"], registry=registry
        )
        for level in ("debug", "info", "warning", "error", "critical"):
            self.log_messages.labels(level)
        self.config_reloads = Counter(
            "ai_agents_config_reloads",
            "Live configuration files read since start, by result: applied, or refused (the settings in force stay).",
            ["result"],
            registry=registry,
        )
        for result in ("applied", "refused"):
            self.config_reloads.labels(result)
        self.config_generation = Gauge(
            "ai_agents_config_generation",
            "Live configuration files applied since the process started (0: the start values from the environment).",
            multiprocess_mode="max",
            registry=registry,
        )


class OrchestratorMetrics(CommonMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry, "orchestrator")
        self.queue_depth = Gauge(
            "ai_agents_queue_depth",
            "Queued tasks per agent type (same value on every replica: use max).",
            ["agent_type"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.tasks_leased = Gauge(
            "ai_agents_tasks_leased",
            "Leased tasks per agent type (same value on every replica: use max).",
            ["agent_type"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.tasks_submitted = Counter(
            "ai_agents_tasks_submitted",
            "Tasks accepted (new, not idempotent repeats).",
            ["agent_type"],
            registry=registry,
        )
        self.tasks_completed = Counter(
            "ai_agents_tasks_completed",
            "Tasks that reached a final state.",
            ["agent_type", "outcome"],
            registry=registry,
        )
        self.task_duration = Histogram(
            "ai_agents_task_duration_seconds",
            "Time from lease to completion.",
            ["agent_type"],
            buckets=_TASK_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "ai_agents_task_queue_wait_seconds",
            "Time from submission to first lease.",
            ["agent_type"],
            buckets=_TASK_BUCKETS,
            registry=registry,
        )
        self.lease_expiries = Counter(
            "ai_agents_lease_expiries",
            "Leases that ran out without an outcome.",
            ["agent_type"],
            registry=registry,
        )
        self.redeliveries = Counter(
            "ai_agents_task_redeliveries",
            "Tasks returned to the queue for another attempt.",
            ["agent_type"],
            registry=registry,
        )
        self.agents = Gauge(
            "ai_agents_agents",
            "Registered agents by type and state (same value on every replica: use max).",
            ["agent_type", "state"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.test_duration = Histogram(
            "ai_agents_test_duration_seconds",
            "Test run duration reported by testing tasks.",
            ["agent_type"],
            buckets=_TASK_BUCKETS,
            registry=registry,
        )
        self.vulnerabilities = Counter(
            "ai_agents_vulnerabilities_found",
            "Vulnerabilities reported by security tasks.",
            ["agent_type"],
            registry=registry,
        )
        self.compliance_violations = Counter(
            "ai_agents_compliance_violations",
            "Violations reported by compliance tasks.",
            ["agent_type"],
            registry=registry,
        )
        self.initialize(AGENT_TYPES)

    def initialize(self, agent_types: tuple[str, ...]) -> None:
        """Create every per-type series at zero so rate() and increase() see the first event."""
        for agent_type in agent_types:
            for metric in (
                self.tasks_submitted,
                self.lease_expiries,
                self.redeliveries,
                self.vulnerabilities,
                self.compliance_violations,
                self.test_duration,
            ):
                metric.labels(agent_type)
            for outcome in ("succeeded", "failed", "dead_letter", "cancelled"):
                self.tasks_completed.labels(agent_type, outcome)


class AgentMetrics(CommonMetrics):
    def __init__(self, registry: CollectorRegistry, agent_type: str) -> None:
        super().__init__(registry, f"agent-{agent_type}")
        self.tasks_running = Gauge(
            "ai_agents_agent_tasks_running",
            "Tasks this agent is running.",
            ["agent_type"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.tasks = Counter(
            "ai_agents_agent_tasks",
            "Tasks this agent finished, by outcome.",
            ["agent_type", "outcome"],
            registry=registry,
        )
        self.handler_duration = Histogram(
            "ai_agents_agent_handler_duration_seconds",
            "Handler run time.",
            ["agent_type"],
            buckets=_TASK_BUCKETS,
            registry=registry,
        )
