"""Policy tests of the umbrella chart charts/ai-agents, rendered with Helm 3 and Helm 4.

What passing proves (schema validity, lint and label hygiene are tests/charts/test_render_validate.py's job):
- the rollout's service table: the orchestrator and one Deployment per agent type at the rollout's replica
  counts, every runtime Service and container exposing http 8080 / grpc 9090 / metrics 9091 / health 8081;
- discovery: a headless Service per component, agents pointed at the orchestrator's by a `dns:///` target;
- the env, Secret and command contracts of docs/contracts.md;
- Pod Security `restricted` on every pod (runtime, PostgreSQL, chaos monkey, helm test), probes on `health`,
  a PodDisruptionBudget and zone/host topology spread per component;
- NetworkPolicies: a default deny, each required flow allowed and nothing else opened;
- the database: a DSN consistent with the embedded PostgreSQL, an external database without a StatefulSet,
  a clear failure without any database;
- the values schema rejects typos, negative replicas, unknown agent types and wrong types, naming the key;
- the subchart switches: KEDA owns agent replicas, the mesh labels pods and Services, the chaos monkey's RBAC;
- the xDS switch: agents get the bootstrap, GRPC_XDS_BOOTSTRAP and an `xds:///` target, and roll when it changes.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import os
import subprocess
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import charttree
import helmrender
import pytest
import yaml
from charttree import NAMESPACE, RELEASE
from helmrender import HelmError, by_kind, find

CHART = "ai-agents"
CHART_DIR = charttree.CHARTS_DIR / CHART

pytestmark = pytest.mark.skipif(not (CHART_DIR / "Chart.yaml").is_file(), reason="no charts/ai-agents/Chart.yaml")

# The rollout's service table (requirements, not rendered output): replicas per component.
ORCHESTRATOR_REPLICAS = 3
AGENT_REPLICAS = {
    "coding": 5,
    "testing": 8,
    "security": 6,
    "compliance": 4,
    "documentation": 3,
    "discovery": 2,
}
# docs/contracts.md: the four ports of every runtime container and Service, and what each speaks.
PORTS = {"http": 8080, "grpc": 9090, "metrics": 9091, "health": 8081}
APP_PROTOCOLS = {"http": "http", "grpc": "kubernetes.io/h2c", "metrics": "http", "health": "http"}
RUNTIME_NAMES = {"orchestrator", "agent", "chaos-monkey"}
# The runtime processes that serve the four ports (the chaos monkey serves only metrics and health).
SERVING_NAMES = {"orchestrator", "agent"}

P = RELEASE  # the name prefix when global.namePrefix is empty
Obj = dict[str, Any]


def live_file(objs: list[Obj]) -> Obj:
    """The live configuration the chart renders (ConfigMap P-live-config, key live.yaml), as a mapping."""
    return dict(yaml.safe_load(find(objs, "ConfigMap", f"{P}-live-config")["data"]["live.yaml"]))


def ci_file(name: str) -> Path:
    return CHART_DIR / "ci" / name


@functools.cache
def _render_cached(helm: Path, files: tuple[str, ...], sets: tuple[tuple[str, str], ...], release: str) -> str:
    charts = charttree.prepared_charts(helm)
    objs = helmrender.render(
        helm, charts / CHART, values_files=files, set_values=dict(sets), release=release, namespace=NAMESPACE
    )
    return yaml.safe_dump_all(objs)


def render(
    helm: Path,
    *,
    files: Iterable[str | Path] = (),
    sets: Mapping[str, Any] | None = None,
    release: str = RELEASE,
) -> list[Obj]:
    """Render the umbrella (a fresh copy of the objects, so tests may not disturb each other)."""
    text = _render_cached(
        helm,
        tuple(str(f) for f in files),
        tuple(sorted((k, str(v)) for k, v in (sets or {}).items())),
        release,
    )
    return [o for o in yaml.safe_load_all(text) if o]


def render_error(helm: Path, **kwargs: Any) -> str:
    with pytest.raises(HelmError) as excinfo:
        render(helm, **kwargs)
    return str(excinfo.value)


def pod_spec(obj: Obj) -> Obj:
    return obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]


def pod_labels(obj: Obj) -> dict[str, str]:
    return obj["metadata"]["labels"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]["labels"]


def workloads(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in ("Deployment", "StatefulSet", "Pod")]


def runtime_workloads(objs: list[Obj]) -> list[Obj]:
    return [o for o in workloads(objs) if pod_labels(o)["app.kubernetes.io/name"] in RUNTIME_NAMES]


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def agent_deployments(objs: list[Obj]) -> dict[str, Obj]:
    return {
        pod_labels(d)["ai-agents.io/agent-type"]: d
        for d in by_kind(objs, "Deployment")
        if pod_labels(d)["app.kubernetes.io/name"] == "agent"
    }


def selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (an empty selector selects everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def chart_app_version() -> str:
    return str(yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"])


# ---------------------------------------------------------------------------------------------------------
# The rollout's service table


def test_replicas_per_component_match_the_rollout_table(helm: Path) -> None:
    objs = render(helm)
    assert find(objs, "Deployment", f"{P}-orchestrator")["spec"]["replicas"] == ORCHESTRATOR_REPLICAS
    agents = agent_deployments(objs)
    assert set(agents) == set(AGENT_REPLICAS), "exactly one Deployment per agent type"
    for agent_type, replicas in AGENT_REPLICAS.items():
        deployment = agents[agent_type]
        assert deployment["metadata"]["name"] == f"{P}-agent-{agent_type}"
        assert deployment["spec"]["replicas"] == replicas, agent_type


def test_each_agent_type_is_overridable(helm: Path) -> None:
    values = {
        "global": {"agents": {"discovery": {"enabled": False}}},
        "orchestrator": {"replicas": 1},
        "agentDefaults": {"simulate": {"failureRate": 0.25}},
        "agents": {
            "coding": {"replicas": 11},
            "security": {"handler": "llm", "llm": {"baseUrl": "https://llm.example/v1"}, "concurrency": 9},
            "testing": {"image": {"tag": "canary"}, "nodeSelector": {"pool": "agents"}, "orchestratorChannels": 4},
            "compliance": {"simulate": {"failureRate": 0}},
        },
    }
    objs = render(helm, files=[_values_file(values)])
    assert find(objs, "Deployment", f"{P}-orchestrator")["spec"]["replicas"] == 1
    agents = agent_deployments(objs)
    assert "discovery" not in agents
    assert not [o for o in objs if "discovery" in o["metadata"]["name"]], "a disabled type renders nothing"
    assert agents["coding"]["spec"]["replicas"] == 11
    assert agents["testing"]["spec"]["replicas"] == AGENT_REPLICAS["testing"]

    security = env_of(pod_spec(agents["security"])["containers"][0])
    assert security["AI_AGENTS_HANDLER"]["value"] == "llm"
    assert security["AI_AGENTS_ORCHESTRATOR_CHANNELS"]["value"] == "1", "agentDefaults.orchestratorChannels"
    assert security["AI_AGENTS_LLM_BASE_URL"]["value"] == "https://llm.example/v1"
    live = live_file(objs)["agent_types"]
    assert live["security"] == {"concurrency": 9}, "llm: no simulate settings, no model unless one is set"
    assert "discovery" not in live

    testing = pod_spec(agents["testing"])
    assert testing["containers"][0]["image"].endswith(":canary")
    assert env_of(testing["containers"][0])["AI_AGENTS_ORCHESTRATOR_CHANNELS"]["value"] == "4"
    assert testing["nodeSelector"] == {"pool": "agents"}
    assert "nodeSelector" not in pod_spec(agents["coding"])

    # A per-type 0 wins over a non-zero default (a naive merge would drop it).
    assert live["compliance"]["simulate_failure_rate"] == 0
    assert live["coding"]["simulate_failure_rate"] == 0.25


def test_llm_handler_without_base_url_fails_naming_the_key(helm: Path) -> None:
    message = render_error(helm, sets={"agents.coding.handler": "llm"})
    assert "agents.coding.llm.baseUrl" in message


@pytest.mark.parametrize("scenario", [None, "04-chaos-values.yaml"])
def test_four_named_ports_on_every_service_and_runtime_container(helm: Path, scenario: str | None) -> None:
    objs = render(helm, files=[ci_file(scenario)] if scenario else [])
    services = [
        s for s in by_kind(objs, "Service") if s["metadata"]["labels"]["app.kubernetes.io/name"] in SERVING_NAMES
    ]
    assert len(services) == 2 * (1 + len(AGENT_REPLICAS)), "ClusterIP and headless Service per component"
    for service in services:
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert {n: p["port"] for n, p in ports.items()} == PORTS, service["metadata"]["name"]
        assert {n: p["appProtocol"] for n, p in ports.items()} == APP_PROTOCOLS, service["metadata"]["name"]
        assert all(p["targetPort"] == n for n, p in ports.items()), "Services target the named container ports"
    runtime = runtime_workloads(objs)
    assert any(pod_labels(w)["app.kubernetes.io/name"] == "chaos-monkey" for w in runtime) == bool(scenario)
    serving = [w for w in runtime if w["kind"] != "Pod" and pod_labels(w)["app.kubernetes.io/name"] in SERVING_NAMES]
    assert len(serving) == 1 + len(AGENT_REPLICAS)
    for workload in serving:
        for container in pod_spec(workload)["containers"]:
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports == PORTS, workload["metadata"]["name"]
    for workload in runtime:
        if pod_labels(workload)["app.kubernetes.io/name"] == "chaos-monkey":
            ports = {p["name"]: p["containerPort"] for p in pod_spec(workload)["containers"][0]["ports"]}
            assert ports == {n: PORTS[n] for n in ("metrics", "health")}
    for workload in workloads(objs):  # no probe may point at a port its container does not declare
        for container in pod_spec(workload)["containers"]:
            declared = {p["name"] for p in container.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                port = container.get(probe, {}).get("httpGet", {}).get("port")
                assert port is None or port in declared, f"{workload['metadata']['name']} {probe}"


def test_probes_use_the_health_port(helm: Path) -> None:
    objs = render(helm, files=[ci_file("04-chaos-values.yaml")])
    checked = 0
    for workload in runtime_workloads(objs):
        if workload["kind"] == "Pod":
            continue
        for container in pod_spec(workload)["containers"]:
            named = {p["name"]: p["containerPort"] for p in container["ports"]}
            paths = {}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                get = container[probe]["httpGet"]
                assert named[get["port"]] == PORTS["health"], f"{workload['metadata']['name']} {probe}"
                paths[probe] = get["path"]
            assert paths["readinessProbe"] == "/readyz" and paths["livenessProbe"] == "/healthz"
            checked += 1
    assert checked == 1 + len(AGENT_REPLICAS) + 1, "orchestrator, agents and chaos monkey"


# ---------------------------------------------------------------------------------------------------------
# Names, labels, discovery, env and command contracts


def test_headless_services_back_dns_discovery(helm: Path) -> None:
    objs = render(helm, sets={"clusterDomain": "corp.internal"})
    deployments = {d["metadata"]["name"]: d for d in by_kind(objs, "Deployment")}
    for component in ["orchestrator", *(f"agent-{t}" for t in AGENT_REPLICAS)]:
        headless = find(objs, "Service", f"{P}-{component}-headless")
        assert headless["spec"]["clusterIP"] == "None"
        assert selects({"matchLabels": headless["spec"]["selector"]}, pod_labels(deployments[f"{P}-{component}"]))
        clusterip = find(objs, "Service", f"{P}-{component}")
        assert clusterip["spec"].get("clusterIP") != "None"
        assert clusterip["spec"]["selector"] == headless["spec"]["selector"]
    target = f"dns:///{P}-orchestrator-headless.{NAMESPACE}.svc.corp.internal:9090"
    for agent_type, deployment in agent_deployments(objs).items():
        env = env_of(pod_spec(deployment)["containers"][0])
        assert env["AI_AGENTS_ORCHESTRATOR_TARGET"]["value"] == target, agent_type


def test_contract_env_command_and_image(helm: Path) -> None:
    objs = render(helm)
    version = chart_app_version()
    orchestrator = pod_spec(find(objs, "Deployment", f"{P}-orchestrator"))["containers"][0]
    assert orchestrator["command"] == ["ai-agents", "orchestrator"]
    assert orchestrator["image"] == f"ai-agents/runtime:{version}"
    env = env_of(orchestrator)
    assert env["AI_AGENTS_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{P}-database",
        "key": "dsn",
    }
    assert env["AI_AGENTS_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{P}-api-token",
        "key": "token",
    }
    assert env["AI_AGENTS_LOG_FORMAT"]["value"] == "json"
    for agent_type, deployment in agent_deployments(objs).items():
        container = pod_spec(deployment)["containers"][0]
        assert container["command"] == ["ai-agents", "agent"]
        env = env_of(container)
        assert env["AI_AGENTS_AGENT_TYPE"]["value"] == agent_type
        assert env["AI_AGENTS_AGENT_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["AI_AGENTS_LOG_FORMAT"]["value"] == "json"
        assert env["AI_AGENTS_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == f"{P}-api-token"
        assert "AI_AGENTS_DATABASE_URL" not in env, "only the orchestrator holds the DSN"
        labels = pod_labels(deployment)
        assert labels["app.kubernetes.io/component"] == f"agent-{agent_type}"
        assert labels["ai-agents.io/agent-type"] == agent_type
        assert labels["app.kubernetes.io/instance"] == RELEASE
    token = find(objs, "Secret", f"{P}-api-token")
    assert len(base64.b64decode(token["data"]["token"])) >= 32


def test_agents_prove_their_identity_with_projected_tokens(helm: Path) -> None:
    """agentIdentity.mode kubernetes (the default): what the orchestrator's TokenReview check needs is all there."""
    objs = render(helm, sets={"global.agents.discovery.enabled": "false"})
    agents = agent_deployments(objs)
    orchestrator = pod_spec(find(objs, "Deployment", f"{P}-orchestrator"))
    env = env_of(orchestrator["containers"][0])
    assert env["AI_AGENTS_AGENT_IDENTITY"]["value"] == "kubernetes"
    assert env["AI_AGENTS_AGENT_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    service_accounts = json.loads(env["AI_AGENTS_AGENT_SERVICE_ACCOUNTS"]["value"])
    assert service_accounts == {pod_spec(d)["serviceAccountName"]: t for t, d in agents.items()}, (
        "each enabled agent type's own ServiceAccount, and nothing else"
    )
    assert "discovery" not in service_accounts.values()
    assert {sa["metadata"]["name"] for sa in by_kind(objs, "ServiceAccount")} >= set(service_accounts)
    # In-cluster config needs the orchestrator's own API token; TokenReview needs system:auth-delegator.
    assert orchestrator["automountServiceAccountToken"] is True
    [binding] = by_kind(objs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:auth-delegator",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": orchestrator["serviceAccountName"], "namespace": NAMESPACE}
    ]
    for agent_type, deployment in agents.items():
        spec = pod_spec(deployment)
        assert spec["automountServiceAccountToken"] is False, "agents get no token for the Kubernetes API"
        container = spec["containers"][0]
        token_file = Path(env_of(container)["AI_AGENTS_AGENT_CREDENTIAL_FILE"]["value"])
        [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(token_file.parent)]
        assert mount.get("readOnly") is True, agent_type
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        [source] = volume["projected"]["sources"]
        assert source["serviceAccountToken"] == {
            "audience": "ai-agents",
            "expirationSeconds": 3600,
            "path": token_file.name,
        }, agent_type
    fleet = Fleet(objs)
    coding = fleet.labels("agent-coding")
    assert fleet.allowed(fleet.labels("orchestrator"), None, 6443, dst_ip="172.18.0.2"), "TokenReview egress"
    assert not fleet.allowed(coding, None, 443, dst_ip="10.96.0.1"), "agents never reach the Kubernetes API"
    # Narrowed to the control plane, the API egress opens nothing else.
    narrowed = Fleet(render(helm, files=[_values_file({"networkPolicy": {"kubeApi": {"cidrs": ["172.18.0.2/32"]}}})]))
    orchestrator_pods = narrowed.labels("orchestrator")
    assert narrowed.allowed(orchestrator_pods, None, 6443, dst_ip="172.18.0.2")
    assert not narrowed.allowed(orchestrator_pods, None, 443, dst_ip="8.8.8.8")


