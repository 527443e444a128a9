"""Autoscaling: on keda-scalers' own timing defaults a queue burst raises an agent type's replicas within 30 s,
never past its maximum, and they return to the minimum only after the scale-down stabilization window; on the
e2e values' fast timings, every other signal of the rollout scales its type on its own, and KEDA's postgresql
trigger scales a type out and back.

Every time budget comes from the rendered ScaledObject (pollingInterval, cooldownPeriod, HPA behaviour,
trigger windows) and the ServiceMonitor's scrape interval: see _scaling.budget_from.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import yaml
from _cluster import CHARTS_DIR
from _helm import by_kind
from _prom import prometheus
from _scaling import HPA_SYNC_SECONDS, budget_from, scrape_interval_of, trigger_target
from waits import eventually

# It floods queues: never against a shared release.
pytestmark = [pytest.mark.cluster, pytest.mark.needs_keda, pytest.mark.timeout(3600), pytest.mark.destructive]

# The charts' own defaults, read from their values files: what a user gets without e2e's fast timings.
KEDA_DEFAULTS = yaml.safe_load((CHARTS_DIR / "keda-scalers" / "values.yaml").read_text())
SCRAPE_DEFAULTS = yaml.safe_load((CHARTS_DIR / "observability" / "values.yaml").read_text())["serviceMonitor"]
FINAL = ("succeeded", "failed", "cancelled", "dead_letter")


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


def _budget(release: Any, obj: dict[str, Any]) -> Any:
    return budget_from(obj, scrape_interval=scrape_interval_of(by_kind(release.objects, "ServiceMonitor")))


def _open_tasks(api: Any, task_ids: list[str]) -> int:
    return sum(api.task(t)["state"] not in FINAL for t in task_ids)


def _scale_cycle(
    release: Any,
    agent_type: str,
    submit: Any,
    e2e_note: Any,
    *,
    trigger: str,
    tail_trigger: str | None,
) -> None:
    obj = _scaled_object(release, agent_type)
    budget = _budget(release, obj)
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
            timeout_sec=budget.scale_up_sec(trigger),
            expectation=f"{deployment} above min {budget.min_replicas} within {budget.scale_up_sec(trigger):.0f}s "
            f"(pollingInterval {budget.polling_interval:.0f}s, {trigger} lag {budget.signal_lag_sec[trigger]:.0f}s)",
        )
        rise_sec = time.monotonic() - started
        with release.orchestrator_api() as api:
            eventually(
                lambda: _open_tasks(api, task_ids),
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
        f"(budget {budget.scale_up_sec(trigger):.0f}s), back to {budget.min_replicas} in {back_sec:.0f}s "
        f"(budget {tail:.0f}s)"
    )


def test_chart_defaults_answer_a_queue_burst_within_30s_and_scale_down_after_the_window(
    release_factory, e2e_note
) -> None:
    """keda-scalers' own timing defaults (polling, cool-down, HPA behaviour, the queue read from the orchestrator)
    and the observability chart's scrape interval; only coding's replica range is cut (1-2) to fit one node.

    Measured from the first submission of the burst: the HPA's decision (spec.replicas above min), and a new
    Ready pod. Then, from the moment the queue is back under one replica's share, the return to min, which must
    wait out the scale-down stabilization window and not much longer."""
    release = release_factory(
        extra_set=("kedaScalers.agents.coding.minReplicaCount=1", "kedaScalers.agents.coding.maxReplicaCount=2"),
        extra_json=(
            ("kedaScalers.scaling", KEDA_DEFAULTS["scaling"]),
            ("kedaScalers.triggers.queueDepth", KEDA_DEFAULTS["triggers"]["queueDepth"]),
            ("observability.serviceMonitor.interval", SCRAPE_DEFAULTS["interval"]),
            ("observability.serviceMonitor.scrapeTimeout", SCRAPE_DEFAULTS["scrapeTimeout"]),
        ),
    )
    obj = _scaled_object(release, "coding")
    assert obj["spec"]["pollingInterval"] == KEDA_DEFAULTS["scaling"]["pollingInterval"], "not the defaults"
    queue = _trigger(obj, "queue-depth")
    assert queue["type"] == "metrics-api", "by default KEDA asks the orchestrator for the queue"
    budget = _budget(release, obj)
    per_replica = trigger_target(queue)
    stabilization = float(KEDA_DEFAULTS["scaling"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"])
    deployment = release.deployment("coding")

    def replicas() -> tuple[int, int]:
        return release.kube.deployment_replicas(release.namespace, deployment)

    assert replicas()[0] == budget.min_replicas == 1

    with ReplicaSampler(release, deployment, interval_sec=1.0) as sampler, release.orchestrator_api() as api:
        started = time.monotonic()
        # Enough backlog to ask for more than max; slow tasks keep it while the HPA reacts.
        task_ids = [
            api.submit("coding", {"simulate_latency_ms": 4000})["task_id"]
            for _ in range(int(per_replica * budget.max_replicas * 3))
        ]
        eventually(
            lambda: replicas()[0],
            lambda r: r > budget.min_replicas,
            timeout_sec=30,
            interval_sec=1,
            expectation=f"{deployment}: the HPA asks for more than {budget.min_replicas} within 30s of the burst",
        )
        decided = time.monotonic() - started
        eventually(
            lambda: replicas()[1],
            lambda ready: ready > budget.min_replicas,
            timeout_sec=budget.scale_up_sec("queue-depth"),
            interval_sec=1,
            expectation=f"{deployment}: a new Ready pod",
        )
        ready = time.monotonic() - started
        eventually(
            lambda: api.queue("coding")["queued"],
            lambda queued: queued <= per_replica * budget.min_replicas,
            timeout_sec=300,
            interval_sec=1,
            expectation="the coding queue back under one replica's share",
        )
        below = time.monotonic()
        eventually(
            lambda: replicas()[0],
            lambda r: r == budget.min_replicas,
            timeout_sec=budget.scale_down_sec("queue-depth"),
            interval_sec=2,
            expectation=f"{deployment} back to {budget.min_replicas} after the {stabilization:.0f}s window",
        )
        down = time.monotonic() - below
        assert _open_tasks(api, task_ids) == 0, "the burst was not drained"
    assert sampler.peak == budget.max_replicas, f"peak {sampler.peak}: the burst asked for more than max"
    # The HPA may have last seen the deep queue one sync before we did; it must not scale down before the window.
    assert down >= stabilization - HPA_SYNC_SECONDS, f"back to min {down:.0f}s after the queue fell: no stabilization"
    e2e_note(
        f"chart defaults, coding 1-2: queue burst -> HPA decision {decided:.0f}s, new Ready pod {ready:.0f}s "
        f"(promise 30s); queue under one replica's share -> back to 1 in {down:.0f}s "
        f"(stabilization {stabilization:.0f}s)"
    )


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
    per_replica = trigger_target(_trigger(obj, "postgresql-queue-depth"))
    count = int(per_replica * int(obj["spec"]["maxReplicaCount"]) * 2)

    def submit() -> list[str]:
        with release.orchestrator_api() as api:
            return [api.submit("documentation", {"simulate_latency_ms": 4000})["task_id"] for _ in range(count)]

    _scale_cycle(
        release,
        "documentation",
        submit,
        e2e_note,
        trigger="postgresql-queue-depth",
        tail_trigger="postgresql-queue-depth",
    )


# --- every other signal drives a scale on its own ----------------------------------------------------------

# type -> (trigger that must drive it, payload of its tasks, how many): few tasks whose results carry the signal,
# except documentation, whose signal is the submission rate (paced below) and CPU, burnt by discovery's tasks.
SIGNALS: dict[str, tuple[str, dict[str, Any], int]] = {
    "testing": ("test-duration", {"simulate_latency_ms": 50, "test_duration_seconds": 300}, 4),
    "compliance": ("compliance-violations", {"simulate_latency_ms": 50, "compliance_violations": 40}, 4),
    "security": ("vulnerabilities", {"simulate_latency_ms": 50, "vulnerabilities_found": 40}, 4),
    "discovery": ("cpu", {"simulate_latency_ms": 0, "simulate_cpu_ms": 100_000}, 2),
    # Agents hold these (a minute each) instead of working through them: no CPU, only the submissions count.
    "documentation": ("task-submission-rate", {"simulate_latency_ms": 60_000}, 0),
}
SUBMISSIONS_PER_SEC = 20.0
SUBMISSION_SECONDS = 150.0


def _metric_body(metric: dict[str, Any]) -> dict[str, Any]:
    """The part of an HPA metric (spec or status) that its type names: `resource` or `external`."""
    return metric["resource" if metric["type"] == "Resource" else "external"] or {}


def _metric_key(metric: dict[str, Any]) -> str:
    """A metric of an HPA by identity: the resource's name, or KEDA's external metric name (`s<i>-...`)."""
    body = _metric_body(metric)
    return body["name"] if metric["type"] == "Resource" else body["metric"]["name"]


def _load_ratios(hpa: dict[str, Any], triggers: list[dict[str, Any]]) -> dict[str, float]:
    """Per trigger, how far its metric stands above its target on the HPA's last sync (> 1: it asks for more
    replicas than the HPA has). KEDA names trigger i's external metric `s<i>-...`."""
    from kubernetes.utils import parse_quantity

    targets = {_metric_key(m): _metric_body(m)["target"] for m in hpa["spec"]["metrics"]}
    ratios: dict[str, float] = {}
    for status in hpa["status"].get("currentMetrics") or []:
        if status.get("type") not in ("Resource", "External"):
            continue  # a metric the HPA could not read on this sync has no type
        key = _metric_key(status)
        current = _metric_body(status).get("current") or {}
        target = targets[key]
        if not ({"averageUtilization", "averageValue", "value"} & {k for k, v in current.items() if v is not None}):
            continue  # no reading yet on this sync
        if "averageUtilization" in target:
            ratio = current["averageUtilization"] / target["averageUtilization"]
        elif "averageValue" in target:
            ratio = float(parse_quantity(current["averageValue"]) / parse_quantity(target["averageValue"]))
        else:
            ratio = float(parse_quantity(current["value"]) / parse_quantity(target["value"]))
        name = key if status["type"] == "Resource" else triggers[int(key.split("-", 1)[0][1:])]["name"]
        ratios[name] = ratio
    return ratios


