"""Resilience: agent pods and one orchestrator pod die under load; nothing acknowledged is lost or completed
twice, errors stay under 1% through client retries; the chaos monkey deletes only what its Role allows."""

from __future__ import annotations

import pytest
from _api import Ledger, OrchestratorApi
from _helm import ReleaseOptions
from _load import LoadProfile, LoadRun
from _prom import prometheus
from waits import consistently, eventually

CHAOS_INTERVAL_SEC = 20
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.destructive,
    pytest.mark.release(chaos_monkey=True, chaos_interval_seconds=CHAOS_INTERVAL_SEC),
]
PROFILE = LoadProfile(users=4, rate_per_user=5.0, run_time_sec=90, max_tasks=2000)


def _check_ledger(api: OrchestratorApi, acknowledged: dict[str, str], timeout_sec: float) -> list[dict]:
    ledger = Ledger(acknowledged)
    ids = set(acknowledged.values())

    def read() -> tuple[dict[str, list[str]], list[dict]]:
        tasks = api.list_tasks()
        return ledger.check(tasks), [t for t in tasks if t["task_id"] in ids]

    _problems, tasks = eventually(
        read,
        lambda r: not any(r[0].values()),
        timeout_sec=timeout_sec,
        interval_sec=5,
        expectation=f"all {len(acknowledged)} acknowledged tasks present once and final",
        failed=lambda r: (
            f"lost/duplicated: {r[0]['lost'][:5]} {r[0]['duplicated'][:5]} {r[0]['id_mismatch'][:5]}"
            if r[0]["lost"] or r[0]["duplicated"] or r[0]["id_mismatch"]
            else None
        ),
    )
    # Completed once: the completion that stuck came from the task's latest lease (a stale fencing token
    # must not complete it), and a task never runs more attempts than it allows.
    twice = [
        t["task_id"]
        for t in tasks
        if t["state"] == "succeeded"
        and isinstance(t.get("result"), dict)
        and "attempt" in t["result"]
        and t["result"]["attempt"] != t["attempts"]
    ]
    over = [t["task_id"] for t in tasks if t["attempts"] > t["max_attempts"]]
    assert not twice, f"tasks completed by a stale lease (result.attempt != attempts): {twice[:10]}"
    assert not over, f"tasks that ran more attempts than max_attempts: {over[:10]}"
    return tasks


def _run_load_with_kills(release, tmp_path, e2e_note, label: str) -> None:
    ns = release.namespace
    victim_orchestrator = sorted(
        p.metadata.name for p in release.kube.ready_pods(ns, release.selector("orchestrator"))
    )[0]
    killed: list[str] = []
    with release.orchestrator_forward() as forward:
        run = LoadRun(forward.url, PROFILE, tmp_path, token=release.token(), run_id=f"{label}-{ns}").start()
        try:
            eventually(
                lambda: len(run.ack_file.read_text().splitlines()) if run.ack_file.exists() else 0,
                lambda n: n >= 50,
                timeout_sec=60,
                expectation="load under way (50 tasks acknowledged)",
            )
            for agent_type in release.enabled_agent_types[:2]:
                pods = release.kube.ready_pods(ns, release.agent_selector(agent_type))
                if pods:
                    release.kube.core.delete_namespaced_pod(pods[0].metadata.name, ns)
                    killed.append(pods[0].metadata.name)
            release.kube.core.delete_namespaced_pod(victim_orchestrator, ns)
            killed.append(victim_orchestrator)
            result = run.wait()
        finally:
            run.stop()
        e2e_note(
            f"{label}: killed {', '.join(killed)}; {result.summary.line()}; port-forward errors "
            f"{len(forward.stats.errors)}"
        )
        assert result.summary.error_rate < 0.01, f"error rate {result.summary.error_rate:.2%}: {result.summary.line()}"
        api = OrchestratorApi(forward.url, release.token())
        tasks = _check_ledger(api, result.acknowledged, timeout_sec=600)
        e2e_note(f"{label}: {len(tasks)} acknowledged tasks final: {dict(Ledger.states(tasks))}")
    release.wait_ready()