def test_agent_identity_none_renders_no_token_or_rbac(helm: Path) -> None:
    objs = render(helm, sets={"agentIdentity.mode": "none"})
    orchestrator = pod_spec(find(objs, "Deployment", f"{P}-orchestrator"))
    env = env_of(orchestrator["containers"][0])
    assert env["AI_AGENTS_AGENT_IDENTITY"]["value"] == "none"
    assert "AI_AGENTS_AGENT_SERVICE_ACCOUNTS" not in env
    assert orchestrator["automountServiceAccountToken"] is False
    assert not by_kind(objs, "ClusterRoleBinding")
    for deployment in agent_deployments(objs).values():
        spec = pod_spec(deployment)
        assert "AI_AGENTS_AGENT_CREDENTIAL_FILE" not in env_of(spec["containers"][0])
        assert all("projected" not in v for v in spec["volumes"])
    fleet = Fleet(objs)
    assert not fleet.allowed(fleet.labels("orchestrator"), None, 443, dst_ip="10.96.0.1"), "no API egress"


def test_image_registry_tag_and_name_prefix(helm: Path) -> None:
    objs = render(
        helm,
        sets={"image.registry": "registry.example:5000", "image.tag": "1.2.3", "global.namePrefix": "fleet"},
    )
    orchestrator = find(objs, "Deployment", "fleet-orchestrator")
    assert pod_spec(orchestrator)["containers"][0]["image"] == "registry.example:5000/ai-agents/runtime:1.2.3"
    assert {d["metadata"]["name"] for d in by_kind(objs, "Deployment")} == {
        "fleet-orchestrator",
        *(f"fleet-agent-{t}" for t in AGENT_REPLICAS),
    }
    assert pod_labels(orchestrator)["app.kubernetes.io/instance"] == RELEASE, "instance stays the release name"
    target = env_of(pod_spec(find(objs, "Deployment", "fleet-agent-coding"))["containers"][0])
    assert target["AI_AGENTS_ORCHESTRATOR_TARGET"]["value"].startswith("dns:///fleet-orchestrator-headless.")


