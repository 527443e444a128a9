"""mTLS and authorization (Istio ambient): STRICT is in force, a pod outside the mesh cannot reach the
orchestrator, an agent's identity can call only what the AuthorizationPolicies allow."""

from __future__ import annotations

import _probes
import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.needs_istio]


@pytest.fixture(scope="module", autouse=True)
def _needs(need) -> None:
    need("istio")


def _probe(release, image, name: str, snippet: str, *args: str, service_account: str, in_mesh: bool) -> dict:
    labels = {"istio.io/dataplane-mode": "ambient" if in_mesh else "none"}
    phase, logs = release.kube.run_pod(
        release.namespace,
        name,
        image=image,
        command=_probes.command(snippet, *args),
        labels=labels,
        service_account=service_account,
        env_from_secret={"AI_AGENTS_API_TOKEN": (f"{release.prefix}-api-token", "token")},
    )
    assert phase == "Succeeded", f"probe {name} {phase}: {logs[-1000:]}"
    return _probes.result(logs)


def test_strict_mtls_in_force(release) -> None:
    items = release.kube.custom.list_namespaced_custom_object(
        "security.istio.io", "v1", release.namespace, "peerauthentications"
    )["items"]
    strict = [
        p["metadata"]["name"]
        for p in items
        if not (p["spec"].get("selector")) and (p["spec"].get("mtls") or {}).get("mode") == "STRICT"
    ]
    assert strict, f"no namespace-wide STRICT PeerAuthentication in {release.namespace}: {items}"


def test_outside_mesh_pod_cannot_reach_orchestrator(release, image) -> None:
    url = f"http://{release.prefix}-orchestrator.{release.namespace}.svc:8080/v1/status"
    inside = _probe(release, image, "e2e-in-mesh", _probes.HTTP_GET, url, service_account="e2e-client", in_mesh=True)
    assert inside.get("status") == 200, f"an allowed in-mesh client could not call the orchestrator: {inside}"
    outside = _probe(
        release, image, "e2e-outside-mesh", _probes.HTTP_GET, url, service_account="e2e-client", in_mesh=False
    )
    assert "error" in outside, f"a plaintext pod outside the mesh reached the orchestrator: {outside}"


def test_agent_identity_limited_to_allowed_calls(release, image) -> None:
    sa = f"{release.prefix}-agent-coding"
    grpc_target = f"{release.prefix}-orchestrator.{release.namespace}.svc:9090"
    allowed = _probe(
        release, image, "e2e-agent-grpc", _probes.GRPC_HEALTH, grpc_target, service_account=sa, in_mesh=True
    )
    assert allowed.get("status") == "SERVING", f"agent identity denied an allowed gRPC call: {allowed}"
    url = f"http://{release.prefix}-orchestrator.{release.namespace}.svc:8080/v1/status"
    denied = _probe(release, image, "e2e-agent-http", _probes.HTTP_GET, url, service_account=sa, in_mesh=True)
    assert denied.get("status") == 403 or "error" in denied, f"agent identity reached the HTTP API: {denied}"
