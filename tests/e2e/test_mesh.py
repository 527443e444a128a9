"""Istio ambient, proven by traffic: STRICT mTLS refuses plaintext from outside the mesh, ztunnel carries the
agents' calls as mutual TLS between the chart's identities, and the L4 AuthorizationPolicies admit exactly the
flows the chart declares (an identity they do not name is refused on the same request an allowed one makes).
The rest of the cluster tier runs with the release in the mesh too: each of its tests is also a test that
nothing breaks under STRICT (Prometheus scrapes, KEDA scales, probes pass, the chaos monkey works)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import _probes
import _ztunnel
import pytest
import yaml
from waits import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.needs_istio]

TRUST_DOMAIN = "cluster.local"
ANALYZE_ALLOWLIST = Path(__file__).resolve().parents[1] / "istio-analyze-allowlist.yaml"


@pytest.fixture(scope="module", autouse=True)
def _needs(need) -> None:
    need("istio")


def _probe(
    release, image, name: str, snippet: str, *args: str, service_account: str | None, in_mesh: bool, namespace=None
) -> dict:
    """Run `snippet` in a one-shot pod; in the mesh (ambient) or explicitly out of it."""
    phase, logs = release.kube.run_pod(
        namespace or release.namespace,
        name,
        image=image,
        command=_probes.command(snippet, *args),
        labels={"istio.io/dataplane-mode": "ambient" if in_mesh else "none"},
        service_account=service_account,
        env={"AI_AGENTS_API_TOKEN": release.token() or ""},
    )
    assert phase == "Succeeded", f"probe {name} {phase}: {logs[-1000:]}"
    return _probes.result(logs)


def _service(release, name: str) -> str:
    return f"{release.prefix}-{name}.{release.namespace}.svc"


def _create_service_account(release, name: str) -> None:
    from kubernetes import client

    release.kube.core.create_namespaced_service_account(
        release.namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )


def test_plaintext_from_outside_the_mesh_is_refused(release, image, e2e_namespace) -> None:
    """The same HTTP requests: served to an allowed client in the mesh, refused to a plaintext one outside it,
    on the orchestrator's API and health ports and on an agent pod's metrics and health ports."""
    orchestrator = _service(release, "orchestrator")
    agent_ip = release.kube.ready_pods(release.namespace, release.selector("agent"))[0].status.pod_ip
    orchestrator_urls = [f"http://{orchestrator}:8080/v1/status", f"http://{orchestrator}:8081/healthz"]
    agent_urls = [f"http://{agent_ip}:9091/metrics", f"http://{agent_ip}:8081/healthz"]

    inside = _probe(
        release, image, "e2e-in-mesh", _probes.HTTP_GETS, *orchestrator_urls, service_account="e2e-client", in_mesh=True
    )
    assert all(r.get("status") == 200 for r in inside.values()), f"an allowed in-mesh client was refused: {inside}"

    outside_namespace = e2e_namespace()  # not labelled for ambient: outside the mesh
    outside = _probe(
        release,
        image,
        "e2e-plaintext",
        _probes.HTTP_GETS,
        *orchestrator_urls,
        *agent_urls,
        service_account=None,
        in_mesh=False,
        namespace=outside_namespace,
    )
    reached = {url: r for url, r in outside.items() if "error" not in r}
    assert not reached, f"plaintext from outside the mesh reached: {reached}"


def test_ztunnel_carries_agent_calls_as_mutual_tls(release) -> None:
    """ztunnel's own metrics: every agent type's connections to the orchestrator, and Prometheus's scrapes of the
    agents, were mutual TLS between the chart's SPIFFE identities."""
    ns = release.namespace
    orchestrator = _ztunnel.spiffe(TRUST_DOMAIN, ns, f"{release.prefix}-orchestrator")
    agents = {_ztunnel.spiffe(TRUST_DOMAIN, ns, f"{release.prefix}-agent-{t}") for t in release.enabled_agent_types}
    assert agents, "the release runs no agent"

    def connections(source: set[str], destination: set[str]) -> list[_ztunnel.Sample]:
        return [
            s
            for s in _ztunnel.samples(release.kube, release.cfg.istio_namespace, "istio_tcp_connections_opened_total")
            if s.labels.get("reporter") == "destination"
            and s.labels.get("source_principal") in source
            and s.labels.get("destination_principal") in destination
            and s.value > 0
        ]

    seen = eventually(
        lambda: connections(agents, {orchestrator}),
        lambda found: {s.labels["source_principal"] for s in found} == agents,
        timeout_sec=120,
        expectation="ztunnel to report a connection from every agent identity to the orchestrator",
    )
    policies = {s.labels.get("connection_security_policy") for s in seen}
    assert policies == {"mutual_tls"}, f"agent -> orchestrator connections not all mutual TLS: {policies}"

    if release.options.observability:
        prometheus = _ztunnel.spiffe(
            TRUST_DOMAIN, release.cfg.monitoring_namespace, release.cfg.prometheus_service_account
        )
        scrapes = eventually(
            lambda: connections({prometheus}, agents),
            bool,
            timeout_sec=120,
            expectation="ztunnel to report Prometheus's scrapes of the agents",
        )
        assert {s.labels.get("connection_security_policy") for s in scrapes} == {"mutual_tls"}