def test_too_long_prefix_fails_naming_the_key(helm: Path) -> None:
    message = render_error(helm, release="r" * 40)
    assert "global.namePrefix" in message


def test_apitoken_existing_secret_and_disabled(helm: Path) -> None:
    objs = render(helm, sets={"apiToken.existingSecret": "my-token", "apiToken.existingSecretKey": "bearer"})
    assert not [s for s in by_kind(objs, "Secret") if s["metadata"]["name"] == f"{P}-api-token"]
    env = env_of(pod_spec(find(objs, "Deployment", f"{P}-orchestrator"))["containers"][0])
    assert env["AI_AGENTS_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "my-token", "key": "bearer"}

    objs = render(helm, sets={"apiToken.enabled": "false"})
    assert not [s for s in by_kind(objs, "Secret") if s["metadata"]["name"] == f"{P}-api-token"]
    for workload in runtime_workloads(objs):
        for container in pod_spec(workload)["containers"]:
            assert "AI_AGENTS_API_TOKEN" not in env_of(container)


# ---------------------------------------------------------------------------------------------------------
# Pod security, disruption budgets, spreading


@pytest.mark.parametrize("scenario", [None, "04-chaos-values.yaml"])
def test_every_pod_is_restricted(helm: Path, scenario: str | None) -> None:
    objs = render(helm, files=[ci_file(scenario)] if scenario else [])
    pods = workloads(objs)
    names = {pod_labels(w)["app.kubernetes.io/name"] for w in pods}
    assert {"orchestrator", "agent", "postgresql", "health-check"} <= names
    assert ("chaos-monkey" in names) == bool(scenario)
    for workload in pods:
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        psc = spec["securityContext"]
        expected_uid = 999 if pod_labels(workload)["app.kubernetes.io/name"] == "postgresql" else 10001
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == expected_uid, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec.get("initContainers", []) + spec["containers"]:
            csc = container["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, name
            assert csc["readOnlyRootFilesystem"] is True, name
            assert csc["capabilities"]["drop"] == ["ALL"] and not csc["capabilities"].get("add"), name
            assert not csc.get("privileged"), name
            assert csc.get("runAsUser", expected_uid) != 0, name
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp is a writable emptyDir"
    sa_automount = {
        sa["metadata"]["name"]: sa.get("automountServiceAccountToken") for sa in by_kind(objs, "ServiceAccount")
    }
    for workload in pods:
        spec = pod_spec(workload)
        name = pod_labels(workload)["app.kubernetes.io/name"]
        chaos = name == "chaos-monkey"
        # Only the Kubernetes API's clients get its token: the chaos monkey, and the orchestrator for TokenReview
        # (on the pod only: its ServiceAccount keeps the default off).
        assert spec["automountServiceAccountToken"] is (chaos or name == "orchestrator"), workload["metadata"]["name"]
        if "serviceAccountName" in spec:
            assert sa_automount[spec["serviceAccountName"]] is chaos


def test_postgresql_runs_restricted_with_data_below_the_volume(helm: Path) -> None:
    objs = render(helm)
    sts = find(objs, "StatefulSet", f"{P}-postgresql")
    container = pod_spec(sts)["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    pgdata = env_of(container)["PGDATA"]["value"]
    assert pgdata.startswith(mounts[claim] + "/"), "PGDATA is a subdirectory of the PVC mount"
    volumes = {v["name"]: v for v in pod_spec(sts)["volumes"]}
    assert "emptyDir" in volumes[{v: k for k, v in mounts.items()}["/var/run/postgresql"]]
    for probe in ("readinessProbe", "livenessProbe"):
        assert "pg_isready" in " ".join(container[probe]["exec"]["command"])
    assert container["image"].split(":")[-1] not in ("", "latest"), "the PostgreSQL image is pinned"


def test_a_disruption_budget_per_component(helm: Path) -> None:
    objs = render(helm)
    pdbs = by_kind(objs, "PodDisruptionBudget")
    for deployment in by_kind(objs, "Deployment"):
        matching = [p for p in pdbs if selects(p["spec"]["selector"], pod_labels(deployment))]
        assert len(matching) == 1, f"{deployment['metadata']['name']}: one PDB selects its pods"
        budget = matching[0]["spec"]
        assert "maxUnavailable" in budget or "minAvailable" in budget
        assert budget.get("minAvailable") != deployment["spec"]["replicas"], "a PDB must not block every drain"
    assert len(pdbs) == len(by_kind(objs, "Deployment"))


def test_topology_spread_over_zones_and_hosts(helm: Path) -> None:
    objs = render(helm)
    for deployment in by_kind(objs, "Deployment"):
        constraints = pod_spec(deployment)["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in constraints} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        for constraint in constraints:
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
            assert selects(constraint["labelSelector"], pod_labels(deployment))
            other = [d for d in by_kind(objs, "Deployment") if d is not deployment]
            assert not any(selects(constraint["labelSelector"], pod_labels(d)) for d in other)
    custom = [{"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {}}]
    values = {"agents": {"coding": {"topologySpreadConstraints": custom}}}
    objs = render(helm, files=[_values_file(values)])
    assert pod_spec(find(objs, "Deployment", f"{P}-agent-coding"))["topologySpreadConstraints"] == custom


@functools.cache
def _values_file_cached(text: str) -> str:
    path = charttree._scratch() / "values.yaml"
    path.write_text(text)
    return str(path)


def _values_file(values: Obj) -> str:
    return _values_file_cached(yaml.safe_dump(values, sort_keys=True))


# ---------------------------------------------------------------------------------------------------------
# NetworkPolicies


class Fleet:
    """The rendered pods of a release and the NetworkPolicies that apply to them."""

    def __init__(self, objs: list[Obj]) -> None:
        self.policies = by_kind(objs, "NetworkPolicy")
        self.pods = {w["metadata"]["name"]: pod_labels(w) for w in workloads(objs)}

    def labels(self, name: str) -> dict[str, str]:
        return self.pods[f"{P}-{name}"]

    def isolating(self, labels: Mapping[str, str], direction: str) -> list[Obj]:
        return [
            p
            for p in self.policies
            if selects(p["spec"]["podSelector"], labels) and direction in p["spec"].get("policyTypes", [])
        ]

    @staticmethod
    def _port_ok(rule: Obj, port: int, protocol: str) -> bool:
        ports = rule.get("ports")
        if not ports:
            return True
        return any(p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports)

    @staticmethod
    def _peer_ok(
        rule: Obj, key: str, labels: Mapping[str, str] | None, ns_labels: Mapping[str, str], ip: str | None
    ) -> bool:
        peers = rule.get(key)
        if not peers:
            return True
        for peer in peers:
            if "ipBlock" in peer:
                if ip is not None and _in_cidr(ip, peer["ipBlock"]["cidr"]):
                    return True
                continue
            if labels is None:
                continue
            if "namespaceSelector" in peer:
                if not selects(peer["namespaceSelector"], ns_labels):
                    continue
            elif ns_labels.get("kubernetes.io/metadata.name") != NAMESPACE:
                continue
            if selects(peer.get("podSelector"), labels):
                return True
        return False

    def allowed(
        self,
        src: Mapping[str, str] | None,
        dst: Mapping[str, str] | None,
        port: int,
        *,
        protocol: str = "TCP",
        src_ns: str = NAMESPACE,
        dst_ns: str = NAMESPACE,
        dst_ip: str | None = None,
        src_ip: str | None = None,
    ) -> bool:
        """Would the policies let src (pod labels; None: not a pod) open `port` on dst? Checks both ends."""
        src_ns_labels = {"kubernetes.io/metadata.name": src_ns}
        dst_ns_labels = {"kubernetes.io/metadata.name": dst_ns}
        if src is not None and src_ns == NAMESPACE:
            egress = self.isolating(src, "Egress")
            if egress and not any(
                self._port_ok(r, port, protocol) and self._peer_ok(r, "to", dst, dst_ns_labels, dst_ip)
                for p in egress
                for r in p["spec"].get("egress", [])
            ):
                return False
        if dst is not None and dst_ns == NAMESPACE:
            ingress = self.isolating(dst, "Ingress")
            if ingress and not any(
                self._port_ok(r, port, protocol) and self._peer_ok(r, "from", src, src_ns_labels, src_ip)
                for p in ingress
                for r in p["spec"].get("ingress", [])
            ):
                return False
        return True

    def opened(self, labels: Mapping[str, str], direction: str) -> set[tuple[str, int]]:
        """(protocol, port) of every rule that applies to these pods in one direction."""
        key = "ingress" if direction == "Ingress" else "egress"
        out: set[tuple[str, int]] = set()
        for policy in self.isolating(labels, direction):
            for rule in policy["spec"].get(key, []):
                assert rule.get("ports"), f"{policy['metadata']['name']}: a rule without ports opens every port"
                out |= {(p.get("protocol", "TCP"), p["port"]) for p in rule["ports"]}
        return out


def _in_cidr(ip: str, cidr: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}
KUBE_DNS = {"k8s-app": "kube-dns"}
DNS = {("UDP", 53), ("TCP", 53)}


def test_default_deny_covers_every_pod_of_the_release(helm: Path) -> None:
    objs = render(helm, files=[ci_file("04-chaos-values.yaml")])
    fleet = Fleet(objs)
    deny = [
        p
        for p in fleet.policies
        if not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ]
    assert len(deny) == 1, "one default-deny policy"
    for name, labels in fleet.pods.items():
        assert selects(deny[0]["spec"]["podSelector"], labels), f"default deny misses {name}"
    # Pods of the same namespace that are not this release's (e.g. Istio's waypoint) are left alone.
    assert not selects(
        deny[0]["spec"]["podSelector"],
        {"app.kubernetes.io/instance": "other", "app.kubernetes.io/part-of": "ai-agents"},
    )
    assert not selects(deny[0]["spec"]["podSelector"], {"gateway.networking.k8s.io/gateway-name": f"{P}-waypoint"})


def test_required_flows_are_allowed(helm: Path) -> None:
    fleet = Fleet(render(helm, files=[ci_file("04-chaos-values.yaml")]))
    orchestrator, postgresql = fleet.labels("orchestrator"), fleet.labels("postgresql")
    chaos, test_pod = fleet.labels("chaos-monkey"), fleet.labels("test-health")
    client = {"app": "some-client"}
    for agent_type in AGENT_REPLICAS:
        agent = fleet.labels(f"agent-{agent_type}")
        assert fleet.allowed(agent, orchestrator, 9090), f"{agent_type} -> orchestrator grpc"
        assert fleet.allowed(None, agent, 9091, src_ns="monitoring") is False, "policies check the peer"
    assert fleet.allowed(client, orchestrator, 8080) and fleet.allowed(client, orchestrator, 9090), "clients -> API"
    assert fleet.allowed(orchestrator, postgresql, 5432), "orchestrator -> PostgreSQL"
    for name in ["orchestrator", "chaos-monkey", *(f"agent-{t}" for t in AGENT_REPLICAS)]:
        assert fleet.allowed(PROMETHEUS, fleet.labels(name), 9091, src_ns="monitoring"), f"Prometheus -> {name}"
    for name, labels in fleet.pods.items():
        for protocol in ("UDP", "TCP"):
            assert fleet.allowed(labels, KUBE_DNS, 53, protocol=protocol, dst_ns="kube-system"), f"{name} -> DNS"
    assert fleet.allowed(chaos, None, 443, dst_ip="10.96.0.1"), "chaos monkey -> kube API"
    assert fleet.allowed(chaos, None, 6443, dst_ip="172.18.0.2"), "chaos monkey -> kube API endpoint"
    assert fleet.allowed(orchestrator, None, 443, dst_ip="10.96.0.1"), "orchestrator -> kube API (TokenReview)"
    assert fleet.allowed(test_pod, orchestrator, 8081), "helm test -> orchestrator health"


def test_nothing_else_is_opened(helm: Path) -> None:
    fleet = Fleet(render(helm, files=[ci_file("04-chaos-values.yaml")]))
    orchestrator, postgresql = fleet.labels("orchestrator"), fleet.labels("postgresql")
    chaos, coding, testing = (
        fleet.labels("chaos-monkey"),
        fleet.labels("agent-coding"),
        fleet.labels("agent-testing"),
    )
    tcp = lambda *ports: {("TCP", p) for p in ports}  # noqa: E731
    expected = {
        "orchestrator": (tcp(8080, 9090, 9091, 8081), tcp(5432, 443, 6443) | DNS),
        "postgresql": (tcp(5432), DNS),
        "chaos-monkey": (tcp(9091), tcp(443, 6443) | DNS),
        "test-health": (set(), tcp(8081) | DNS),
        **{f"agent-{t}": (tcp(9091), tcp(9090) | DNS) for t in AGENT_REPLICAS},
    }
    for name, (ingress, egress) in expected.items():
        labels = fleet.labels(name)
        assert fleet.opened(labels, "Ingress") == ingress, f"{name} ingress"
        assert fleet.opened(labels, "Egress") == egress, f"{name} egress"
    denied = [
        (coding, postgresql, 5432, "agents never reach the database"),
        (coding, testing, 9090, "agents do not call each other"),
        (chaos, orchestrator, 9090, "the chaos monkey has no API access"),
        ({"app": "some-client"}, orchestrator, 9091, "clients do not scrape metrics"),
        ({"app": "some-client"}, orchestrator, 8081, "clients do not reach health"),
        ({"app": "some-client"}, coding, 8080, "agents serve no clients"),
        ({"app": "some-client"}, postgresql, 5432, "the database serves only the orchestrator"),
        (orchestrator, coding, 9090, "the orchestrator does not call agents"),
    ]
    for src, dst, port, why in denied:
        assert not fleet.allowed(src, dst, port), why
    # The orchestrator reaches the Kubernetes API (TokenReview) on networkPolicy.kubeApi's ports, whose default
    # CIDR is every address (the API server's is not known at render time); nothing else leaves the cluster.
    assert not fleet.allowed(orchestrator, None, 80, dst_ip="8.8.8.8"), "no egress to the internet"
    assert not fleet.allowed(orchestrator, None, 8443, dst_ip="8.8.8.8"), "no egress to the internet"
    assert not fleet.allowed(coding, None, 443, dst_ip="8.8.8.8"), "no LLM egress with the simulate handler"
    assert not fleet.allowed(PROMETHEUS, coding, 9091, src_ns="default"), "Prometheus only from its namespace"


def test_network_policy_knobs(helm: Path) -> None:
    values = {
        "networkPolicy": {
            "clients": {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "frontend"}}}]},
            "prometheus": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}},
            "llm": {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [8443]},
        },
        "agents": {"security": {"handler": "llm", "llm": {"baseUrl": "https://203.0.113.7:8443/v1"}}},
    }
    fleet = Fleet(render(helm, files=[_values_file(values)]))
    orchestrator = fleet.labels("orchestrator")
    assert fleet.allowed({"app": "web"}, orchestrator, 8080, src_ns="frontend")
    assert not fleet.allowed({"app": "web"}, orchestrator, 8080), "the default same-namespace peer is replaced"
    assert fleet.allowed(PROMETHEUS, orchestrator, 9091, src_ns="observability")
    assert not fleet.allowed(PROMETHEUS, orchestrator, 9091, src_ns="monitoring")
    security, coding = fleet.labels("agent-security"), fleet.labels("agent-coding")
    assert fleet.allowed(security, None, 8443, dst_ip="203.0.113.7"), "llm agents reach the LLM endpoint"
    assert not fleet.allowed(security, None, 8443, dst_ip="198.51.100.1"), "and nothing else"
    assert not fleet.allowed(coding, None, 8443, dst_ip="203.0.113.7"), "simulate agents get no LLM egress"

    assert not by_kind(render(helm, sets={"networkPolicy.enabled": "false"}), "NetworkPolicy")


