"""Autoscaling: KEDA scales an agent type out when its queue floods, never past its maximum, back to its
minimum once the signal is gone; then the same for security's vulnerability-count signal.

Every time budget comes from the rendered ScaledObject (pollingInterval, cooldownPeriod, HPA behaviour,
trigger windows) and the ServiceMonitor's scrape interval: see _scaling.budget_from.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from _helm import by_kind
from _prom import prometheus
from _scaling import budget_from, scrape_interval_of
from waits import eventually

# It floods queues: never against a shared release.
pytestmark = [pytest.mark.cluster, pytest.mark.needs_keda, pytest.mark.timeout(3600), pytest.mark.destructive]


@pytest.fixture(scope="module", autouse=True)
def _needs(need) -> None:
    need("keda", "prometheus")


class ReplicaSampler:
    """Samples a Deployment's spec.replicas in the background for the whole test ("never above max")."""

    def __init__(self, release: Any, deployment: str, interval_sec: float = 2.0) -> None:
        self._release, self._deployment, self._interval = release, deployment, interval_sec
        self.samples: list[tuple[float, int]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                spec, _ready = self._release.kube.deployment_replicas(self._release.namespace, self._deployment)
                self.samples.append((time.monotonic(), spec))
            except Exception as exc:  # a failed read is not a sample
                self.errors.append(str(exc))
            self._stop.wait(self._interval)

    def __enter__(self) -> ReplicaSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def peak(self) -> int:
        return max((s for _t, s in self.samples), default=0)


def _scaled_object(release: Any, agent_type: str) -> dict[str, Any]:
    for obj in by_kind(release.objects, "ScaledObject"):
        if obj["spec"]["scaleTargetRef"]["name"] == release.deployment(agent_type):
            return obj
    pytest.fail(f"the release renders no ScaledObject for {release.deployment(agent_type)}")


def _replicas(release: Any, agent_type: str) -> int:
    return release.kube.deployment_replicas(release.namespace, release.deployment(agent_type))[0]


def _trigger(obj: dict[str, Any], name: str) -> dict[str, Any]:
    for trigger in obj["spec"]["triggers"]:
        if trigger.get("name") == name:
            return trigger
    pytest.fail(f"ScaledObject {obj['metadata']['name']} has no trigger {name!r}")


def _scale_cycle(
    release: Any, agent_type: str, submit: Any, e2e_note: Any, *, tail_trigger: str | None, on_risen: Any = None
) -> None:
    obj = _scaled_object(release, agent_type)
    budget = budget_from(obj, scrape_interval=scrape_interval_of(by_kind(release.objects, "ServiceMonitor")))
    deployment = release.deployment(agent_type)
    eventually(
        lambda: _replicas(release, agent_type),
        lambda r: r == budget.min_replicas,
        timeout_sec=budget.scale_down_sec("") + 60,
        expectation=f"{deployment} at its minimum before the flood",
    )
    with ReplicaSampler(release, deployment) as sampler:
        started = time.monotonic()
        task_ids = submit()
        eventually(
            lambda: _replicas(release, agent_type),
            lambda r: r > budget.min_replicas,
            timeout_sec=budget.scale_up_sec,
            expectation=f"{deployment} above min {budget.min_replicas} within {budget.scale_up_sec:.0f}s "
            f"(pollingInterval {budget.polling_interval:.0f}s, scrape {budget.scrape_interval:.0f}s)",
        )
        rise_sec = time.monotonic() - started
        if on_risen is not None:
            on_risen()
        with release.orchestrator_api() as api:
            eventually(
                lambda: sum(
                    api.task(t)["state"] not in ("succeeded", "failed", "cancelled", "dead_letter") for t in task_ids
                ),
                lambda open_: open_ == 0,
                timeout_sec=900,
                interval_sec=5,
                expectation=f"the {len(task_ids)} {agent_type} tasks drained",
            )
        drained = time.monotonic()
        tail = (
            budget.scale_down_sec(tail_trigger)
            if tail_trigger
            else max(budget.scale_down_sec(n) for n in budget.signal_tail_sec)
        )
        eventually(
            lambda: _replicas(release, agent_type),
            lambda r: r == budget.min_replicas,
            timeout_sec=tail,
            interval_sec=5,
            expectation=f"{deployment} back to min {budget.min_replicas} within {tail:.0f}s "
            f"of the drain (cooldown {budget.cooldown:.0f}s)",
        )
        back_sec = time.monotonic() - drained
    assert sampler.samples, f"no replica sample was read: {sampler.errors[-3:]}"
    assert sampler.peak <= budget.max_replicas, f"{deployment} reached {sampler.peak} > max {budget.max_replicas}"
    e2e_note(
        f"{agent_type}: {budget.min_replicas}->{sampler.peak} (max {budget.max_replicas}) in {rise_sec:.0f}s "
        f"(budget {budget.scale_up_sec:.0f}s), back to {budget.min_replicas} in {back_sec:.0f}s "
        f"(budget {tail:.0f}s)"
    )


def test_queue_flood_scales_coding_out_and_back(release, e2e_note) -> None:
    obj = _scaled_object(release, "coding")
    per_replica = float(_trigger(obj, "queue-depth")["metadata"]["threshold"])
    max_replicas = int(obj["spec"]["maxReplicaCount"])
    count = int(per_replica * max_replicas * 2)  # enough backlog to ask for more than max

    def submit() -> list[str]:
        with release.orchestrator_api() as api:
            # Slow tasks keep the queue deep while KEDA reacts.
            return [api.submit("coding", {"simulate_latency_ms": 4000})["task_id"] for _ in range(count)]

    _scale_cycle(release, "coding", submit, e2e_note, tail_trigger=None)


def test_vulnerability_signal_scales_security(release, e2e_note) -> None:
    """Few fast tasks (queue depth stays under its threshold) that report many vulnerabilities."""
    obj = _scaled_object(release, "security")
    vuln = _trigger(obj, "vulnerabilities")
    queue = _trigger(obj, "queue-depth")
    max_replicas = int(obj["spec"]["maxReplicaCount"])
    per_task = int(float(vuln["metadata"]["threshold"]) * max_replicas)
    tasks = 4

    def submit() -> list[str]:
        with release.orchestrator_api() as api:
            return [
                api.submit("security", {"simulate_latency_ms": 50, "vulnerabilities_found": per_task})["task_id"]
                for _ in range(tasks)
            ]

    def what_drove_it() -> None:
        # While scaled out: the vulnerability query sees the reported count, the queue is under one replica's share.
        with prometheus(release.kube, release.cfg.monitoring_namespace) as prom:
            vulns = prom.scalar(vuln["metadata"]["query"])
            depth = prom.scalar(queue["metadata"]["query"])
        assert vulns is not None and vulns >= per_task, f"vulnerability query {vuln['metadata']['query']} read {vulns}"
        assert (depth or 0) < float(queue["metadata"]["threshold"]), f"queue depth {depth} would explain the scale-out"

    _scale_cycle(release, "security", submit, e2e_note, tail_trigger="vulnerabilities", on_risen=what_drove_it)


def test_postgresql_trigger_scales_by_itself(release_factory, prerequisites, e2e_note) -> None:
    """KEDA's postgresql trigger reads the queue table from KEDA's own namespace. The Prometheus triggers are set
    to ask for more tasks per replica than any flood, so only the postgresql one can scale the type out; with the
    mesh on, KEDA's connection passes STRICT mTLS and the policy that admits the KEDA operator's identity."""
    sets = ["kedaScalers.postgresql.enabled=true"]
    if prerequisites.istio_missing is None:
        sets.append("mesh.keda.postgresqlTrigger=true")
    thresholds = (
        "kedaScalers.triggers.queueDepth.targetPerReplica=100000",
        "kedaScalers.triggers.taskSubmissionRate.targetPerReplica=100000",
    )
    release = release_factory(extra_set=tuple(sets), extra_set_string=thresholds)
    obj = _scaled_object(release, "documentation")
    per_replica = float(_trigger(obj, "postgresql-queue-depth")["metadata"]["targetQueryValue"])
    count = int(per_replica * int(obj["spec"]["maxReplicaCount"]) * 2)

    def submit() -> list[str]:
        with release.orchestrator_api() as api:
            return [api.submit("documentation", {"simulate_latency_ms": 4000})["task_id"] for _ in range(count)]

    _scale_cycle(release, "documentation", submit, e2e_note, tail_trigger="postgresql-queue-depth")
