"""helm through its CLI: a temporary copy of the charts, dependency build, install, manifests, uninstall."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from _cluster import CHARTS_DIR, E2E_VALUES, E2EConfig, Prerequisites

log = logging.getLogger("e2e.helm")


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


def run_helm(helm: str, *args: str, timeout: float = 900) -> str:
    cmd = [helm, *args]
    log.info("$ %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.strip()[-4000:]}")
    return proc.stdout


def prepare_charts(helm: str, workdir: Path) -> Path:
    """Copy charts/ to `workdir` (the repository's charts/*/charts stay untouched) and build the umbrella's deps."""
    target = workdir / "charts"
    shutil.copytree(CHARTS_DIR, target, ignore=shutil.ignore_patterns("charts", "Chart.lock", "*.tgz"))
    umbrella = target / "ai-agents"
    run_helm(helm, "dependency", "build", str(umbrella), timeout=300)
    return umbrella


@dataclass(frozen=True)
class ReleaseOptions:
    """Per-module choices on top of the e2e values file."""

    mesh: bool = False
    # Waypoint and ingress gateway (Envoy) on top of the L4 mesh; off where the cluster has no Envoy.
    mesh_l7: bool = False
    observability: bool = False
    keda: bool = False
    chaos_monkey: bool = False
    chaos_interval_seconds: int = 30
    mesh_fault_injection: bool = False
    mesh_clients: tuple[str, ...] = ()
    # Spans to the Jaeger collector in cfg.jaeger_namespace (tracing.otlpEndpoint and the egress it needs).
    tracing: bool = False
    extra_set: tuple[str, ...] = ()
    # `--set-string`: values the schemas want as strings (quantities, thresholds) that look like numbers
    extra_set_string: tuple[str, ...] = ()
    # `--set-json`: (key, value) pairs, for whole blocks such as a chart's own defaults
    extra_json: tuple[tuple[str, Any], ...] = ()


def release_values(cfg: E2EConfig, namespace: str, opts: ReleaseOptions) -> list[str]:
    """helm arguments: the e2e values file, the image under test, and the subcharts the cluster can take.

    A subchart whose CRDs are absent is turned off (the install would fail otherwise); the tests that need it
    skip with the prerequisite's reason.
    """
    prometheus_url = f"http://{cfg.prometheus_service}.{cfg.monitoring_namespace}.svc:9090"
    args = ["--values", str(E2E_VALUES)]
    sets = [
        f"image.repository={cfg.image_repository}",
        f"mesh.enabled={str(opts.mesh).lower()}",
        f"observability.enabled={str(opts.observability).lower()}",
        f"kedaScalers.enabled={str(opts.keda).lower()}",
        f"kedaScalers.prometheus.serverAddress={prometheus_url}",
        f"chaosMonkey.enabled={str(opts.chaos_monkey).lower()}",
    ]
    if cfg.image_tag:
        sets.append(f"image.tag={cfg.image_tag}")
    if opts.chaos_monkey:
        sets.append(f"chaosMonkey.intervalSeconds={opts.chaos_interval_seconds}")
    if opts.mesh:
        sets.append(f"mesh.prometheus.namespace={cfg.monitoring_namespace}")
        sets.append(f"mesh.prometheus.serviceAccount={cfg.prometheus_service_account}")
        if not opts.mesh_l7:
            sets += ["mesh.waypoint.enabled=false", "mesh.gateway.enabled=false"]
        if opts.mesh_fault_injection:
            sets.append("mesh.chaos.enabled=true")
        if opts.keda:
            # KEDA's namespace is in the mesh on the test cluster; its queue trigger asks the orchestrator.
            sets.append("mesh.keda.orchestratorTrigger=true")
        if opts.mesh_clients:
            sets.append("mesh.authorization.orchestratorClients={" + ",".join(opts.mesh_clients) + "}")
    if opts.tracing:
        sets.append(f"tracing.otlpEndpoint=http://jaeger-collector.{cfg.jaeger_namespace}.svc:4317")
    for key, value in cfg.postgres_image_values.items():
        sets.append(f"store.postgresql.image.{key}={value}")
    sets.extend(opts.extra_set)
    for item in sets:
        args += ["--set", item]
    for item in opts.extra_set_string:
        args += ["--set-string", item]
    json_sets: dict[str, Any] = {
        "networkPolicy.prometheus.namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": cfg.monitoring_namespace}
        },
        "networkPolicy.keda.namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cfg.keda_namespace}},
    }
    if opts.tracing:
        otlp_egress = [
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cfg.jaeger_namespace}},
                        "podSelector": {"matchLabels": {"app.kubernetes.io/instance": "jaeger"}},
                    }
                ],
                "ports": [{"port": 4317, "protocol": "TCP"}],
            }
        ]
        json_sets["networkPolicy.orchestrator.extraEgress"] = otlp_egress
        json_sets["networkPolicy.agents.extraEgress"] = otlp_egress
    json_sets.update(opts.extra_json)
    for key, value in json_sets.items():
        args += ["--set-json", f"{key}={json.dumps(value, separators=(',', ':'))}"]
    return args


def options_for(pre: Prerequisites, **overrides: Any) -> ReleaseOptions:
    """Subcharts on exactly where the cluster has their CRDs and controllers."""
    base = {
        "mesh": pre.istio_missing is None,
        "mesh_l7": pre.envoy_missing is None,
        "observability": pre.prometheus_operator_missing is None,
        "keda": pre.keda_missing is None,
    }
    base.update(overrides)
    return ReleaseOptions(**base)


def install(helm: str, chart: Path, *, release: str, namespace: str, values: list[str], timeout: str = "10m") -> None:
    run_helm(
        helm,
        "upgrade",
        "--install",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        timeout,
        *values,
        timeout=1200,
    )


def uninstall(helm: str, *, release: str, namespace: str) -> None:
    """Remove the release's objects (its cluster-scoped ones too) without waiting for its pods to stop: the
    namespace's deletion, which follows, ends them and is awaited."""
    run_helm(helm, "uninstall", release, "--namespace", namespace, "--timeout", "5m", timeout=600)


def manifest(helm: str, *, release: str, namespace: str) -> list[dict[str, Any]]:
    """The objects of the installed release, as rendered (queries carry the real namespace)."""
    out = run_helm(helm, "get", "manifest", release, "--namespace", namespace, timeout=120)
    return [d for d in yaml.safe_load_all(out) if d]


def template(helm: str, chart: Path, *, release: str, namespace: str, values: list[str]) -> list[dict[str, Any]]:
    out = run_helm(helm, "template", release, str(chart), "--namespace", namespace, *values, timeout=300)
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


class ChartWorkspace:
    """A temporary copy of charts/ with the umbrella's dependencies built; removed by `close()`."""

    def __init__(self, helm: str) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="ai-agents-e2e-charts-"))
        self.umbrella = prepare_charts(helm, self._dir)

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