def test_keda_postgresql_trigger_may_reach_the_database(helm: Path) -> None:
    sets = {"kedaScalers.enabled": "true", "kedaScalers.postgresql.enabled": "true"}
    fleet = Fleet(render(helm, sets=sets))
    keda = {"app.kubernetes.io/name": "keda-operator"}
    assert fleet.allowed(keda, fleet.labels("postgresql"), 5432, src_ns="keda")
    fleet = Fleet(render(helm, sets={"kedaScalers.enabled": "true"}))
    assert not fleet.allowed(keda, fleet.labels("postgresql"), 5432, src_ns="keda")


def test_mesh_allows_hbone(helm: Path) -> None:
    fleet = Fleet(render(helm, sets={"mesh.enabled": "true"}))
    orchestrator, coding = fleet.labels("orchestrator"), fleet.labels("agent-coding")
    waypoint = {"gateway.networking.k8s.io/gateway-name": f"{P}-waypoint"}
    assert fleet.allowed(waypoint, orchestrator, 15008), "HBONE in"
    assert fleet.allowed(coding, waypoint, 15008), "HBONE out"
    assert not fleet.allowed(waypoint, orchestrator, 9091), "still nothing else"
    plain = Fleet(render(helm))
    assert not plain.allowed(waypoint, plain.labels("orchestrator"), 15008), "HBONE only with the mesh"


