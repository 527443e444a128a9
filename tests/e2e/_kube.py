"""Kubernetes helpers: namespaces labelled type=e2e, rollout readiness, probe pods, port-forwarding."""

from __future__ import annotations

import base64
import contextlib
import logging
import secrets
import select
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from _waits import RolloutState, deployment_state, statefulset_state, wait_for_rollouts, wait_gone
from waits import eventually

log = logging.getLogger("e2e.kube")

E2E_LABEL = {"type": "e2e"}


def random_namespace_name(prefix: str = "pytest") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _is_not_found(exc: BaseException) -> bool:
    return getattr(exc, "status", None) == 404


class Kube:
    """The typed API groups on one ApiClient."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.authz = client.AuthorizationV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)

    # ---- namespaces ----------------------------------------------------------------------------------------

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        from kubernetes import client

        body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={**E2E_LABEL, **(labels or {})}))
        self.core.create_namespace(body)
        log.info("created namespace %s", name)

    def namespace_exists(self, name: str) -> bool:
        try:
            self.core.read_namespace(name)
        except Exception as exc:
            if _is_not_found(exc):
                return False
            raise
        return True

    def delete_namespace(self, name: str, *, timeout_sec: float = 300) -> None:
        """Delete a test's namespace and wait until it is gone. Its pods go without their grace period: the test is
        over, their shutdown is not under test here, and waiting it out (up to a minute per agent) would hold the
        next test back. The namespace goes first, so that no controller replaces a pod meanwhile."""
        try:
            self.core.delete_namespace(name)
            self.core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        except Exception as exc:
            if not _is_not_found(exc):
                raise
        wait_gone(lambda: self.namespace_exists(name), timeout_sec=timeout_sec, what=f"namespace {name}")

    # ---- workloads -----------------------------------------------------------------------------------------

    def rollout_states(self, namespace: str, selector: str) -> list[RolloutState]:
        deployments = self.apps.list_namespaced_deployment(namespace, label_selector=selector).items
        statefulsets = self.apps.list_namespaced_stateful_set(namespace, label_selector=selector).items
        return [deployment_state(d) for d in deployments] + [statefulset_state(s) for s in statefulsets]

    def wait_workloads_ready(self, namespace: str, names: set[str], *, selector: str, timeout_sec: float) -> None:
        wait_for_rollouts(
            lambda: self.rollout_states(namespace, selector),
            expected=names,
            timeout_sec=timeout_sec,
            what=f"workloads in {namespace}",
        )

    def deployment_replicas(self, namespace: str, name: str) -> tuple[int, int]:
        """(spec.replicas, status.readyReplicas) of a Deployment."""
        dep = self.apps.read_namespaced_deployment(name, namespace)
        return (dep.spec.replicas or 0, dep.status.ready_replicas or 0)

    def ready_pods(self, namespace: str, selector: str) -> list[Any]:
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        return [p for p in pods if pod_ready(p)]

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        data = self.core.read_namespaced_secret(name, namespace).data or {}
        if key not in data:
            raise KeyError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()

    # ---- probe pods ----------------------------------------------------------------------------------------

    def run_pod(
        self,
        namespace: str,
        name: str,
        *,
        image: str,
        command: list[str],
        env: dict[str, str] | None = None,
        env_from_secret: dict[str, tuple[str, str]] | None = None,
        service_account: str | None = None,
        labels: dict[str, str] | None = None,
        timeout_sec: float = 180,
    ) -> tuple[str, str]:
        """Run a one-shot pod to completion; return (phase, logs). The pod is deleted afterwards."""
        from kubernetes import client

        env_list = [client.V1EnvVar(name=k, value=v) for k, v in (env or {}).items()]
        for var, (secret, key) in (env_from_secret or {}).items():
            env_list.append(
                client.V1EnvVar(
                    name=var,
                    value_from=client.V1EnvVarSource(secret_key_ref=client.V1SecretKeySelector(name=secret, key=key)),
                )
            )
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(
                name=name, labels={"app.kubernetes.io/part-of": "ai-agents-e2e", **(labels or {})}
            ),
            spec=client.V1PodSpec(
                restart_policy="Never",
                service_account_name=service_account,
                security_context=client.V1PodSecurityContext(
                    run_as_non_root=True, run_as_user=10001, run_as_group=10001
                ),
                containers=[
                    client.V1Container(
                        name="probe",
                        image=image,
                        image_pull_policy="IfNotPresent",
                        command=command,
                        env=env_list,
                        security_context=client.V1SecurityContext(
                            allow_privilege_escalation=False, capabilities=client.V1Capabilities(drop=["ALL"])
                        ),
                        resources=client.V1ResourceRequirements(
                            requests={"cpu": "10m", "memory": "32Mi"}, limits={"cpu": "500m", "memory": "256Mi"}
                        ),
                    )
                ],
            ),
        )
        self.core.create_namespaced_pod(namespace, pod)
        try:
            phase = eventually(
                lambda: self.core.read_namespaced_pod(name, namespace).status.phase,
                lambda p: p in ("Succeeded", "Failed"),
                timeout_sec=timeout_sec,
                expectation=f"probe pod {namespace}/{name} to finish",
                failed=lambda _p: self._pod_stuck_reason(namespace, name),
            )
            logs = self.core.read_namespaced_pod_log(name, namespace)
            return phase, logs
        finally:
            with contextlib.suppress(Exception):
                self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

    def _pod_stuck_reason(self, namespace: str, name: str) -> str | None:
        pod = self.core.read_namespaced_pod(name, namespace)
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting if status.state else None
            if waiting and waiting.reason in (
                "ErrImagePull",
                "ImagePullBackOff",
                "InvalidImageName",
                "CreateContainerConfigError",
            ):
                return f"container {status.name} is {waiting.reason}: {waiting.message}"
        return None

    def can_i(
        self, namespace: str, service_account: str, *, verb: str, resource: str, target_namespace: str, group: str = ""
    ) -> bool:
        """SubjectAccessReview for a ServiceAccount of `namespace`."""
        from kubernetes import client

        review = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=f"system:serviceaccount:{namespace}:{service_account}",
                groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
                resource_attributes=client.V1ResourceAttributes(
                    namespace=target_namespace, verb=verb, resource=resource, group=group
                ),
            )
        )
        return bool(self.authz.create_subject_access_review(review).status.allowed)


def pod_ready(pod: Any) -> bool:
    return (
        pod.status.phase == "Running"
        and pod.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
    )


# ---- port-forwarding -------------------------------------------------------------------------------------


@dataclass
class ForwardStats:
    connections: int = 0
    errors: list[str] = field(default_factory=list)
    pods_used: dict[str, int] = field(default_factory=dict)


class PortForward:
    """A local listener on 127.0.0.1 that forwards each connection to a ready pod's port, like
    `kubectl port-forward`, through the API server (kubernetes.stream.portforward).

    `pick_pod()` is asked for a pod name on every new connection, so a forward to a Service's pods survives the
    deletion of one of them: the next connection goes to a pod that is still ready.
    """

    def __init__(self, kube: Kube, namespace: str, pick_pod: Callable[[], str], port: int) -> None:
        self._kube = kube
        self._namespace = namespace
        self._pick_pod = pick_pod
        self._remote_port = port
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.5)
        self.local_port: int = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.stats = ForwardStats()
        self._acceptor = threading.Thread(target=self._accept_loop, name="port-forward-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def __enter__(self) -> PortForward:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.close()
        self._acceptor.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=2)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _addr = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), name="port-forward-conn", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        from kubernetes import client
        from kubernetes.stream import portforward

        pf = None
        try:
            pod = self._pick_pod()
            self.stats.connections += 1
            self.stats.pods_used[pod] = self.stats.pods_used.get(pod, 0) + 1
            # An ApiClient of its own: portforward() swaps the client's `request` for a websocket call while it
            # connects, so on a shared client a concurrent call (another connection, a pod lookup) would take
            # the wrong path or leave the swap in place ("Missing required parameter `ports`").
            own = client.CoreV1Api(client.ApiClient(self._kube.api_client.configuration))
            pf = portforward(
                own.connect_get_namespaced_pod_portforward,
                pod,
                self._namespace,
                ports=str(self._remote_port),
            )
            remote = pf.socket(self._remote_port)
            remote.setblocking(True)
            _pump(conn, remote, self._stop)
            if error := pf.error(self._remote_port):
                self.stats.errors.append(f"{pod}: {error}")
        except Exception as exc:  # recorded; the client sees a closed connection and may retry
            self.stats.errors.append(f"{type(exc).__name__}: {exc}")
            log.info("port-forward connection failed: %s", exc)
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            if pf is not None:
                with contextlib.suppress(Exception):
                    pf.close()


def _pump(a: socket.socket, b: Any, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [a, b]
    while not stop.is_set():
        readable, _, broken = select.select(sockets, [], sockets, 0.5)
        if broken:
            return
        for src in readable:
            data = src.recv(65536)
            if not data:
                return
            (b if src is a else a).sendall(data)


def round_robin_ready_pod(
    kube: Kube, namespace: str, selector: str, *, exclude: Callable[[str], bool] | None = None
) -> Callable[[], str]:
    """A `pick_pod` for PortForward: the ready pods of `selector` in turn (what a Service would pick from)."""
    counter = {"n": 0}

    def pick() -> str:
        names = sorted(p.metadata.name for p in kube.ready_pods(namespace, selector))
        if exclude is not None:
            names = [n for n in names if not exclude(n)]
        if not names:
            raise RuntimeError(f"no ready pod matches {selector} in {namespace}")
        counter["n"] += 1
        return names[counter["n"] % len(names)]

    return pick


@contextlib.contextmanager
def forward(kube: Kube, namespace: str, selector: str, port: int) -> Iterator[PortForward]:
    with PortForward(kube, namespace, round_robin_ready_pod(kube, namespace, selector), port) as pf:
        yield pf