def test_an_identity_the_policies_do_not_name_is_refused(release, image) -> None:
    """The same requests from the identity that is allowed and from one no policy names, both in the mesh:
    PostgreSQL answers only the orchestrator's, the orchestrator's gRPC only an agent's."""
    _create_service_account(release, "e2e-stranger")
    postgresql = _service(release, "postgresql")
    allowed_pg = _probe(
        release,
        image,
        "e2e-pg-as-orchestrator",
        _probes.PG_SSL_REQUEST,
        postgresql,
        "5432",
        service_account=f"{release.prefix}-orchestrator",
        in_mesh=True,
    )
    assert allowed_pg.get("answer") in ("S", "N"), f"the orchestrator's identity did not reach PostgreSQL: {allowed_pg}"
    denied_pg = _probe(
        release, image, "e2e-pg-as-stranger", _probes.PG_SSL_REQUEST, postgresql, "5432",
        service_account="e2e-stranger", in_mesh=True,
    )  # fmt: skip
    assert "error" in denied_pg, f"an identity no policy names reached PostgreSQL: {denied_pg}"

    grpc_target = f"{_service(release, 'orchestrator')}:9090"
    allowed = _probe(
        release, image, "e2e-grpc-as-agent", _probes.GRPC_HEALTH, grpc_target,
        service_account=f"{release.prefix}-agent-{release.enabled_agent_types[0]}", in_mesh=True,
    )  # fmt: skip
    assert allowed.get("status") == "SERVING", f"an agent's identity was refused an allowed gRPC call: {allowed}"
    denied = _probe(
        release, image, "e2e-grpc-as-stranger", _probes.GRPC_HEALTH, grpc_target,
        service_account="e2e-stranger", in_mesh=True,
    )  # fmt: skip
    assert "error" in denied, f"an identity no policy names reached the orchestrator's gRPC port: {denied}"


def test_agent_identity_limited_to_allowed_calls(release, image) -> None:
    """An agent's identity reaches the orchestrator's gRPC port only: its HTTP API refuses it."""
    url = f"http://{_service(release, 'orchestrator')}:8080/v1/status"
    sa = f"{release.prefix}-agent-{release.enabled_agent_types[0]}"
    denied = _probe(release, image, "e2e-agent-http", _probes.HTTP_GET, url, service_account=sa, in_mesh=True)
    assert denied.get("status") == 403 or "error" in denied, f"agent identity reached the HTTP API: {denied}"


def test_istioctl_analyze_reports_only_allowlisted_messages(release, e2e_note) -> None:
    """istiod accepted every Istio and Gateway API object the charts rendered (the install went through its
    validation webhook); `istioctl analyze` on the live namespace finds nothing beyond the allowlist."""
    istioctl = release.cfg.istioctl
    cmd = [istioctl, "analyze", "--namespace", release.namespace, "--output", "json"]
    if release.cfg.kubeconfig:
        cmd += ["--kubeconfig", release.cfg.kubeconfig]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        pytest.skip(f"no istioctl at {istioctl} (E2E_ISTIOCTL)")
    # analyze exits 79 when it reports warnings, 80 for errors (its documented codes); both are read below.
    assert proc.returncode in (0, 79, 80), f"istioctl analyze failed ({proc.returncode}): {proc.stderr[-2000:]}"
    messages = json.loads(proc.stdout or "[]")
    allowed = {entry["code"] for entry in yaml.safe_load(ANALYZE_ALLOWLIST.read_text())["allow"]}
    unexpected = [m for m in messages if m["code"] not in allowed]
    assert not unexpected, f"istioctl analyze on {release.namespace}: {json.dumps(unexpected, indent=1)}"
    e2e_note(f"istioctl analyze: {len(messages)} message(s), all allowlisted: {sorted({m['code'] for m in messages})}")
