"""Alerts that fire, and resolve: each alert group's condition is induced on the cluster, and Prometheus's own
`ALERTS` series shows the chart's alert go pending, then firing, then away once the condition ends.
First, a healthy idle release must fire no alert.

- ErrorRateHigh, ErrorBudgetBurnFast: the database goes away (its StatefulSet scaled to 0) and requests
  answer 503 / UNAVAILABLE; ended by scaling it back, after which the 5 m window empties of errors (the fast
  burn's 30 m window would hold it for half an hour: its resolution is not awaited).
- DeadLetterTasks: a task fails its only attempt; ended by its window passing.
- QueueBacklogGrowing: tasks for an agent type that has no agents, one every few seconds; ended by cancelling them.
- AgentsStale, CircuitBreakerOpen: an Istio DENY policy cuts the testing agents off the orchestrator (a
  partition; the orchestrators restart so that every agent dials again: ztunnel checks a policy as a connection
  opens); ended by deleting the policy.

Not induced, with the reason: the latency alerts (nothing here slows the servers without failing them; the
mesh's delay injection needs Envoy, which this cluster lacks) and ErrorBudgetBurnSlow (its shortest window
pair is 2 h and 1 d). The release runs the chart's rules with short `for`s and windows, set below; the
expressions are the chart's own. The error alerts need about five minutes to resolve (their 5 m rate window),
so the other groups run while they do.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
from _alerts import RESOLVED, AlertTimeline
from _api import OrchestratorApi
from _helm import by_kind
from _kube import PortForward
from _prom import prometheus

# The chart's rules with `for`s and windows a test can wait out; KEDA off so that replicas stay put.
_RULES = "observability.prometheusRule"
FAST_ALERTS = (
    f"{_RULES}.interval=5s",
    "observability.podMonitor.interval=5s",
    "observability.podMonitor.scrapeTimeout=4s",
    f"{_RULES}.slo.errorRatioFor=20s",
    f"{_RULES}.slo.fastBurnFor=20s",
    f"{_RULES}.queueBacklog.threshold=3",
    f"{_RULES}.queueBacklog.window=1m",
    f"{_RULES}.queueBacklog.for=20s",
    f"{_RULES}.staleAgents.for=20s",
    f"{_RULES}.deadLetter.window=1m",
    f"{_RULES}.circuitBreaker.for=20s",
    # The backlog's agent type: no agents take its tasks.
    "global.agents.discovery.enabled=false",
)
# It takes its release's database away and cuts an agent type off: never against a shared release.
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.needs_prometheus,
    pytest.mark.destructive,
    pytest.mark.release(keda=False, extra_set=FAST_ALERTS),
]
BACKLOG_TYPE = "discovery"
PARTITIONED_TYPE = "testing"

ERROR_ALERTS = ("AIAgentsErrorRateHigh", "AIAgentsErrorBudgetBurnFast")
TASK_ALERTS = ("AIAgentsDeadLetterTasks", "AIAgentsQueueBacklogGrowing")
PARTITION_ALERTS = ("AIAgentsAgentsStale", "AIAgentsCircuitBreakerOpen")
# Alerts without a `for` fire at their first true evaluation, with no pending state to see.
NO_PENDING = {"AIAgentsDeadLetterTasks"}
# Alerts whose resolution the test does not wait for, and why.
NOT_AWAITED = {
    "AIAgentsErrorBudgetBurnFast": "its 6 h and 30 m window pair holds it for about 30 minutes after the errors end"
}
BASELINE_SEC = 20

POLL_SEC = 3.0
MAX_SUBMITS = 150


@pytest.fixture(scope="module", autouse=True)
def _needs(need) -> None:
    need("prometheus")


def _poll_until(
    timeline: AlertTimeline, done: Callable[[], bool], *, timeout_sec: float, expectation: str, each: Callable[[], None]
) -> None:
    """Poll the alerts (and run `each`, the traffic of the phase) until `done()`; bounded by the deadline."""
    deadline = time.monotonic() + timeout_sec
    while True:
        each()
        timeline.poll()
        if done():
            return
        if time.monotonic() > deadline:
            seen = "; ".join(timeline.describe(a) for a in sorted(timeline.seen)) or "no alert of the namespace"
            raise AssertionError(f"timed out after {timeout_sec:.0f}s waiting for {expectation}; seen: {seen}")
        time.sleep(POLL_SEC)


class _Traffic:
    """HTTP submits through one orchestrator pod, bounded in count; failures are expected while the database is
    away and are what the error alerts count."""

    def __init__(self, api: OrchestratorApi) -> None:
        self.api = api
        self.sent = 0
        self.failed = 0
        self.task_ids: list[str] = []

    def submit(self, agent_type: str, payload: dict | None = None, **fields: object) -> None:
        if self.sent >= MAX_SUBMITS:
            return
        self.sent += 1
        try:
            task = self.api.submit(agent_type, payload, attempts=1, **fields)
        except requests.RequestException:
            self.failed += 1
            return
        self.task_ids.append(task["task_id"])


def _scale_statefulset(release, name: str, replicas: int) -> None:
    release.kube.apps.patch_namespaced_stateful_set_scale(name, release.namespace, {"spec": {"replicas": replicas}})


def _restart_deployment(release, name: str) -> None:
    """What `kubectl rollout restart` does: a new template annotation, so every pod is replaced."""
    patch = {"spec": {"template": {"metadata": {"annotations": {"e2e.ai-agents.io/restarted-at": str(time.time())}}}}}
    release.kube.apps.patch_namespaced_deployment(name, release.namespace, patch)


def _deny_policy(release, agent_type: str) -> dict:
    """A DENY AuthorizationPolicy on the orchestrators for the identity of one agent type's pods."""
    deployment = next(
        d for d in by_kind(release.objects, "Deployment") if d["metadata"]["name"] == release.deployment(agent_type)
    )
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": f"e2e-partition-{agent_type}", "namespace": release.namespace},
        "spec": {
            "selector": {
                "matchLabels": {"app.kubernetes.io/instance": release.name, "app.kubernetes.io/name": "orchestrator"}
            },
            "action": "DENY",
            "rules": [{"from": [{"source": {"principals": [f"cluster.local/ns/{release.namespace}/sa/{account}"]}}]}],
        },
    }


