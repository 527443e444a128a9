"""Discovery: every agent pod registers with the orchestrator found by DNS; Service names resolve in-cluster."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import _probes
import pytest
from waits import eventually

pytestmark = pytest.mark.cluster


def _ready_agent_pods(release) -> dict[str, set[str]]:
    return {
        t: {p.metadata.name for p in release.kube.ready_pods(release.namespace, release.agent_selector(t))}
        for t in release.enabled_agent_types
    }


def test_every_agent_pod_is_registered(release, e2e_note) -> None:
    """Each ready agent pod appears, active and of its type, in the orchestrator's agent list."""
    with release.orchestrator_api() as api:

        def read() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
            pods = _ready_agent_pods(release)
            active: dict[str, set[str]] = {}
            for agent in api.list_agents():
                if agent["state"] == "active":
                    active.setdefault(agent["agent_type"], set()).add(agent["agent_id"])
            return pods, active

        pods, _active = eventually(
            read,
            lambda pa: all(pa[0][t] and pa[0][t] <= pa[1].get(t, set()) for t in pa[0]),
            timeout_sec=120,
            expectation="every ready agent pod registered as an active agent of its type",
        )
    e2e_note("registered: " + ", ".join(f"{t} {len(pods[t])}" for t in sorted(pods)))


def test_service_names_resolve_inside_a_pod(release, image) -> None:
    """The orchestrator's and every agent type's Services (and headless Services) resolve from a pod."""
    ns = release.namespace
    names = [f"{release.prefix}-orchestrator.{ns}.svc", f"{release.prefix}-orchestrator-headless.{ns}.svc"]
    for t in release.enabled_agent_types:
        names += [f"{release.deployment(t)}.{ns}.svc", f"{release.deployment(t)}-headless.{ns}.svc"]
    headless_name = f"{release.prefix}-orchestrator-headless.{ns}.svc"
    attempts = itertools.count(1)

    def resolve() -> tuple[dict, int]:
        command = _probes.command(_probes.RESOLVE, *names)
        # A name per attempt: the previous probe pod may still be terminating.
        name = f"e2e-resolve-{next(attempts)}"
        phase, logs = release.kube.run_pod(
            ns, name, image=image, command=command, service_account="e2e-client", labels=release.client_labels
        )
        assert phase == "Succeeded", f"resolver pod {phase}: {logs[-1000:]}"
        return _probes.result(logs), len(release.kube.ready_pods(ns, release.selector("orchestrator")))

    # DNS answers are cached (CoreDNS `cache 30`, record TTL 30 s): an agent that resolved the headless name while
    # the second orchestrator was still starting leaves a one-address answer cached for up to 30 s, so the answer
    # is compared with the ready pods until it has had time to expire.
    resolved, orchestrators = eventually(
        resolve,
        lambda r: isinstance(r[0].get(headless_name), list) and len(r[0][headless_name]) == r[1],
        timeout_sec=90,
        interval_sec=10,
        retry_on=(AssertionError,),
        expectation="the headless orchestrator Service resolves to every ready orchestrator pod",
    )
    unresolved = {n: v for n, v in resolved.items() if not isinstance(v, list) or not v}
    assert not unresolved, f"names that did not resolve: {unresolved}"
    assert len(resolved[headless_name]) == orchestrators, f"headless: {resolved[headless_name]}, ready {orchestrators}"


def test_cli_lists_expected_agents_per_type(release, image) -> None:
    """`ai-agents agents --json` in a pod, through `dns:///<P>-orchestrator-headless`, counts each type's pods."""
    ns = release.namespace
    target = f"dns:///{release.prefix}-orchestrator-headless.{ns}.svc.cluster.local:9090"
    secret = (f"{release.prefix}-api-token", "token")

    def run() -> tuple[Counter[str], dict[str, int]]:
        phase, logs = release.kube.run_pod(
            ns,
            "e2e-cli-agents",
            image=image,
            command=["ai-agents", "agents", "--json", "--target", target],
            env_from_secret={"AI_AGENTS_API_TOKEN": secret} if release.token() else None,
            service_account="e2e-client",
            labels=release.client_labels,
        )
        assert phase == "Succeeded", f"`ai-agents agents` pod {phase}: {logs[-1000:]}"
        agents = json.loads(logs[logs.index("[") :])
        listed = Counter(a["agent_type"] for a in agents if a["state"] == "active")
        expected = {t: len(pods) for t, pods in _ready_agent_pods(release).items()}
        return listed, expected

    _listed, expected = eventually(
        run,
        lambda le: all(le[0].get(t, 0) >= n for t, n in le[1].items()),
        timeout_sec=180,
        interval_sec=5,
        expectation="`ai-agents agents` lists at least one active agent per ready pod",
    )
    assert all(n > 0 for n in expected.values()), f"a type has no ready pods: {expected}"
