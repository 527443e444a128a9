"""Smoke test of a Kubernetes cluster itself, first of all the offline one (`make offline-cluster-up`).

Proves what the harness's cluster tests take for granted: a pod runs, a Service routes to it, cluster DNS
resolves the Service, a Deployment scaled by a HorizontalPodAutoscaler (CPU, from metrics-server) changes
its pod count, and KEDA (operator + metrics adapter) scales a Deployment through the external metrics API
(that test skips where KEDA is not installed). Everything runs in a throwaway namespace, removed at the end.

Environment: E2E_KUBECONFIG (or KUBECONFIG) names the cluster; without one, or when its API does not answer,
every test skips with that reason. E2E_SMOKE_IMAGE is the busybox image to run (default: the one
hack/offline-cluster/images.sh builds and up.sh imports, pinned in hack/offline-cluster/versions.env); it
needs sh, httpd, nc and nslookup (clients use nc: Debian's static busybox wget segfaults).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
VERSIONS = REPO / "hack" / "offline-cluster" / "versions.env"


def _pinned(key: str) -> str | None:
    if not VERSIONS.exists():
        return None
    for line in VERSIONS.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None


IMAGE = os.environ.get("E2E_SMOKE_IMAGE") or _pinned("OFFLINE_BUSYBOX_IMAGE") or "busybox:1.36"


def _wait(what: str, timeout: float, check: Callable[[], Any], interval: float = 2.0) -> Any:
    """Polls check() until it returns something truthy; fails with the last value seen after timeout."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f}s (last seen: {last!r})")


# ---- the cluster ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api() -> Any:
    """An ApiClient for E2E_KUBECONFIG/KUBECONFIG; skips (saying why) when there is no reachable cluster."""
    kubeconfig = os.environ.get("E2E_KUBECONFIG") or os.environ.get("KUBECONFIG")
    if not kubeconfig:
        pytest.skip(
            "no cluster: neither E2E_KUBECONFIG nor KUBECONFIG is set "
            "(`make offline-cluster-up` prints the offline cluster's KUBECONFIG path)"
        )
    path = kubeconfig.split(os.pathsep)[0]
    if not Path(path).is_file():
        pytest.skip(f"no cluster: kubeconfig {path} does not exist")
    try:
        from kubernetes import client, config
    except ImportError as exc:  # pragma: no cover - the dev requirements install it
        pytest.skip(f"kubernetes Python client missing: {exc}")
    api_client = config.new_client_from_config(config_file=path)
    try:
        version = client.VersionApi(api_client).get_code(_request_timeout=10)
    except Exception as exc:
        pytest.skip(f"no cluster: the API server of {path} did not answer: {type(exc).__name__}: {exc}"[:300])
    print(f"cluster {api_client.configuration.host}: Kubernetes {version.git_version}")
    return api_client


@pytest.fixture(scope="module")
def core(api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def apps(api: Any) -> Any:
    from kubernetes import client

    return client.AppsV1Api(api)


@pytest.fixture(scope="module")
def namespace(core: Any) -> Iterator[str]:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "e2e-smoke"}}})
    # The ServiceAccount controller creates `default` shortly after; pods cannot be admitted before that.
    _wait(
        "default ServiceAccount",
        60,
        lambda: any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items),
    )
    yield name
    core.delete_namespace(name, grace_period_seconds=0)


def _container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", script],
        **extra,
    }


def _deployment(name: str, container: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    """A Deployment of `replicas` pods running `container`, selected by app.kubernetes.io/name=<name>."""
    labels = {"app.kubernetes.io/name": name}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [container]},
            },
        },
    }


def _http_get(host: str) -> str:
    """A shell line printing the body of http://host/ (busybox nc: HTTP/1.0, the server closes)."""
    return f"printf 'GET / HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | nc -w 3 {host} 80"


def _run_pod(core: Any, namespace: str, name: str, script: str, timeout: float = 120) -> str:
    """Runs a one-shot pod to completion; returns its log; fails with the log if it did not succeed."""
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "containers": [_container(name, script)],
            },
        },
    )
    phase = _wait(
        f"pod {name} finished",
        timeout,
        lambda: (
            core.read_namespaced_pod(name, namespace).status.phase in ("Succeeded", "Failed")
            and core.read_namespaced_pod(name, namespace).status.phase
        ),
    )
    logs = core.read_namespaced_pod_log(name, namespace)
    assert phase == "Succeeded", f"pod {name} {phase}; log:\n{logs}"
    return logs


# ---- the workload: an HTTP server behind a Service ---------------------------------------------------------


@pytest.fixture(scope="module")
def web(core: Any, apps: Any, namespace: str) -> dict[str, str]:
    """A Deployment of one busybox httpd answering `hello-offline <pod name>`, and its Service on port 80."""
    labels = {"app.kubernetes.io/name": "web"}
    script = 'mkdir -p /www && echo "hello-offline $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www'
    apps.create_namespaced_deployment(
        namespace,
        _deployment(
            "web",
            _container(
                "web",
                script,
                ports=[{"containerPort": 8080, "name": "http"}],
                readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 2},
            ),
        ),
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
    )
    _wait(
        "deployment web available",
        180,
        lambda: (apps.read_namespaced_deployment_status("web", namespace).status.available_replicas or 0) >= 1,
    )
    pod = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=web").items[0]
    svc = core.read_namespaced_service("web", namespace)
    return {"pod": pod.metadata.name, "pod_ip": pod.status.pod_ip, "cluster_ip": svc.spec.cluster_ip}


