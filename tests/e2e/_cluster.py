"""Where the e2e suite runs: settings from the environment, the cluster (kind or existing), its prerequisites."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("e2e.cluster")

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"
CHARTS_DIR = REPO_ROOT / "charts"
UMBRELLA = CHARTS_DIR / "ai-agents"
E2E_VALUES = UMBRELLA / "ci" / "05-e2e-fast-scaling-values.yaml"
KIND_CONFIG = REPO_ROOT / "hack" / "kind-config.yaml"
AGENT_TYPES = ("coding", "testing", "security", "compliance", "documentation", "discovery")


def _versions() -> dict[str, str]:
    values: dict[str, str] = {}
    path = REPO_ROOT / "versions.env"
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


JAEGER_SELECTOR = "app.kubernetes.io/instance=jaeger"


@dataclass(frozen=True)
class E2EConfig:
    """The settings `make ai-agents-test` passes (E2E_*, HELM), with the same defaults as mk/platform.mk."""

    cluster: str = "existing"
    release: str = "ai-agents"
    namespace: str = "ai-agents"
    monitoring_namespace: str = "monitoring"
    istio_namespace: str = "istio-system"
    keda_namespace: str = "keda"
    # Where Jaeger runs (make ambient-up puts it beside istiod): its collector takes OTLP on 4317.
    jaeger_namespace: str = "istio-system"
    image: str = "ai-agents/runtime:0.1.0"
    helm: str = str(TOOLS_BIN / "h4" / "helm")
    kind: str = str(TOOLS_BIN / "kind")
    kind_cluster_name: str = "ai-agents"
    kind_node_image: str = ""
    kubeconfig: str | None = None
    prometheus_service: str = "kube-prometheus-stack-prometheus"
    # The ServiceAccount of the Prometheus pods: the mesh's metrics policy admits its SPIFFE identity.
    prometheus_service_account: str = "kube-prometheus-stack-prometheus"
    # Why the cluster's mesh has no Envoy (waypoints, ingress gateway), if it has none; empty: it has.
    no_envoy_reason: str = ""
    istioctl: str = "istioctl"
    # Image of the embedded PostgreSQL (`registry/repository:tag`); empty keeps the chart's default.
    postgres_image: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> E2EConfig:
        env = dict(os.environ if env is None else env)
        versions = _versions()
        default_helm = next(
            (str(p) for p in (TOOLS_BIN / "h4" / "helm", TOOLS_BIN / "h3" / "helm") if p.is_file()),
            shutil.which("helm") or str(TOOLS_BIN / "h4" / "helm"),
        )
        cluster = env.get("E2E_CLUSTER", "existing")
        if cluster not in ("kind", "existing"):
            raise ValueError(f"E2E_CLUSTER must be `kind` or `existing`, not {cluster!r}")
        return cls(
            cluster=cluster,
            release=env.get("E2E_RELEASE", "ai-agents"),
            namespace=env.get("E2E_NAMESPACE", "ai-agents"),
            monitoring_namespace=env.get("E2E_MONITORING_NAMESPACE", "monitoring"),
            istio_namespace=env.get("E2E_ISTIO_NAMESPACE", "istio-system"),
            keda_namespace=env.get("E2E_KEDA_NAMESPACE", "keda"),
            jaeger_namespace=env.get("E2E_JAEGER_NAMESPACE", env.get("E2E_ISTIO_NAMESPACE", "istio-system")),
            image=env.get("E2E_IMAGE", "ai-agents/runtime:0.1.0"),
            helm=env.get("HELM") or default_helm,
            kind=env.get("KIND") or str(TOOLS_BIN / "kind"),
            kind_cluster_name=env.get("KIND_CLUSTER_NAME", "ai-agents"),
            kind_node_image=env.get("KIND_NODE_IMAGE", versions.get("KIND_NODE_IMAGE", "")),
            kubeconfig=env.get("KUBECONFIG") or None,
            prometheus_service=env.get("E2E_PROMETHEUS_SERVICE", "kube-prometheus-stack-prometheus"),
            prometheus_service_account=env.get("E2E_PROMETHEUS_SERVICE_ACCOUNT", "kube-prometheus-stack-prometheus"),
            no_envoy_reason=env.get("E2E_NO_ENVOY", ""),
            istioctl=env.get("E2E_ISTIOCTL") or shutil.which("istioctl") or "istioctl",
            postgres_image=env.get("E2E_POSTGRES_IMAGE", ""),
        )

    @property
    def image_repository(self) -> str:
        repo, sep, tag = self.image.rpartition(":")
        return repo if sep and "/" not in tag else self.image

    @property
    def image_tag(self) -> str:
        _repo, sep, tag = self.image.rpartition(":")
        return tag if sep and "/" not in tag else ""

    @property
    def postgres_image_values(self) -> dict[str, str]:
        """`store.postgresql.image.*` for E2E_POSTGRES_IMAGE (empty: none, the chart's default image)."""
        if not self.postgres_image:
            return {}
        ref, sep, tag = self.postgres_image.rpartition(":")
        if not sep or "/" in tag:
            ref, tag = self.postgres_image, "latest"
        first, _, rest = ref.partition("/")
        registry = first if rest and ("." in first or ":" in first or first == "localhost") else ""
        repository = rest if registry else ref
        return {"registry": registry, "repository": repository, "tag": tag}


class ClusterUnavailable(Exception):
    """No cluster to test against; the message is the skip reason."""


def _run(cmd: list[str], *, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    log.info("$ %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def ensure_kind_cluster(cfg: E2EConfig) -> None:
    """E2E_CLUSTER=kind: create the cluster from hack/kind-config.yaml (or reuse it) and export its kubeconfig."""
    if not Path(cfg.kind).is_file() and shutil.which(cfg.kind) is None:
        raise ClusterUnavailable(f"E2E_CLUSTER=kind but no kind binary at {cfg.kind}: run `make kind`")
    if shutil.which("docker") is None:
        raise ClusterUnavailable("E2E_CLUSTER=kind needs Docker, and no `docker` is on the PATH")
    if _run(["docker", "info"], timeout=30, check=False).returncode != 0:
        raise ClusterUnavailable("E2E_CLUSTER=kind needs a running Docker engine; `docker info` failed")
    clusters = _run([cfg.kind, "get", "clusters"], timeout=60).stdout.split()
    if cfg.kind_cluster_name in clusters:
        log.info("reusing kind cluster %s", cfg.kind_cluster_name)
    else:
        cmd = [
            cfg.kind,
            "create",
            "cluster",
            "--name",
            cfg.kind_cluster_name,
            "--config",
            str(KIND_CONFIG),
            "--wait",
            "5m",
        ]
        if cfg.kind_node_image:
            cmd += ["--image", cfg.kind_node_image]
        _run(cmd, timeout=900)
    _run([cfg.kind, "export", "kubeconfig", "--name", cfg.kind_cluster_name], timeout=60)


def load_image_into_kind(cfg: E2EConfig) -> None:
    """Load the locally built runtime image into the kind nodes (`make image` builds it)."""
    if _run(["docker", "image", "inspect", cfg.image], timeout=60, check=False).returncode != 0:
        raise ClusterUnavailable(f"image {cfg.image} is not in the local Docker: run `make image IMAGE={cfg.image}`")
    _run([cfg.kind, "load", "docker-image", cfg.image, "--name", cfg.kind_cluster_name], timeout=900)


def load_api_client(cfg: E2EConfig) -> Any:
    """A kubernetes ApiClient for KUBECONFIG (or the default kubeconfig); ClusterUnavailable says why not."""
    from kubernetes import client, config

    kubeconfig = cfg.kubeconfig or os.path.expanduser("~/.kube/config")
    paths = [p for p in kubeconfig.split(os.pathsep) if p]
    if not any(Path(p).is_file() for p in paths):
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
            api_client = client.ApiClient()
        else:
            raise ClusterUnavailable(
                f"no kubeconfig: KUBECONFIG={cfg.kubeconfig!r} and {kubeconfig} do not exist "
                "(E2E_CLUSTER=existing uses the current kube-context; E2E_CLUSTER=kind creates one)"
            )
    else:
        try:
            api_client = config.new_client_from_config(config_file=paths[0])
        except Exception as exc:  # malformed kubeconfig or no current context
            raise ClusterUnavailable(f"kubeconfig {paths[0]} is unusable: {exc}") from exc
    try:
        version = client.VersionApi(api_client).get_code(_request_timeout=10)
    except Exception as exc:
        host = api_client.configuration.host
        raise ClusterUnavailable(f"Kubernetes API {host} unreachable: {type(exc).__name__}: {exc}") from exc
    log.info("connected to Kubernetes %s at %s", version.git_version, api_client.configuration.host)
    return api_client


# ---- prerequisites ---------------------------------------------------------------------------------------


@dataclass
class Prerequisites:
    """What the cluster offers; each `*_missing` is None when present, else the precise skip reason."""

    istio_missing: str | None = "not checked"
    # Envoy-based parts of the mesh (waypoints, the ingress gateway) on top of the L4 mesh.
    envoy_missing: str | None = "not checked"
    keda_missing: str | None = "not checked"
    prometheus_missing: str | None = "not checked"
    prometheus_operator_missing: str | None = "not checked"
    gateway_api_missing: str | None = "not checked"
    metrics_api_missing: str | None = "not checked"
    jaeger_missing: str | None = "not checked"
    details: dict[str, str] = field(default_factory=dict)


def _crds(api_client: Any) -> set[str]:
    from kubernetes import client

    return {c.metadata.name for c in client.ApiextensionsV1Api(api_client).list_custom_resource_definition().items}


def _ready_pods(api_client: Any, namespace: str, selector: str) -> list[str]:
    from kubernetes import client

    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p.metadata.name
        for p in pods
        if p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
    ]


def detect_prerequisites(api_client: Any, cfg: E2EConfig) -> Prerequisites:
    """Look for Istio ambient, KEDA, the Prometheus Operator and a Prometheus, Gateway API and the metrics API."""
    from kubernetes import client

    pre = Prerequisites()
    crds = _crds(api_client)

    istio_crds = {
        "peerauthentications.security.istio.io",
        "authorizationpolicies.security.istio.io",
        "destinationrules.networking.istio.io",
        "telemetries.telemetry.istio.io",
    }
    gateway_crds = {
        "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
        "grpcroutes.gateway.networking.k8s.io",
    }
    keda_crds = {"scaledobjects.keda.sh", "triggerauthentications.keda.sh"}
    prom_crds = {
        "servicemonitors.monitoring.coreos.com",
        "podmonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    }

    missing = sorted(gateway_crds - crds)
    pre.gateway_api_missing = f"Gateway API CRDs missing: {', '.join(missing)}" if missing else None

    missing = sorted(istio_crds - crds)
    if missing:
        pre.istio_missing = f"no Istio: CRDs missing: {', '.join(missing)} (make ambient-up)"
    elif not _ready_pods(api_client, cfg.istio_namespace, "app=istiod"):
        pre.istio_missing = f"no ready istiod pod (label app=istiod) in namespace {cfg.istio_namespace}"
    elif not _ready_pods(api_client, cfg.istio_namespace, "app=ztunnel"):
        pre.istio_missing = f"no ready ztunnel pod (label app=ztunnel) in {cfg.istio_namespace}: Istio is not ambient"
    elif pre.gateway_api_missing:
        pre.istio_missing = pre.gateway_api_missing
    else:
        pre.istio_missing = None
    pre.envoy_missing = pre.istio_missing or (
        f"no Envoy in this mesh: {cfg.no_envoy_reason}" if cfg.no_envoy_reason else None
    )

    missing = sorted(keda_crds - crds)
    if missing:
        pre.keda_missing = f"no KEDA: CRDs missing: {', '.join(missing)} (make keda-install)"
    elif not _ready_pods(api_client, cfg.keda_namespace, "app=keda-operator"):
        pre.keda_missing = f"no ready keda-operator pod (label app=keda-operator) in namespace {cfg.keda_namespace}"
    else:
        pre.keda_missing = None

    missing = sorted(prom_crds - crds)
    pre.prometheus_operator_missing = (
        f"no Prometheus Operator: CRDs missing: {', '.join(missing)} (make ambient-up)" if missing else None
    )
    if pre.prometheus_operator_missing:
        pre.prometheus_missing = pre.prometheus_operator_missing
    elif not _ready_pods(api_client, cfg.monitoring_namespace, "app.kubernetes.io/name=prometheus"):
        pre.prometheus_missing = (
            f"no ready Prometheus pod (label app.kubernetes.io/name=prometheus) in namespace {cfg.monitoring_namespace}"
        )
    else:
        pre.prometheus_missing = None

    if _ready_pods(api_client, cfg.jaeger_namespace, JAEGER_SELECTOR):
        pre.jaeger_missing = None
    else:
        pre.jaeger_missing = f"no ready Jaeger pod (label {JAEGER_SELECTOR}) in namespace {cfg.jaeger_namespace}"

    try:
        client.ApiregistrationV1Api(api_client).read_api_service("v1beta1.metrics.k8s.io")
        pre.metrics_api_missing = None
    except Exception as exc:
        pre.metrics_api_missing = f"no metrics API (v1beta1.metrics.k8s.io): {getattr(exc, 'reason', exc)}"
    return pre