def _hpa(release: Any, obj: dict[str, Any]) -> dict[str, Any]:
    hpa = release.kube.autoscaling.read_namespaced_horizontal_pod_autoscaler(
        f"keda-hpa-{obj['metadata']['name']}", release.namespace
    )
    return release.kube.api_client.sanitize_for_serialization(hpa)


def _wait_until_scraped(release: Any) -> None:
    """increase() and rate() count only what happens after a series' first sample: before the first task, wait
    until Prometheus holds two samples of every orchestrator replica's counters (a new target is found late)."""
    orchestrators = len(release.kube.ready_pods(release.namespace, release.selector("orchestrator")))
    expr = (
        f'count_over_time(ai_agents_tasks_submitted_total{{namespace="{release.namespace}",agent_type="testing"}}[5m])'
    )
    with prometheus(release.kube, release.cfg.monitoring_namespace) as prom:
        eventually(
            lambda: [float(r["value"][1]) for r in prom.query(expr)],
            lambda counts: len(counts) == orchestrators and min(counts) >= 2,
            timeout_sec=300,
            interval_sec=3,
            expectation=f"two scrapes of each of the {orchestrators} orchestrators",
        )


def _pace_submissions(release: Any, stop: threading.Event, sent: list[float]) -> None:
    """Documentation tasks at SUBMISSIONS_PER_SEC, for at most SUBMISSION_SECONDS, until `stop`."""
    _trigger_name, payload, _count = SIGNALS["documentation"]
    with release.orchestrator_api() as api:
        started = time.monotonic()
        for n in range(int(SUBMISSIONS_PER_SEC * SUBMISSION_SECONDS)):
            if stop.is_set():
                return
            api.submit("documentation", payload)
            sent.append(time.monotonic())
            stop.wait(max(0.0, started + (n + 1) / SUBMISSIONS_PER_SEC - time.monotonic()))


