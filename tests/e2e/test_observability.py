"""Observability: Prometheus scrapes every orchestrator and agent pod, and every dashboard panel, alert rule
and ScaledObject query of the rendered release returns data while load runs."""

from __future__ import annotations

import pytest
from _load import LoadProfile, LoadRun
from _prom import prometheus
from _queries import chart_queries, data_probes
from waits import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.needs_prometheus]
PROFILE = LoadProfile(users=2, rate_per_user=5.0, run_time_sec=420, max_tasks=5000)


@pytest.fixture(scope="module", autouse=True)
def _needs(need) -> None:
    need("prometheus")


def test_every_pod_is_a_target_and_up(release, e2e_note) -> None:
    ns = release.namespace
    expected = {p.metadata.name for p in release.kube.ready_pods(ns, release.selector("orchestrator"))}
    expected |= {p.metadata.name for p in release.kube.ready_pods(ns, release.selector("agent"))}
    with prometheus(release.kube, release.cfg.monitoring_namespace) as prom:

        def read() -> dict[str, str]:
            return {
                t["labels"].get("pod", ""): t["health"]
                for t in prom.active_targets()
                if t["labels"].get("namespace") == ns
            }

        targets = eventually(
            read,
            lambda t: all(t.get(p) == "up" for p in expected),
            timeout_sec=300,
            interval_sec=10,
            expectation=f"a healthy scrape target for each of {len(expected)} pods",
        )
    e2e_note(f"{len(targets)} targets up in {ns}")


def test_chart_queries_return_data_under_load(release, tmp_path, prerequisites, e2e_note) -> None:
    queries = chart_queries(release.objects, namespace=release.namespace)
    assert queries, "the release renders no dashboard, rule or ScaledObject query"
    with release.orchestrator_forward() as forward, prometheus(release.kube, release.cfg.monitoring_namespace) as prom:
        # kube-state-metrics comes with kube-prometheus-stack; a cluster without it (the offline one) cannot
        # answer the replica panels, and says so in the note instead of passing them.
        ksm_missing = not prom.query("count(kube_deployment_status_replicas)")
        not_applicable = {
            "Istio": [q for q in queries if q.needs_istio and prerequisites.istio_missing],
            "Envoy (a waypoint)": [q for q in queries if q.needs_envoy and prerequisites.envoy_missing],
            "mesh fault injection": [
                q for q in queries if q.needs_fault_injection and not release.options.mesh_fault_injection
            ],
            "kube-state-metrics": [q for q in queries if q.needs_kube_state_metrics and ksm_missing],
        }
        applicable = [q for q in queries if not any(q in group for group in not_applicable.values())]
        run = LoadRun(forward.url, PROFILE, tmp_path, token=release.token(), run_id=f"obs-{release.namespace}").start()
        try:

            def empty() -> list[str]:
                return [
                    f"{q.source}: {probe}" for q in applicable for probe in data_probes(q.expr) if not prom.query(probe)
                ]

            # Windows up to 5m in rate() plus rule evaluation and scrape intervals: budget the load's run time.
            missing = eventually(
                empty,
                lambda m: not m,
                timeout_sec=PROFILE.run_time_sec - 20,
                interval_sec=20,
                expectation="every chart query returns data",
            )
        finally:
            run.stop()
    assert not missing
    absent = "; ".join(f"{len(group)} need {name}, absent" for name, group in not_applicable.items() if group)
    e2e_note(f"{len(applicable)} queries return data" + (f" (not checked: {absent})" if absent else ""))