def test_pod_runs(core: Any, namespace: str, web: dict[str, str]) -> None:
    pod = core.read_namespaced_pod(web["pod"], namespace)
    assert pod.status.phase == "Running"
    assert all(cs.ready for cs in pod.status.container_statuses), pod.status.container_statuses
    assert pod.status.pod_ip, "a running pod has an IP from the CNI"


def test_service_routes_to_pod(core: Any, namespace: str, web: dict[str, str]) -> None:
    # By the Service's cluster IP: kube-proxy's rules send it to the pod behind the Service.
    logs = _run_pod(
        core,
        namespace,
        "svc-client",
        f"for i in $(seq 30); do {_http_get(web['cluster_ip'])} | grep hello-offline && exit 0; sleep 1; done; exit 1",
    )
    assert f"hello-offline {web['pod']}" in logs


def test_dns_resolves_service(core: Any, namespace: str, web: dict[str, str]) -> None:
    fqdn = f"web.{namespace}.svc.cluster.local"
    logs = _run_pod(
        core,
        namespace,
        "dns-client",
        f"for i in $(seq 30); do nslookup {fqdn} && break; sleep 1; done; {_http_get('web')} && {_http_get(fqdn)}",
    )
    assert web["cluster_ip"] in logs, f"{fqdn} did not resolve to {web['cluster_ip']}:\n{logs}"
    # The short name works too: the pod's resolv.conf searches its namespace.
    assert logs.count(f"hello-offline {web['pod']}") == 2, logs


# ---- autoscaling ------------------------------------------------------------------------------------------


def test_hpa_changes_pod_count(api: Any, core: Any, apps: Any, namespace: str) -> None:
    from kubernetes import client

    try:
        client.CustomObjectsApi(api).list_cluster_custom_object(
            "metrics.k8s.io", "v1beta1", "nodes", _request_timeout=10
        )
    except Exception as exc:
        pytest.skip(f"no resource metrics: metrics.k8s.io is not served (metrics-server missing?): {exc}"[:300])

    # One pod spinning a CPU at its 100m limit against a 20m request: 500% of the request, far above the
    # 50% target, so the HPA must scale up to its maximum.
    apps.create_namespaced_deployment(
        namespace,
        _deployment(
            "burn",
            _container(
                "burn", "while :; do :; done", resources={"requests": {"cpu": "20m"}, "limits": {"cpu": "100m"}}
            ),
        ),
    )
    client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "metadata": {"name": "burn"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "burn"},
                "minReplicas": 1,
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                    }
                ],
                "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}},
            },
        },
    )
    _wait(
        "deployment burn available",
        120,
        lambda: (apps.read_namespaced_deployment_status("burn", namespace).status.available_replicas or 0) >= 1,
    )

    def running() -> int:
        pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=burn").items
        return sum(1 for p in pods if p.status.phase == "Running")

    assert running() == 1
    hpa = client.AutoscalingV2Api(api)
    count = _wait("HPA scaled burn above 1 pod", 300, lambda: running() > 1 and running(), interval=5)
    status = hpa.read_namespaced_horizontal_pod_autoscaler_status("burn", namespace).status
    print(f"HPA burn: current {status.current_replicas}, desired {status.desired_replicas}, running pods {count}")
    assert status.desired_replicas > 1


def test_keda_scales_deployment(api: Any, core: Any, apps: Any, namespace: str) -> None:
    """KEDA's operator and metrics adapter scale a Deployment through the external metrics API.

    The trigger is KEDA's in-cluster `kubernetes-workload` scaler (one replica per pod matching a selector), so
    nothing outside the cluster is needed: three marker pods must bring the target from 1 to 3 replicas.
    """
    from kubernetes import client

    try:
        client.ApiextensionsV1Api(api).read_custom_resource_definition("scaledobjects.keda.sh", _request_timeout=10)
        client.CustomObjectsApi(api).get_api_resources("external.metrics.k8s.io", "v1beta1", _request_timeout=10)
    except Exception as exc:
        pytest.skip(f"no KEDA: ScaledObject CRD or external.metrics.k8s.io not served: {exc}"[:300])

    for name, replicas in (("keda-target", 1), ("keda-marker", 3)):
        apps.create_namespaced_deployment(namespace, _deployment(name, _container(name, "exec sleep 3600"), replicas))
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "keda.sh",
        "v1alpha1",
        namespace,
        "scaledobjects",
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "keda-target"},
            "spec": {
                "scaleTargetRef": {"name": "keda-target"},
                "minReplicaCount": 1,
                "maxReplicaCount": 5,
                "pollingInterval": 5,
                "advanced": {
                    "horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}}}
                },
                "triggers": [
                    {
                        "type": "kubernetes-workload",
                        "metadata": {"podSelector": "app.kubernetes.io/name=keda-marker", "value": "1"},
                    }
                ],
            },
        },
    )

    def target_pods() -> int:
        pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=keda-target").items
        return sum(1 for p in pods if p.status.phase == "Running")

    count = _wait("KEDA scaled keda-target to 3 pods", 300, lambda: target_pods() >= 3 and target_pods(), interval=5)
    hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("keda-hpa-keda-target", namespace)
    print(f"KEDA HPA keda-hpa-keda-target: desired {hpa.status.desired_replicas}, running pods {count}")
    assert hpa.status.desired_replicas == 3