# ---------------------------------------------------------------------------------------------------------
# Database


def _decode(secret: Obj, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def test_dsn_secret_matches_the_embedded_postgresql(helm: Path) -> None:
    objs = render(helm)
    dsn = urllib.parse.urlsplit(_decode(find(objs, "Secret", f"{P}-database"), "dsn"))
    sts = find(objs, "StatefulSet", f"{P}-postgresql")
    container = pod_spec(sts)["containers"][0]
    env = env_of(container)
    password_ref = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    password = _decode(find(objs, "Secret", password_ref["name"]), password_ref["key"])
    assert password_ref["name"] == f"{P}-postgresql"
    assert dsn.scheme == "postgresql"
    assert urllib.parse.unquote(dsn.username or "") == env["POSTGRES_USER"]["value"]
    assert urllib.parse.unquote(dsn.password or "") == password and len(password) >= 16
    assert dsn.path.lstrip("/") == env["POSTGRES_DB"]["value"]
    service = find(objs, "Service", f"{P}-postgresql")
    assert dsn.hostname == f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    ports = [p for p in service["spec"]["ports"] if p["port"] == dsn.port]
    assert ports, "the DSN's port is a port of the Service"
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named.get(ports[0]["targetPort"], ports[0]["targetPort"]) == 5432
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(sts))
    assert find(objs, "Secret", f"{P}-postgresql")["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_external_database_renders_no_statefulset(helm: Path) -> None:
    scenario = ci_file("03-external-database-values.yaml")
    objs = render(helm, files=[scenario])
    assert not by_kind(objs, "StatefulSet")
    assert not [o for o in objs if o["metadata"]["name"].startswith(f"{P}-postgresql")]
    dsn = yaml.safe_load(scenario.read_text())["store"]["dsn"]
    assert _decode(find(objs, "Secret", f"{P}-database"), "dsn") == dsn
    fleet = Fleet(objs)
    orchestrator = fleet.labels("orchestrator")
    db = {"cnpg.io/cluster": "ai-agents-db"}
    assert fleet.allowed(orchestrator, db, 5432, dst_ns="databases"), "orchestrator -> external database"
    assert not fleet.allowed(orchestrator, db, 5432, dst_ns="elsewhere")

    # An existing Secret: no DSN Secret rendered; the orchestrator reads the given one (postgresql stays on).
    objs = render(helm, sets={"store.existingSecret": "cnpg-app", "store.existingSecretKey": "uri"})
    assert not by_kind(objs, "StatefulSet")
    assert not [s for s in by_kind(objs, "Secret") if s["metadata"]["name"] == f"{P}-database"]
    env = env_of(pod_spec(find(objs, "Deployment", f"{P}-orchestrator"))["containers"][0])
    assert env["AI_AGENTS_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "cnpg-app", "key": "uri"}


def test_orchestrator_serving_processes_reach_the_process(helm: Path) -> None:
    """One serving process by default; the value becomes the setting each pod's `ai-agents orchestrator` reads."""
    for sets, expected in (({}, "1"), ({"orchestrator.servingProcesses": 3}, "3")):
        env = env_of(pod_spec(find(render(helm, sets=sets), "Deployment", f"{P}-orchestrator"))["containers"][0])
        assert env["AI_AGENTS_SERVING_PROCESSES"]["value"] == expected


def test_no_database_fails_naming_the_key(helm: Path) -> None:
    message = render_error(helm, sets={"store.postgresql.enabled": "false"})
    assert "store.dsn" in message and "store.postgresql.enabled" in message


# ---------------------------------------------------------------------------------------------------------
# The values schema


@pytest.mark.parametrize(
    ("sets", "names"),
    [
        pytest.param({"orchestrator.replicass": 3}, ["/orchestrator", "replicass"], id="typo"),
        pytest.param({"agents.coding.replicas": -1}, ["/agents/coding/replicas"], id="negative-replicas"),
        pytest.param({"agents.codng.replicas": 2}, ["/agents", "codng"], id="unknown-agent-type"),
        pytest.param({"orchestrator.replicas": "three"}, ["/orchestrator/replicas", "integer"], id="wrong-type"),
        pytest.param({"agents.testing.handler": "magic"}, ["/agents/testing/handler"], id="unknown-handler"),
        pytest.param({"agentDefaults.simulate.failureRate": 2}, ["/agentDefaults/simulate/failureRate"], id="rate"),
        pytest.param({"networkPolicy.enabeld": "true"}, ["/networkPolicy", "enabeld"], id="nested-typo"),
        pytest.param({"agentIdentity.mode": "local"}, ["/agentIdentity/mode"], id="identity-mode"),
        pytest.param({"xds.enable": "true"}, ["/xds", "enable"], id="xds-typo"),
        pytest.param(
            {"agents.coding.orchestratorChannels": 65}, ["/agents/coding/orchestratorChannels"], id="too-many-channels"
        ),
        pytest.param(
            {"orchestrator.servingProcesses": 0}, ["/orchestrator/servingProcesses", "minimum"], id="no-processes"
        ),
        pytest.param(
            {"xds.bootstrap.xds_servers[0].server_uri": "x:1"},
            ["/xds/bootstrap/xds_servers/0", "channel_creds"],
            id="xds-server-without-creds",
        ),
    ],
)
def test_schema_rejects_bad_values_naming_the_key(helm: Path, sets: dict[str, Any], names: list[str]) -> None:
    message = render_error(helm, sets=sets)
    assert "schema" in message
    for name in names:
        assert name in message, f"{name!r} not named in:\n{message}"


# ---------------------------------------------------------------------------------------------------------
# Subchart switches


def test_keda_owns_agent_replicas(helm: Path) -> None:
    objs = render(helm, sets={"kedaScalers.enabled": "true"})
    agents = agent_deployments(objs)
    assert agents and all("replicas" not in d["spec"] for d in agents.values())
    assert find(objs, "Deployment", f"{P}-orchestrator")["spec"]["replicas"] == ORCHESTRATOR_REPLICAS
    targets = {s["spec"]["scaleTargetRef"]["name"] for s in by_kind(objs, "ScaledObject")}
    assert targets == {d["metadata"]["name"] for d in agents.values()}, "each ScaledObject scales an agent Deployment"
    assert all("replicas" in d["spec"] for d in agent_deployments(render(helm)).values())


def test_keda_and_agent_switches_must_agree(helm: Path) -> None:
    """The umbrella's old per-type switch may stay only where it agrees with global.agents.<type>.enabled
    (test_shared_facts.py covers KEDA and the mesh)."""
    message = render_error(helm, sets={"kedaScalers.enabled": "true", "agents.discovery.enabled": "false"})
    assert "agents.discovery.enabled" in message and "global.agents.discovery.enabled" in message
    sets = {
        "kedaScalers.enabled": "true",
        "agents.discovery.enabled": "false",
        "global.agents.discovery.enabled": "false",
    }
    objs = render(helm, sets=sets)
    assert "discovery" not in agent_deployments(objs)
    assert not [s for s in by_kind(objs, "ScaledObject") if s["spec"]["scaleTargetRef"]["name"].endswith("-discovery")]


def test_mesh_labels(helm: Path) -> None:
    objs = render(helm, sets={"mesh.enabled": "true"})
    for workload in workloads(objs):
        assert pod_labels(workload).get("istio.io/dataplane-mode") == "ambient", workload["metadata"]["name"]
    waypoints = [
        g["metadata"]["name"] for g in by_kind(objs, "Gateway") if g["spec"]["gatewayClassName"] == "istio-waypoint"
    ]
    assert waypoints == [f"{P}-waypoint"]
    for component in ["orchestrator", *(f"agent-{t}" for t in AGENT_REPLICAS)]:
        labels = find(objs, "Service", f"{P}-{component}")["metadata"]["labels"]
        assert labels.get("istio.io/use-waypoint") == waypoints[0], component

    objs = render(helm, sets={"mesh.enabled": "true", "mesh.waypoint.enabled": "false"})
    assert not [s for s in by_kind(objs, "Service") if "istio.io/use-waypoint" in s["metadata"]["labels"]]
    assert all(pod_labels(w).get("istio.io/dataplane-mode") == "ambient" for w in workloads(objs))

    objs = render(helm)
    for obj in objs:
        labels = {**obj["metadata"].get("labels", {}), **(pod_labels(obj) if obj in workloads(objs) else {})}
        assert not [k for k in labels if k.startswith("istio.io/")], obj["metadata"]["name"]


def test_agents_reach_the_orchestrator_through_the_waypoint(helm: Path) -> None:
    """A waypoint sees only traffic addressed to the Service it is attached to: with it on, agents dial that
    Service (the waypoint balances per request); without it, the headless Service (client-side round robin)."""
    headless = f"dns:///{P}-orchestrator-headless.{NAMESPACE}.svc.cluster.local:9090"
    through_waypoint = f"dns:///{P}-orchestrator.{NAMESPACE}.svc.cluster.local:9090"
    cases = [
        ({}, headless),
        ({"mesh.enabled": "true"}, through_waypoint),
        ({"mesh.enabled": "true", "mesh.waypoint.enabled": "false"}, headless),
    ]
    for sets, expected in cases:
        objs = render(helm, sets=sets)
        for agent_type, deployment in agent_deployments(objs).items():
            target = env_of(pod_spec(deployment)["containers"][0])["AI_AGENTS_ORCHESTRATOR_TARGET"]["value"]
            assert target == expected, (sets, agent_type)
        service = find(objs, "Service", expected.removeprefix("dns:///").split(".")[0])
        uses_waypoint = "istio.io/use-waypoint" in service["metadata"].get("labels", {})
        assert uses_waypoint == (expected == through_waypoint), (sets, service["metadata"])
        assert service["spec"].get("clusterIP") != "None" or expected == headless, sets


XDS_BOOTSTRAP = "/etc/ai-agents/xds/bootstrap.json"


def test_xds_switch_gives_agents_the_bootstrap_and_an_xds_target(helm: Path) -> None:
    """`xds.enabled`: every agent gets the bootstrap file, GRPC_XDS_BOOTSTRAP naming it and an `xds:///` target of
    the orchestrator's Service host (the listener name the management server must serve); off, nothing of it."""
    for obj in render(helm):
        assert obj["metadata"]["name"] != f"{P}-xds-bootstrap"
        if obj in workloads([obj]):
            for container in pod_spec(obj)["containers"]:
                assert "GRPC_XDS_BOOTSTRAP" not in env_of(container), obj["metadata"]["name"]

    scenario = yaml.safe_load(ci_file("07-xds-values.yaml").read_text())
    objs = render(helm, files=[ci_file("07-xds-values.yaml")])
    configmap = find(objs, "ConfigMap", f"{P}-xds-bootstrap")
    assert json.loads(configmap["data"]["bootstrap.json"]) == scenario["xds"]["bootstrap"]
    target = f"xds:///{P}-orchestrator.{NAMESPACE}.svc.cluster.local:9090"
    agents = agent_deployments(objs)
    assert set(agents) == set(AGENT_REPLICAS)
    for agent_type, deployment in agents.items():
        spec = pod_spec(deployment)
        env = env_of(spec["containers"][0])
        assert env["AI_AGENTS_ORCHESTRATOR_TARGET"]["value"] == target, agent_type
        assert env["GRPC_XDS_BOOTSTRAP"]["value"] == XDS_BOOTSTRAP, agent_type
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["xds-bootstrap"] == {
            "name": "xds-bootstrap",
            "mountPath": XDS_BOOTSTRAP.rsplit("/", 1)[0],
            "readOnly": True,
        }, agent_type
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["xds-bootstrap"]["configMap"]["name"] == configmap["metadata"]["name"], agent_type
    # The Service the target names exists and is not headless: its host is the one xDS listener for all pods.
    assert find(objs, "Service", f"{P}-orchestrator")["spec"].get("clusterIP") != "None"
    # Only clients of the orchestrator get it.
    orchestrator = find(objs, "Deployment", f"{P}-orchestrator")
    assert "GRPC_XDS_BOOTSTRAP" not in env_of(pod_spec(orchestrator)["containers"][0])
    # The agents' NetworkPolicy lets them reach the management server the bootstrap names.
    fleet = Fleet(objs)
    coding = fleet.labels("agent-coding")
    assert fleet.allowed(coding, {"app": "xds-control-plane"}, 18000, dst_ns="xds-system")
    assert not fleet.allowed(coding, {"app": "xds-control-plane"}, 18000, dst_ns="default"), "only where it runs"


def test_the_runtime_keeps_the_charts_xds_target() -> None:
    """The target the chart renders is one the runtime's channel factory dials as written (no dns:/// rewrite)."""
    from ai_agents.client._channel import resolve_target

    target = f"xds:///{P}-orchestrator.{NAMESPACE}.svc.cluster.local:9090"
    assert resolve_target(target, environ={"GRPC_XDS_BOOTSTRAP": XDS_BOOTSTRAP}) == target


def test_a_new_xds_bootstrap_rolls_the_agents(helm: Path) -> None:
    """gRPC reads the bootstrap once per process: a changed bootstrap must change the agents' pod template."""

    def checksums(server_uri: str) -> set[str]:
        values = yaml.safe_load(ci_file("07-xds-values.yaml").read_text())
        values["xds"]["bootstrap"]["xds_servers"][0]["server_uri"] = server_uri
        agents = agent_deployments(render(helm, files=[_values_file(values)]))
        return {d["spec"]["template"]["metadata"]["annotations"]["checksum/xds-bootstrap"] for d in agents.values()}

    first, second = checksums("xds-a.xds-system.svc:18000"), checksums("xds-b.xds-system.svc:18000")
    assert len(first) == 1 and len(second) == 1, "every agent type carries the same bootstrap"
    assert first != second


def test_xds_without_a_bootstrap_fails_naming_the_key(helm: Path) -> None:
    assert "xds.bootstrap" in render_error(helm, sets={"xds.enabled": "true"})


def test_chaos_monkey(helm: Path) -> None:
    assert not by_kind(render(helm), "Role"), "off by default"
    objs = render(helm, files=[ci_file("04-chaos-values.yaml")])
    roles = by_kind(objs, "Role")
    assert len(roles) == 1
    rules = roles[0]["rules"]
    assert len(rules) == 1
    assert rules[0]["apiGroups"] == [""] and rules[0]["resources"] == ["pods"]
    assert sorted(rules[0]["verbs"]) == ["delete", "get", "list"]
    assert not rules[0].get("resourceNames")
    deployment = find(objs, "Deployment", f"{P}-chaos-monkey")
    spec = pod_spec(deployment)
    binding = by_kind(objs, "RoleBinding")[0]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": roles[0]["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": spec["serviceAccountName"], "namespace": NAMESPACE}
    ]
    assert not by_kind(objs, "ClusterRole")
    assert [b["metadata"]["name"] for b in by_kind(objs, "ClusterRoleBinding")] == [
        f"{P}-orchestrator-{NAMESPACE}-auth-delegator"
    ], "the chaos monkey's RBAC is namespaced; the only cluster binding is the orchestrator's TokenReview"

    container = spec["containers"][0]
    assert container["command"] == ["ai-agents", "chaos-monkey"]
    env = env_of(container)
    scenario = yaml.safe_load(ci_file("04-chaos-values.yaml").read_text())["chaosMonkey"]
    assert live_file(objs)["chaos_monkey"] == {
        "chaos_interval_seconds": scenario["intervalSeconds"],
        "chaos_max_deletions_per_run": scenario["maxDeletionsPerRun"],
        "chaos_dry_run": scenario["dryRun"],
    }
    assert env["AI_AGENTS_CHAOS_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    selector = dict(term.split("=", 1) for term in env["AI_AGENTS_CHAOS_LABEL_SELECTOR"]["value"].split(","))
    victims = {n for n, labels in Fleet(objs).pods.items() if selects({"matchLabels": selector}, labels)}
    assert victims == {d["metadata"]["name"] for d in agent_deployments(objs).values()}, "only this release's agents"

    objs = render(
        helm,
        sets={
            "chaosMonkey.enabled": "true",
            "chaosMonkey.labelSelector": "tier=canary",
            "chaosMonkey.dryRun": "true",
        },
    )
    env = env_of(pod_spec(find(objs, "Deployment", f"{P}-chaos-monkey"))["containers"][0])
    assert env["AI_AGENTS_CHAOS_LABEL_SELECTOR"]["value"] == "tier=canary"
    assert live_file(objs)["chaos_monkey"]["chaos_dry_run"] is True


def test_helm_test_pod_checks_orchestrator_readiness(helm: Path) -> None:
    objs = render(helm)
    pods = [p for p in by_kind(objs, "Pod") if p["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert len(pods) == 1
    container = pods[0]["spec"]["containers"][0]
    assert container["image"] == pod_spec(find(objs, "Deployment", f"{P}-orchestrator"))["containers"][0]["image"]
    command = container["command"]
    assert command[:2] == ["ai-agents", "check-health"]
    url = urllib.parse.urlsplit(command[2])
    service = find(objs, "Service", url.hostname)
    assert url.path == "/readyz"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["health"] == url.port
    assert pods[0]["spec"]["restartPolicy"] == "Never"


# ---------------------------------------------------------------------------------------------------------
# NOTES.txt (Helm 3's `install --dry-run` needs a reachable cluster, so only Helm 4 renders it offline)


def _notes(helm: Path, sets: Mapping[str, str]) -> str:
    charts = charttree.prepared_charts(helm)
    args = [str(helm), "install", RELEASE, str(charts / CHART), "-n", NAMESPACE, "--dry-run=client"]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    env = {**charttree.helm_env(charts.parent / "helm-home"), "KUBECONFIG": os.devnull}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0 and "cluster unreachable" in proc.stderr:
        pytest.skip(f"{helm.parent.name}: install --dry-run needs a cluster")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def test_notes_explain_access_and_warn_about_risky_settings(helm: Path) -> None:
    notes = _notes(helm, {})
    assert f"port-forward svc/{P}-orchestrator 8080:8080 9090:9090" in notes
    assert f"get secret {P}-api-token" in notes
    assert "WARNING" not in notes
    risky = _notes(
        helm,
        {
            "apiToken.enabled": "false",
            "networkPolicy.enabled": "false",
            "chaosMonkey.enabled": "true",
            "agentIdentity.mode": "none",
        },
    )
    for key in ("apiToken.enabled", "networkPolicy.enabled", "chaosMonkey.enabled", "agentIdentity.mode"):
        assert any(line.startswith("WARNING") and key in line for line in risky.splitlines()), key


def test_keda_postgresql_trigger_under_the_mesh_needs_its_admission(helm: Path) -> None:
    """KEDA's postgresql trigger connects from KEDA's namespace: under STRICT it needs the mesh to admit it."""
    sets = {
        "mesh.enabled": True,
        "kedaScalers.enabled": True,
        "kedaScalers.postgresql.enabled": True,
        "mesh.keda.orchestratorTrigger": True,
    }
    message = render_error(helm, sets=sets)
    assert "mesh.keda.postgresqlTrigger" in message
    objs = render(helm, sets={**sets, "mesh.keda.postgresqlTrigger": True})
    db = find(objs, "AuthorizationPolicy", f"{P}-postgresql")
    principals = [p for rule in db["spec"]["rules"] for f in rule["from"] for p in f["source"]["principals"]]
    assert principals == [f"cluster.local/ns/{NAMESPACE}/sa/{P}-orchestrator", "cluster.local/ns/keda/sa/keda-operator"]


def test_keda_queue_trigger_under_the_mesh_needs_its_admission(helm: Path) -> None:
    """KEDA's queue trigger asks the orchestrator's HTTP port from KEDA's namespace: under STRICT the mesh must
    admit it, on that port only (and at the waypoint, GET /v1/queue only)."""
    sets = {"mesh.enabled": True, "kedaScalers.enabled": True}
    message = render_error(helm, sets=sets)
    assert "mesh.keda.orchestratorTrigger" in message and "queueDepth.source=prometheus" in message
    assert render(helm, sets={**sets, "kedaScalers.triggers.queueDepth.source": "prometheus"}), "the other way out"

    objs = render(helm, sets={**sets, "mesh.keda.orchestratorTrigger": True})
    keda = "cluster.local/ns/keda/sa/keda-operator"
    l4 = find(objs, "AuthorizationPolicy", f"{P}-orchestrator")
    keda_rules = [r for r in l4["spec"]["rules"] if keda in r["from"][0]["source"].get("principals", [])]
    assert [r["to"] for r in keda_rules] == [[{"operation": {"ports": ["8080"]}}]]
    l7 = find(objs, "AuthorizationPolicy", f"{P}-orchestrator-l7")
    keda_rules = [r for r in l7["spec"]["rules"] if keda in r["from"][0]["source"].get("principals", [])]
    assert [r["to"] for r in keda_rules] == [
        [{"operation": {"ports": ["8080"], "methods": ["GET"], "paths": ["/v1/queue"]}}]
    ]


def test_keda_queue_trigger_may_reach_the_orchestrator_http_port_only(helm: Path) -> None:
    keda = {"app.kubernetes.io/name": "keda-operator"}
    fleet = Fleet(render(helm, sets={"kedaScalers.enabled": "true"}))
    orchestrator = fleet.labels("orchestrator")
    assert fleet.allowed(keda, orchestrator, 8080, src_ns="keda")
    assert not fleet.allowed(keda, orchestrator, 9090, src_ns="keda"), "the gRPC port stays closed to KEDA"
    assert not fleet.allowed(keda, orchestrator, 8080, src_ns="default"), "only from KEDA's namespace"
    fleet = Fleet(
        render(helm, sets={"kedaScalers.enabled": "true", "kedaScalers.triggers.queueDepth.source": "prometheus"})
    )
    assert not fleet.allowed(keda, fleet.labels("orchestrator"), 8080, src_ns="keda")


def test_keda_queue_trigger_reads_the_api_token_the_orchestrator_checks(helm: Path) -> None:
    objs = render(helm, sets={"kedaScalers.enabled": True})
    auth = find(objs, "TriggerAuthentication", f"{P}-keda-orchestrator")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "token", "name": f"{P}-api-token", "key": "token"}]
    find(objs, "Secret", f"{P}-api-token")

    existing = {
        "kedaScalers.enabled": True,
        "apiToken.existingSecret": "vault-token",
        "apiToken.existingSecretKey": "t",
    }
    message = render_error(helm, sets=existing)
    assert "kedaScalers.orchestrator.tokenSecret" in message and '"vault-token"' in message
    objs = render(
        helm,
        sets={
            **existing,
            "kedaScalers.orchestrator.tokenSecret.name": "vault-token",
            "kedaScalers.orchestrator.tokenSecret.key": "t",
        },
    )
    auth = find(objs, "TriggerAuthentication", f"{P}-keda-orchestrator")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "token", "name": "vault-token", "key": "t"}]

    message = render_error(helm, sets={"kedaScalers.enabled": True, "apiToken.enabled": False})
    assert "apiToken.enabled is false" in message and "queueDepth.source=prometheus" in message


