"""The cluster harness: options, the cluster, image, prerequisites and release fixtures, and the final table.

Every cluster test skips with a precise reason when what it needs is absent (no kubeconfig or API, no Istio,
no KEDA, no Prometheus); a skip is reported as a skip in the table at the end, never as a pass.

Environment (as `make ai-agents-test` passes it): E2E_CLUSTER (`existing`: KUBECONFIG as it is; `kind`: create
the kind cluster from hack/kind-config.yaml and load E2E_IMAGE), E2E_RELEASE, E2E_NAMESPACE,
E2E_MONITORING_NAMESPACE, E2E_ISTIO_NAMESPACE, E2E_KEDA_NAMESPACE, E2E_IMAGE, HELM; E2E_POSTGRES_IMAGE
(`registry/repository:tag` of the embedded PostgreSQL: `store.postgresql.image.*`; empty keeps the chart's).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _helm
import pytest
from _api import OrchestratorApi
from _cluster import (
    AGENT_TYPES,
    ClusterUnavailable,
    E2EConfig,
    Prerequisites,
    detect_prerequisites,
    ensure_kind_cluster,
    load_api_client,
    load_image_into_kind,
)
from _kube import Kube, PortForward, random_namespace_name, round_robin_ready_pod

log = logging.getLogger("e2e")

# Installs, scale-downs and KEDA windows take far longer than the suite-wide 300 s of pytest.ini.
CLUSTER_TEST_TIMEOUT_SEC = 1800
E2E_CLIENT_SA = "e2e-client"


# ---- options, markers, timeouts --------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("e2e", "ai-agents cluster harness (tests/e2e)")
    group.addoption(
        "--keep",
        action="store_true",
        default=False,
        help="keep the namespaces and releases the e2e tests create (for debugging)",
    )
    group.addoption(
        "--e2e-installed",
        action="store_true",
        default=False,
        help="test the release E2E_RELEASE already installed in E2E_NAMESPACE (make ai-agents-services) "
        "instead of installing one per test module; destructive modules still install their own",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs a Kubernetes cluster (E2E_CLUSTER)")
    config.addinivalue_line("markers", "offline: runs without a cluster (the harness's own logic)")
    config.addinivalue_line("markers", "needs_istio: needs Istio ambient (istiod, ztunnel, its CRDs)")
    config.addinivalue_line("markers", "needs_keda: needs KEDA (operator and CRDs)")
    config.addinivalue_line("markers", "needs_prometheus: needs a Prometheus (Prometheus Operator CRDs and pods)")
    config.addinivalue_line(
        "markers", "release(**options): the module's own release, with these ReleaseOptions fields (see _helm)"
    )
    config.addinivalue_line(
        "markers", "destructive: the module changes its release (floods, outages): never run on a shared release"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" not in str(item.path).replace("\\", "/"):
            continue
        if item.get_closest_marker("cluster") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(CLUSTER_TEST_TIMEOUT_SEC))


# ---- the final table -------------------------------------------------------------------------------------


@dataclass
class _Row:
    outcome: str = "?"
    reason: str = ""
    notes: list[str] = field(default_factory=list)


# nodeid -> row of the final table (one pytest session per process).
_RESULTS: dict[str, _Row] = {}


def _skip_reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    row = _RESULTS.setdefault(report.nodeid, _Row())
    for name, value in report.user_properties:
        if name == "e2e" and str(value) not in row.notes:
            row.notes.append(str(value))
    if report.skipped:
        row.outcome, row.reason = "skipped", _skip_reason(report)
    elif report.failed:
        message = report.longreprtext.strip().splitlines()
        last = next((line for line in reversed(message) if line.startswith("E ")), message[-1] if message else "")
        phase = "" if report.when == "call" else f"error in {report.when}: "
        row.outcome, row.reason = (
            ("failed" if report.when == "call" else "error"),
            phase + last.removeprefix("E ").strip(),
        )
    elif report.when == "call" and row.outcome == "?":
        row.outcome = "passed"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = {k: v for k, v in _RESULTS.items() if "tests/e2e" in k.replace("\\", "/")}
    if not rows:
        return
    width = max(len(k.split("tests/e2e/", 1)[-1]) for k in rows)
    tr = terminalreporter
    tr.section("ai-agents e2e results")
    tr.write_line(f"{'test':<{width}}  {'outcome':<8}  reason / details")
    for nodeid, row in rows.items():
        name = nodeid.split("tests/e2e/", 1)[-1]
        detail = "; ".join(filter(None, [row.reason, *row.notes]))
        tr.write_line(f"{name:<{width}}  {row.outcome:<8}  {detail}")
    counts: dict[str, int] = {}
    for row in rows.values():
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    tr.write_line(
        "totals: "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        + ("  (a skip is not a pass)" if counts.get("skipped") else "")
    )


@pytest.fixture
def e2e_note(record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    """Add a line to this test's row of the final table (measurements, what was proven)."""

    def note(text: str) -> None:
        log.info("%s", text)
        record_property("e2e", text)

    return note


