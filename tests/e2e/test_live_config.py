"""Live configuration on a cluster: patching ConfigMap P-live-config changes what running pods do, with the same
pods and restart counts (the kubelet's `..data` swap, not a rollout), and a bad patch is refused and counted."""

from __future__ import annotations

import time
import urllib.request

import pytest
import yaml
from _kube import PortForward
from prometheus_client.parser import text_string_to_metric_families
from waits import eventually

# It edits its release's ConfigMap: never run it against a shared, already installed release.
pytestmark = [pytest.mark.cluster, pytest.mark.destructive]
# The kubelet's ConfigMap sync period (about a minute by default) plus the processes' 2 s poll.
APPLY_TIMEOUT_SEC = 180


def _pods(release) -> dict[str, tuple[str, int]]:
    """Every runtime pod of the release: name -> (uid, restarts of its containers)."""
    pods = release.kube.core.list_namespaced_pod(
        release.namespace, label_selector=f"app.kubernetes.io/instance={release.name}"
    ).items
    return {
        p.metadata.name: (p.metadata.uid, sum(s.restart_count for s in p.status.container_statuses or []))
        for p in pods
        if p.metadata.labels.get("app.kubernetes.io/name") in ("orchestrator", "agent")
    }


def _serving_processes(release, pod: str) -> int:
    """Processes in the pod that each read the file: an orchestrator's serving processes, else one."""
    spec = release.kube.core.read_namespaced_pod(pod, release.namespace).spec
    env = {e.name: e.value for e in spec.containers[0].env or []}
    return int(env.get("AI_AGENTS_SERVING_PROCESSES") or 1)


def _metric(release, pod: str, name: str, **labels: str) -> float:
    with (
        PortForward(release.kube, release.namespace, lambda: pod, 9091) as pf,
        urllib.request.urlopen(f"{pf.url}/metrics", timeout=10) as response,
    ):
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{pod} exports no {name}{labels}")


def _patch_live(release, document: dict | str) -> None:
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    release.kube.core.patch_namespaced_config_map(
        f"{release.prefix}-live-config", release.namespace, {"data": {"live.yaml": text}}
    )


def test_a_patched_configmap_is_applied_without_restarts(release, e2e_note) -> None:
    before = _pods(release)
    live_name = f"{release.prefix}-live-config"
    live = yaml.safe_load(release.kube.core.read_namespaced_config_map(live_name, release.namespace).data["live.yaml"])
    generation = {pod: _metric(release, pod, "ai_agents_config_generation") for pod in before}

    live.setdefault("agent_types", {}).setdefault("coding", {})["simulate_latency_ms"] = 321
    live.setdefault("orchestrator", {})["default_max_attempts"] = 2
    _patch_live(release, live)
    eventually(
        lambda: {pod: _metric(release, pod, "ai_agents_config_generation") for pod in before},
        lambda now: all(now[pod] == generation[pod] + 1 for pod in before),
        timeout_sec=APPLY_TIMEOUT_SEC,
        interval_sec=10,
        expectation="every orchestrator and agent pod applied the patched file",
    )
    with release.orchestrator_api() as api:
        task = api.submit("coding", {}, idempotency_key=f"live-{time.time_ns()}")
        done = eventually(
            lambda: api.task(task["task_id"]),
            lambda t: t["state"] in ("succeeded", "failed", "dead_letter"),
            timeout_sec=120,
            expectation="the task finishes",
        )
    assert done["state"] == "succeeded" and done["result"]["latency_ms"] == 321, done
    assert done["max_attempts"] == 2, "the orchestrators' live default_max_attempts"
    assert _pods(release) == before, "same pods, same restart counts: applied live, not rolled"
    e2e_note(f"ConfigMap patch applied live by {len(before)} pods without a restart")


def test_a_bad_configmap_is_refused_and_counted(release) -> None:
    before = _pods(release)
    refused = {pod: _metric(release, pod, "ai_agents_config_reloads_total", result="refused") for pod in before}
    # A pod's /metrics sums its processes' counters: each process reads the file and refuses it once.
    readers = {pod: _serving_processes(release, pod) for pod in before}
    _patch_live(release, "agents: {concurrency: 0}\n")
    eventually(
        lambda: {pod: _metric(release, pod, "ai_agents_config_reloads_total", result="refused") for pod in before},
        lambda now: all(now[pod] == refused[pod] + readers[pod] for pod in before),
        timeout_sec=APPLY_TIMEOUT_SEC,
        interval_sec=10,
        expectation="every process of every pod refused the bad file once",
    )
    assert _pods(release) == before, "a refused file restarts nothing"