# ---- live configuration (docs/configuration.md) ----------------------------------------------------------

LIVE_DIR = "/etc/ai-agents/live"


def test_the_live_configmap_is_a_file_the_runtime_accepts(helm: Path) -> None:
    from ai_agents.live import parse_live_document

    values = {
        "logLevel": "DEBUG",
        "agentDefaults": {"concurrency": 6, "simulate": {"latencyMs": 75}},
        "agents": {"testing": {"handler": "llm", "llm": {"baseUrl": "https://llm.example/v1", "model": "m-1"}}},
        "liveConfig": {"orchestrator": {"lease_seconds": 45}, "agent_types": {"coding": {"concurrency": 12}}},
    }
    objs = render(helm, files=[_values_file(values)])
    configmap = find(objs, "ConfigMap", f"{P}-live-config")
    text = configmap["data"]["live.yaml"]
    parse_live_document(text)  # raises when the runtime would refuse the file
    live = yaml.safe_load(text)
    assert live["common"] == {"log_level": "DEBUG"}
    assert live["orchestrator"] == {"lease_seconds": 45}
    assert live["agent_types"]["coding"] == {"concurrency": 12, "simulate_latency_ms": 75, "simulate_failure_rate": 0}
    assert live["agent_types"]["testing"] == {"concurrency": 6, "llm_model": "m-1"}
    assert render_error(helm, sets={"liveConfig.agents.concurency": "2"}), "the schema refuses a misspelt key"