def _assert_fired_and_resolved(timeline: AlertTimeline, alert: str, *, since: float) -> None:
    """Pending, then firing, both after `since` (the phase that induced it began); then resolved at the end."""
    states = timeline.states(alert, since=since)
    assert "firing" in states, f"did not fire after {since:.0f}s: {timeline.describe(alert)}"
    if alert not in NO_PENDING:
        assert "pending" in states and states.index("pending") < states.index("firing"), (
            f"fired without going pending first after {since:.0f}s: {timeline.describe(alert)}"
        )
    if alert not in NOT_AWAITED:
        assert states[-1] == RESOLVED, f"did not resolve: {timeline.describe(alert)}"


def _all_fired(timeline: AlertTimeline, alerts: tuple[str, ...], since: float) -> Callable[[], bool]:
    return lambda: all(timeline.reached(a, "firing", since=since) for a in alerts)


def test_each_alert_group_fires_and_resolves(release, prerequisites, e2e_note) -> None:
    ns = release.namespace
    mesh = release.options.mesh
    partition_alerts = PARTITION_ALERTS if mesh else ()
    postgres = next(s["metadata"]["name"] for s in by_kind(release.objects, "StatefulSet"))
    # One orchestrator pod by name: its port-forward keeps working while the database is away and the pod is
    # unready, so the outage's requests reach a server that answers them with errors.
    orchestrator = next(p.metadata.name for p in release.kube.ready_pods(ns, release.selector("orchestrator")))
    custom = release.kube.custom
    policy = _deny_policy(release, PARTITIONED_TYPE)
    phases: dict[str, float] = {}

    with (
        prometheus(release.kube, release.cfg.monitoring_namespace) as prom,
        PortForward(release.kube, ns, lambda: orchestrator, 8080) as forward,
    ):
        timeline = AlertTimeline(prom, ns)
        traffic = _Traffic(OrchestratorApi(forward.url, release.token()))
        partitioned = False
        try:
            # 0. A healthy, idle release fires nothing. (Pending is allowed: the agents' registrations at start-up
            # can hold the gRPC p95 over its objective for a few minutes, less than the latency alerts' `for`.)
            while timeline.now() < BASELINE_SEC:
                timeline.poll()
                time.sleep(POLL_SEC)
            fired = [a for a in sorted(timeline.seen) if timeline.reached(a, "firing")]
            assert not fired, "alerts firing on a healthy release: " + "; ".join(timeline.describe(a) for a in fired)
            baseline = [timeline.describe(a) for a in sorted(timeline.seen)]

            # 1. The database goes away until both error alerts fire.
            phases["outage"] = timeline.now()
            _scale_statefulset(release, postgres, 0)
            _poll_until(
                timeline,
                _all_fired(timeline, ERROR_ALERTS, phases["outage"]),
                timeout_sec=300,
                expectation=f"{', '.join(ERROR_ALERTS)} firing while the database is away",
                each=lambda: traffic.submit("coding"),
            )
            outage_failures = traffic.failed
            _scale_statefulset(release, postgres, 1)
            release.wait_ready(timeout_sec=300)
            # The outage's side effects (agents' breakers to unready orchestrators) end before the next phase.
            _poll_until(
                timeline,
                lambda: not set(timeline.active()) & set(TASK_ALERTS + partition_alerts),
                timeout_sec=180,
                expectation="the task and partition alerts quiet after the database is back",
                each=lambda: None,
            )

            # 2. While the error alerts wait out their window: a dead letter, a growing queue, a partition.
            phases["tasks"] = timeline.now()
            with release.orchestrator_api() as api:
                api.submit("coding", {"simulate_failure_rate": 1}, max_attempts=1)
                backlog = _Traffic(api)
                # The dead letter first: the partition's restart would replace the orchestrator that counts it.
                _poll_until(
                    timeline,
                    _all_fired(timeline, ("AIAgentsDeadLetterTasks",), phases["tasks"]),
                    timeout_sec=180,
                    expectation="the dead-letter alert firing",
                    each=lambda: backlog.submit(BACKLOG_TYPE),
                )
                if mesh:
                    custom.create_namespaced_custom_object(
                        "security.istio.io", "v1", ns, "authorizationpolicies", policy
                    )
                    partitioned = True
                    # The policy is checked as a connection opens, and the agents hold theirs open: restarting
                    # the orchestrators makes every agent dial again, and the testing agents' dials are refused.
                    _restart_deployment(release, f"{release.prefix}-orchestrator")
                _poll_until(
                    timeline,
                    _all_fired(timeline, TASK_ALERTS + partition_alerts, phases["tasks"]),
                    timeout_sec=300,
                    expectation="the dead-letter, backlog" + (" and partition" if mesh else "") + " alerts firing",
                    each=lambda: backlog.submit(BACKLOG_TYPE),
                )

                # 3. Every condition ends; every alert resolves.
                for task_id in backlog.task_ids:
                    api.cancel(task_id)
            if partitioned:
                custom.delete_namespaced_custom_object(
                    "security.istio.io", "v1", ns, "authorizationpolicies", policy["metadata"]["name"]
                )
                partitioned = False
            awaited = [a for a in ERROR_ALERTS + TASK_ALERTS + partition_alerts if a not in NOT_AWAITED]
            _poll_until(
                timeline,
                lambda: all(timeline.states(a)[-1:] == [RESOLVED] for a in awaited),
                timeout_sec=480,
                expectation="every induced alert resolved",
                each=lambda: None,
            )
        finally:
            if partitioned:
                custom.delete_namespaced_custom_object(
                    "security.istio.io", "v1", ns, "authorizationpolicies", policy["metadata"]["name"]
                )
            _scale_statefulset(release, postgres, 1)

    assert outage_failures > 0, "no request failed while the database was away"
    for alert in ERROR_ALERTS:
        _assert_fired_and_resolved(timeline, alert, since=phases["outage"])
    for alert in TASK_ALERTS + partition_alerts:
        _assert_fired_and_resolved(timeline, alert, since=phases["tasks"])
    for alert in ERROR_ALERTS + TASK_ALERTS + partition_alerts:
        e2e_note(
            timeline.describe(alert)
            + (f" (resolution not awaited: {NOT_AWAITED[alert]})" if alert in NOT_AWAITED else "")
        )
    if baseline:
        e2e_note("pending before anything was induced: " + "; ".join(baseline))
    if not mesh:
        e2e_note(
            f"not induced: {', '.join(PARTITION_ALERTS)} "
            f"(the partition is an Istio policy; {prerequisites.istio_missing})"
        )