def test_every_other_signal_scales_its_type_alone(release_factory, e2e_note) -> None:
    """Submission rate, CPU, p95 test duration, vulnerabilities and compliance violations, each scaling its type at
    once, with the queue trigger set out of reach. On the HPA's own sync that first asks for more replicas, the
    signal's metric stands above its target and every other metric of that type at or below it: that signal alone
    drove it. Scaling back down is the HPA behaviour the chart-defaults test measures."""
    types = tuple(SIGNALS)
    release = release_factory(
        extra_set=(
            "kedaScalers.triggers.cpu.enabled=true",
            *(f"kedaScalers.agents.{t}.maxReplicaCount=3" for t in types),
        ),
        extra_set_string=(
            "kedaScalers.triggers.queueDepth.targetPerReplica=100000",
            # Requests large enough that an idle agent sits far below the CPU target (utilization is of requests).
            "agentDefaults.resources.requests.cpu=50m",
        ),
    )
    objs = {t: _scaled_object(release, t) for t in types}
    for agent_type, (trigger, _payload, _count) in SIGNALS.items():
        _trigger(objs[agent_type], trigger)
    budgets = {t: _budget(release, objs[t]) for t in types}
    _wait_until_scraped(release)
    rises: dict[str, tuple[float, dict[str, float]]] = {}
    stop, sent = threading.Event(), []
    pacer = threading.Thread(target=_pace_submissions, args=(release, stop, sent), daemon=True)
    with release.orchestrator_api() as api:
        started = time.monotonic()
        for agent_type, (_trigger_name, payload, count) in SIGNALS.items():
            for _ in range(count):
                api.submit(agent_type, payload)
        pacer.start()
        try:
            deadline = started + max(b.scale_up_sec(SIGNALS[t][0]) for t, b in budgets.items()) + 60
            while len(rises) < len(types) and time.monotonic() < deadline:
                for agent_type in set(types) - set(rises):
                    hpa = _hpa(release, objs[agent_type])
                    if (hpa["status"].get("desiredReplicas") or 0) > budgets[agent_type].min_replicas:
                        rises[agent_type] = (
                            time.monotonic() - started,
                            _load_ratios(hpa, objs[agent_type]["spec"]["triggers"]),
                        )
                if "documentation" in rises:
                    stop.set()
                time.sleep(1)
        finally:
            stop.set()
            pacer.join(timeout=30)
    missing = set(types) - set(rises)
    assert not missing, f"never scaled out: {sorted(missing)}; rose: {rises}"
    for agent_type, (seconds, ratios) in rises.items():
        signal = SIGNALS[agent_type][0]
        assert ratios.get(signal, 0) > 1.0, f"{agent_type} rose at {seconds:.0f}s without its {signal}: {ratios}"
        # The HPA ignores ratios within 10% of 1.
        others = {name: r for name, r in ratios.items() if name != signal and r > 1.1}
        assert not others, f"{agent_type} rose at {seconds:.0f}s on {sorted(others)} too: {ratios}"
    rate = len(sent) / (sent[-1] - sent[0]) if len(sent) > 1 else 0.0
    e2e_note(
        "signals alone: "
        + "; ".join(
            f"{t} by {SIGNALS[t][0]} in {s:.0f}s ({r[SIGNALS[t][0]]:.1f}x target)"
            for t, (s, r) in sorted(rises.items())
        )
        + f"; documentation submissions paced at {rate:.1f}/s"
    )