def test_live_config_schema_lists_the_runtimes_live_settings() -> None:
    from ai_agents.config import AgentLive, ChaosMonkeyLive, CommonLive, OrchestratorLive

    schema = json.loads((CHART_DIR / "values.schema.json").read_text())["properties"]["liveConfig"]["properties"]
    for section, model in (
        ("common", CommonLive),
        ("orchestrator", OrchestratorLive),
        ("agents", AgentLive),
        ("chaos_monkey", ChaosMonkeyLive),
    ):
        assert set(schema[section]["properties"]) == set(model.model_fields), section
    assert set(schema["agent_types"]["properties"]["coding"]["properties"]) == set(AgentLive.model_fields)


def test_every_runtime_process_mounts_the_live_config_as_a_directory(helm: Path) -> None:
    objs = render(helm, sets={"chaosMonkey.enabled": "true"})
    runtime = runtime_workloads(objs)
    assert {o["metadata"]["name"] for o in runtime} >= {f"{P}-orchestrator", f"{P}-chaos-monkey"}
    for workload in runtime:
        spec = pod_spec(workload)
        container = spec["containers"][0]
        assert env_of(container)["AI_AGENTS_CONFIG_FILE"]["value"] == f"{LIVE_DIR}/live.yaml"
        mounts = [m for m in container["volumeMounts"] if m["name"] == "live-config"]
        # subPath mounts are never updated by the kubelet: the live file must be reached through the directory.
        assert mounts == [{"name": "live-config", "mountPath": LIVE_DIR, "readOnly": True}]
        volume = next(v for v in spec["volumes"] if v["name"] == "live-config")
        assert volume["configMap"]["name"] == f"{P}-live-config"
        # What is live must not be fixed in the pod template as well.
        for name in ("AI_AGENTS_LOG_LEVEL", "AI_AGENTS_CONCURRENCY", "AI_AGENTS_SIMULATE_LATENCY_MS"):
            assert name not in env_of(container), f"{workload['metadata']['name']}: {name} is live"