def test_pod_deletions_under_load_lose_nothing(release, tmp_path, e2e_note) -> None:
    _run_load_with_kills(release, tmp_path, e2e_note, "kills")


def test_chaos_monkey_rbac_allows_only_pods_in_its_namespace(release) -> None:
    ns, sa = release.namespace, f"{release.prefix}-chaos-monkey"
    can = release.kube.can_i
    assert can(ns, sa, verb="delete", resource="pods", target_namespace=ns), "the chaos monkey cannot delete its pods"
    forbidden = [
        ("delete", "pods", "kube-system", ""),
        ("delete", "deployments", ns, "apps"),
        ("delete", "statefulsets", ns, "apps"),
        ("get", "secrets", ns, ""),
        ("create", "pods", ns, ""),
        ("delete", "namespaces", "", ""),
    ]
    allowed = [
        f"{v} {r} in {n or 'cluster'}"
        for v, r, n, g in forbidden
        if can(ns, sa, verb=v, resource=r, target_namespace=n, group=g)
    ]
    assert not allowed, f"the chaos monkey's RBAC is wider than deleting pods in {ns}: {allowed}"


def test_chaos_monkey_deletes_only_agent_pods(release, e2e_note) -> None:
    ns = release.namespace
    release.wait_ready()

    def uids(selector: str) -> set[str]:
        return {p.metadata.uid for p in release.kube.core.list_namespaced_pod(ns, label_selector=selector).items}

    others = {name: uids(release.selector(name)) for name in ("orchestrator", "postgresql", "chaos-monkey")}
    agents_before = uids(release.selector("agent"))
    gone = eventually(
        lambda: agents_before - uids(release.selector("agent")),
        lambda g: len(g) > 0,
        timeout_sec=3 * CHAOS_INTERVAL_SEC + 60,
        interval_sec=3,
        expectation=f"the chaos monkey deletes an agent pod within 3 runs ({CHAOS_INTERVAL_SEC}s apart)",
    )
    consistently(
        lambda: {name: uids(release.selector(name)) for name in others},
        lambda now: now == others,
        duration_sec=2 * CHAOS_INTERVAL_SEC,
        interval_sec=3,
        expectation="no orchestrator, PostgreSQL or chaos-monkey pod is deleted",
    )
    e2e_note(f"chaos monkey deleted {len(gone)} agent pod(s) and nothing else")


def test_fault_injection_keeps_success_within_slo(release, tmp_path, need, e2e_note) -> None:
    """Istio fault injection (5% delay, 2% abort at the waypoint, on the orchestrator's Service) on: every task's
    lease and completion are agent calls through that waypoint, so the faults land on the path the tasks take;
    client retries keep errors under 1% and lose nothing. The waypoint's own metrics show that faults were
    injected (response flags FI and DI), so a run where nothing was injected cannot pass."""
    need("istio", "envoy", "prometheus")
    options = ReleaseOptions(**{**release.options.__dict__, "mesh_fault_injection": True})
    release.upgrade(options)
    _run_load_with_kills(release, tmp_path, e2e_note, "faults")
    orchestrator = f"{release.prefix}-orchestrator"
    with prometheus(release.kube, release.cfg.monitoring_namespace) as prom:
        injected = {
            flag: prom.scalar(
                f'sum(increase(istio_requests_total{{destination_workload="{orchestrator}", '
                f'destination_workload_namespace="{release.namespace}", response_flags=~".*{flag}.*"}}[15m]))'
            )
            for flag in ("FI", "DI")
        }
    e2e_note(f"faults injected at the waypoint over the run: {injected}")
    assert all(n and n > 0 for n in injected.values()), f"the waypoint injected no fault of some kind: {injected}"
