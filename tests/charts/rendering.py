"""Each chart scenario rendered once per helm, as the static tier validates it: Kubernetes version pinned to the
schemas', the upstream CRDs' group/versions offered as Capabilities.APIVersions."""

from __future__ import annotations

import functools
from typing import Any

import charttree
import crdschema
import helmrender
import k8sschema
import pytest
from charttree import NAMESPACE, RELEASE, Scenario

HELMS = ("helm3", "helm4")


@functools.cache
def _crd_api_versions() -> tuple[str, ...]:
    """group/version and group/version/Kind of every CRD under CRD_SCHEMA_DIR (empty when it is absent)."""
    if not crdschema.schema_dir().is_dir():
        return ()
    # crdschema indexes the CRDs once per session; its keys are (group, version, kind).
    keys = crdschema._index(crdschema.schema_dir()).keys()
    return tuple(sorted({f"{g}/{v}" for g, v, _ in keys} | {f"{g}/{v}/{k}" for g, v, k in keys}))


@functools.cache
def render_once(helm_name: str, scenario: Scenario, attempt: int = 0) -> tuple[dict[str, Any], ...]:
    """Render once per (helm, scenario); `attempt` > 0 renders again, to tell random fields apart."""
    helm = helmrender.helm_binaries()[helm_name]
    charts_root = charttree.prepared_charts(helm)
    extra = ["--kube-version", f"v{k8sschema.KUBERNETES_VERSION}"]
    for api in _crd_api_versions():
        extra += ["--api-versions", api]
    objects = helmrender.render(
        helm,
        charts_root / scenario.chart,
        release=RELEASE,
        namespace=NAMESPACE,
        extra_args=[*scenario.values_args(charts_root), *extra],
    )
    return tuple(objects)


def rendered(scenario: Scenario, helm_name: str | None = None) -> tuple[dict[str, Any], ...]:
    """The scenario's objects from the given helm, or from the newest helm that is installed."""
    if scenario.library:
        pytest.skip(f"charts/{scenario.chart} is {charttree.LIBRARY_SKIP}")
    available = helmrender.helm_binaries()
    if helm_name is None:
        helm_name = next((h for h in reversed(HELMS) if h in available), None)
    if helm_name not in available:
        pytest.skip(f"{helm_name or 'helm'} is not installed under .tools/bin: run `make tools`")
    return render_once(helm_name, scenario)