def _pod_templates(objs: list[Obj]) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o["spec"]["template"] for o in workloads(objs) if "template" in o["spec"]}


def test_changing_only_live_values_rolls_no_pod(helm: Path) -> None:
    base = {"chaosMonkey": {"enabled": True}}
    before = render(helm, files=[_values_file(base)])
    changed = {
        **base,
        "logLevel": "DEBUG",
        "agentDefaults": {"concurrency": 9, "simulate": {"latencyMs": 5, "failureRate": 0.5}},
        "agents": {"coding": {"concurrency": 2}},
        "chaosMonkey": {"enabled": True, "intervalSeconds": 5, "dryRun": True, "maxDeletionsPerRun": 3},
        "liveConfig": {"orchestrator": {"lease_seconds": 60, "default_max_attempts": 5}},
    }
    after = render(helm, files=[_values_file(changed)])
    assert live_file(before) != live_file(after)
    assert _pod_templates(before) == _pod_templates(after), "a live change must not change any pod template"
    for name, template in _pod_templates(after).items():
        annotations = template["metadata"].get("annotations", {})
        assert not [k for k in annotations if "live" in k], f"{name}: no checksum over the live ConfigMap"


def test_restart_needing_database_config_rolls_the_orchestrators(helm: Path) -> None:
    def checksum(objs: list[Obj]) -> str:
        template = find(objs, "Deployment", f"{P}-orchestrator")["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/database"])

    embedded = render(helm)
    external = render(helm, sets={"store.dsn": "postgresql://app@db.example:5432/app"})
    other = render(helm, sets={"store.dsn": "postgresql://app@db2.example:5432/app"})
    # The DSN is read once at start: a new one must roll the orchestrators, and only a new one.
    assert len({checksum(embedded), checksum(external), checksum(other)}) == 3
    assert checksum(render(helm, sets={"logLevel": "DEBUG"})) == checksum(embedded)


def test_notes_warn_about_the_old_agent_type_switches(helm: Path) -> None:
    """An old per-chart switch that agrees with global.agents.<type>.enabled renders, with a deprecation WARNING."""
    notes = _notes(
        helm,
        {
            "global.agents.discovery.enabled": "false",
            "agents.discovery.enabled": "false",
            "kedaScalers.enabled": "true",
            "kedaScalers.agents.discovery.enabled": "false",
        },
    )
    assert "agents.discovery.enabled, kedaScalers.agents.discovery.enabled are deprecated" in notes
    assert "global.agents.<type>.enabled" in notes