# ---- cluster, image, prerequisites -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def e2e_config() -> E2EConfig:
    try:
        return E2EConfig.from_env()
    except ValueError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def cluster(e2e_config: E2EConfig) -> Any:
    """The ApiClient of the cluster under test; skips (with the reason) when there is none."""
    try:
        if e2e_config.cluster == "kind":
            ensure_kind_cluster(e2e_config)
        return load_api_client(e2e_config)
    except ClusterUnavailable as exc:
        pytest.skip(f"no cluster: {exc}")


@pytest.fixture(scope="session")
def kube(cluster: Any) -> Kube:
    return Kube(cluster)


@pytest.fixture(scope="session")
def image(e2e_config: E2EConfig, cluster: Any) -> str:
    """The runtime image under test: loaded into kind, or assumed pullable by an existing cluster."""
    if e2e_config.cluster == "kind":
        try:
            load_image_into_kind(e2e_config)
        except ClusterUnavailable as exc:
            pytest.skip(str(exc))
    return e2e_config.image


@pytest.fixture(scope="session")
def prerequisites(cluster: Any, e2e_config: E2EConfig) -> Prerequisites:
    pre = detect_prerequisites(cluster, e2e_config)
    log.info(
        "prerequisites: istio=%s envoy=%s keda=%s prometheus=%s",
        pre.istio_missing or "ok",
        pre.envoy_missing or "ok",
        pre.keda_missing or "ok",
        pre.prometheus_missing or "ok",
    )
    return pre


@pytest.fixture(scope="session")
def need(prerequisites: Prerequisites) -> Callable[..., None]:
    """`need("istio", "keda", "prometheus")`: skip with the precise reason of the first one missing."""

    def check(*what: str) -> None:
        for name in what:
            reason = getattr(prerequisites, f"{name}_missing")
            if reason:
                pytest.skip(reason)

    return check


@pytest.fixture(scope="session")
def helm_bin(e2e_config: E2EConfig) -> str:
    if not Path(e2e_config.helm).is_file():
        pytest.skip(f"no helm binary at {e2e_config.helm} (set HELM or run `make tools`)")
    return e2e_config.helm


@pytest.fixture(scope="session")
def chart_workspace(helm_bin: str, cluster: Any) -> Iterator[_helm.ChartWorkspace]:
    """A temporary copy of charts/ with the umbrella's dependencies built (the repository stays untouched)."""
    workspace = _helm.ChartWorkspace(helm_bin)
    yield workspace
    workspace.close()


# ---- namespaces and releases -----------------------------------------------------------------------------


@dataclass
class Release:
    """One installed ai-agents release and what the tests need to talk to it."""

    name: str
    namespace: str
    kube: Kube
    cfg: E2EConfig
    options: _helm.ReleaseOptions
    objects: list[dict[str, Any]]
    helm: str
    chart: Path | None

    @property
    def prefix(self) -> str:
        return self.name

    def selector(self, name: str) -> str:
        return f"app.kubernetes.io/instance={self.name},app.kubernetes.io/name={name}"

    @property
    def client_labels(self) -> dict[str, str]:
        """Labels of a probe pod that calls the release: in the mesh with it, else STRICT mTLS refuses its plaintext."""
        return {"istio.io/dataplane-mode": "ambient"} if self.options.mesh else {}

    def agent_selector(self, agent_type: str) -> str:
        return f"{self.selector('agent')},ai-agents.io/agent-type={agent_type}"

    def deployment(self, agent_type: str) -> str:
        return f"{self.prefix}-agent-{agent_type}"

    @property
    def enabled_agent_types(self) -> list[str]:
        names = {o["metadata"]["name"] for o in _helm.by_kind(self.objects, "Deployment")}
        return [t for t in AGENT_TYPES if self.deployment(t) in names]

    @property
    def workloads(self) -> set[str]:
        return {o["metadata"]["name"] for o in self.objects if o.get("kind") in ("Deployment", "StatefulSet")}

    def token(self) -> str | None:
        secrets = {o["metadata"]["name"] for o in _helm.by_kind(self.objects, "Secret")}
        name = f"{self.prefix}-api-token"
        if name not in secrets:
            return None
        return self.kube.secret_value(self.namespace, name, "token")

    def refresh_objects(self) -> None:
        self.objects = _helm.manifest(self.helm, release=self.name, namespace=self.namespace)

    def wait_ready(self, timeout_sec: float = 600) -> None:
        self.kube.wait_workloads_ready(
            self.namespace, self.workloads, selector=f"app.kubernetes.io/instance={self.name}", timeout_sec=timeout_sec
        )

    @contextlib.contextmanager
    def orchestrator_api(self, *, exclude: Callable[[str], bool] | None = None) -> Iterator[OrchestratorApi]:
        """The HTTP API through a port-forward that spreads connections over the ready orchestrator pods."""
        pick = round_robin_ready_pod(self.kube, self.namespace, self.selector("orchestrator"), exclude=exclude)
        with PortForward(self.kube, self.namespace, pick, 8080) as pf:
            yield OrchestratorApi(pf.url, self.token())

    @contextlib.contextmanager
    def orchestrator_forward(self) -> Iterator[PortForward]:
        pick = round_robin_ready_pod(self.kube, self.namespace, self.selector("orchestrator"))
        with PortForward(self.kube, self.namespace, pick, 8080) as pf:
            yield pf

    def upgrade(self, options: _helm.ReleaseOptions, timeout_sec: float = 600) -> None:
        assert self.chart is not None, "cannot upgrade a release this run did not install"
        values = _helm.release_values(self.cfg, self.namespace, options)
        _helm.install(self.helm, self.chart, release=self.name, namespace=self.namespace, values=values)
        self.options = options
        self.refresh_objects()
        self.wait_ready(timeout_sec)


@pytest.fixture(scope="module")
def e2e_namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Factory: create a random `pytest-<hex>` namespace labelled type=e2e; deleted (and awaited) on teardown."""
    created: list[str] = []

    def make(labels: dict[str, str] | None = None) -> str:
        name = random_namespace_name()
        kube.create_namespace(name, labels)
        created.append(name)
        return name

    yield make
    if request.config.getoption("--keep"):
        log.warning("--keep: leaving namespaces %s", ", ".join(created))
        return
    for name in reversed(created):
        kube.delete_namespace(name)


@pytest.fixture(scope="module")
def release_factory(
    kube: Kube,
    e2e_config: E2EConfig,
    image: str,
    helm_bin: str,
    chart_workspace: _helm.ChartWorkspace,
    prerequisites: Prerequisites,
    e2e_namespace: Callable[..., str],
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Release]]:
    """Factory: install the umbrella with the e2e values into a fresh namespace; uninstalled on teardown."""
    installed: list[Release] = []

    def make(**overrides: Any) -> Release:
        options = _helm.options_for(prerequisites, mesh_clients=(E2E_CLIENT_SA,), **overrides)
        namespace = e2e_namespace()
        _ensure_service_account(kube, namespace, E2E_CLIENT_SA)
        values = _helm.release_values(e2e_config, namespace, options)
        try:
            _helm.install(
                helm_bin, chart_workspace.umbrella, release=e2e_config.release, namespace=namespace, values=values
            )
        except _helm.HelmError as exc:
            # Name the workloads that did not become ready, not only helm's "context deadline exceeded".
            lagging = [
                s
                for s in kube.rollout_states(namespace, f"app.kubernetes.io/instance={e2e_config.release}")
                if not s.ready_for_use
            ]
            raise AssertionError(f"helm install into {namespace} failed: {exc}\nnot ready: {lagging}") from None
        release = Release(
            e2e_config.release,
            namespace,
            kube,
            e2e_config,
            options,
            _helm.manifest(helm_bin, release=e2e_config.release, namespace=namespace),
            helm_bin,
            chart_workspace.umbrella,
        )
        installed.append(release)
        release.wait_ready()
        return release

    yield make
    if request.config.getoption("--keep"):
        log.warning("--keep: leaving releases %s", ", ".join(f"{r.namespace}/{r.name}" for r in installed))
        return
    for release in reversed(installed):
        with contextlib.suppress(_helm.HelmError):
            _helm.uninstall(helm_bin, release=release.name, namespace=release.namespace)


def _ensure_service_account(kube: Kube, namespace: str, name: str) -> None:
    """The identity of in-cluster probe pods; listed in mesh.authorization.orchestratorClients."""
    from kubernetes import client

    kube.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name, labels={"type": "e2e"}))
    )


@pytest.fixture(scope="module")
def release(
    request: pytest.FixtureRequest,
    release_factory: Callable[..., Release],
    kube: Kube,
    e2e_config: E2EConfig,
    helm_bin: str,
) -> Release:
    """The module's release: options from its `release` marker, installed for it unless --e2e-installed lets a
    module that is neither `destructive` nor has options of its own use the installed one."""
    marker = request.node.get_closest_marker("release")
    overrides = dict(marker.kwargs) if marker else {}
    destructive = request.node.get_closest_marker("destructive") is not None
    if request.config.getoption("--e2e-installed") and not destructive and not overrides:
        if not kube.namespace_exists(e2e_config.namespace):
            pytest.skip(f"--e2e-installed: namespace {e2e_config.namespace} does not exist")
        objects = _helm.manifest(helm_bin, release=e2e_config.release, namespace=e2e_config.namespace)
        rel = Release(
            e2e_config.release, e2e_config.namespace, kube, e2e_config, _helm.ReleaseOptions(), objects, helm_bin, None
        )
        rel.wait_ready()
        return rel
    return release_factory(**overrides)
