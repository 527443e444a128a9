"""Static tier: every chart x every ci/*-values.yaml (plus defaults), rendered with Helm 3 and Helm 4.

What passing proves, per scenario:
- both helms render it (umbrella included: its file:// subcharts are built into a private copy first);
- every object matches its schema: built-in kinds the strict Kubernetes schema (k8sschema), custom
  resources the upstream CRD in CRD_SCHEMA_DIR (crdschema) plus the strict ObjectMeta schema for their
  metadata (CRDs leave it open); a kind known to neither is an error;
- Helm 3 and Helm 4 produce the same objects;
- no two objects share group/kind/namespace/name;
- every object (and every pod template) carries `app.kubernetes.io/managed-by: Helm` and
  `app.kubernetes.io/part-of: ai-agents`;
- no selector matches on `helm.sh/chart` or a version label (they change on upgrade, and a workload's
  selector is immutable).

Rendering uses the release `ai-agents` in namespace `ai-agents`, Capabilities.KubeVersion pinned to the
schemas' Kubernetes version, and, when the CRD directory exists, the CRDs' group/versions and kinds as
Capabilities.APIVersions, so templates gated on them render and get validated too.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import charttree
import crdschema
import k8sschema
import pytest
from charttree import NAMESPACE, Scenario
from rendering import HELMS, render_once, rendered

SCENARIOS = charttree.scenarios()

# Labels whose value changes with every chart or app version: never part of a selector.
VERSION_LABELS = {"helm.sh/chart", "app.kubernetes.io/version", "chart", "version", "heritage"}
REQUIRED_LABELS = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "ai-agents"}

# Cluster-scoped kinds (built-in and from the platform CRDs): they never take the release namespace.
CLUSTER_SCOPED = {
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "APIService",
    "IngressClass",
    "RuntimeClass",
    "CSIDriver",
    "VolumeAttachment",
    "GatewayClass",
    "ClusterTriggerAuthentication",
    "ClusterCloudEventSource",
}


def _ids(scenarios: list[Scenario]) -> list[str]:
    return [s.id for s in scenarios]


def _group(obj: dict[str, Any]) -> str:
    return str(obj.get("apiVersion", "")).rpartition("/")[0]


def _ident(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """(group, kind, namespace, name), the namespace defaulted as the API server would."""
    meta = obj.get("metadata") or {}
    kind = str(obj.get("kind", ""))
    namespace = "" if kind in CLUSTER_SCOPED else str(meta.get("namespace") or NAMESPACE)
    return _group(obj), kind, namespace, str(meta.get("name", ""))


def _label(obj: dict[str, Any]) -> str:
    group, kind, namespace, name = _ident(obj)
    return f"{kind}{'.' + group if group else ''} {namespace + '/' if namespace else ''}{name}"


@pytest.mark.parametrize("helm_name", HELMS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=_ids(SCENARIOS))
def test_renders(scenario: Scenario, helm_name: str) -> None:
    objects = rendered(scenario, helm_name)
    assert objects, f"{scenario.id} renders no object with {helm_name}"
    malformed = [
        o for o in objects if not (o.get("apiVersion") and o.get("kind") and o.get("metadata", {}).get("name"))
    ]
    assert not malformed, f"documents without apiVersion/kind/metadata.name: {malformed}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_ids(SCENARIOS))
def test_objects_match_schemas(scenario: Scenario) -> None:
    problems: list[str] = []
    custom: list[dict[str, Any]] = []
    for obj in rendered(scenario):
        if k8sschema.is_builtin(obj["apiVersion"], obj["kind"]):
            problems += [f"{_label(obj)}: {e}" for e in k8sschema.errors(obj)]
        else:
            custom.append(obj)
    crd_dir = crdschema.schema_dir()
    if custom and not crd_dir.is_dir():
        assert not problems, "\n".join(problems)
        pytest.skip(
            f"{len(custom)} custom resources not validated: CRD directory {crd_dir} not found (set CRD_SCHEMA_DIR)"
        )
    for obj in custom:
        problems += [f"{_label(obj)}: {e}" for e in k8sschema.metadata_errors(obj)]
        if not crdschema.covers(obj):
            problems.append(
                f"{_label(obj)}: {obj['apiVersion']} {obj['kind']} is neither a built-in kind of Kubernetes "
                f"{k8sschema.KUBERNETES_VERSION} nor defined by a CRD under {crd_dir}"
            )
            continue
        try:
            crdschema.validate(obj)
        except crdschema.CRDSchemaError as err:
            problems.append(str(err))
    assert not problems, f"{scenario.id}: {len(problems)} schema violations:\n" + "\n".join(problems)


def _leaves(node: Any, path: str = "") -> dict[str, Any]:
    """Flatten an object to {path: scalar} so that renders can be compared field by field."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, f"{path}.{key}" if path else str(key)))
        return out or {path: {}}
    if isinstance(node, list):
        out = {}
        for i, value in enumerate(node):
            out.update(_leaves(value, f"{path}[{i}]"))
        return out or {path: []}
    return {path: node}


def _by_ident(objects: tuple[dict[str, Any], ...]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {_ident(o): _leaves(o) for o in objects}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_ids(SCENARIOS))
def test_helm3_and_helm4_render_the_same_objects(scenario: Scenario) -> None:
    """Field by field; fields that differ between two renders by the same helm (generated passwords and
    checksums of them) are left out, and listed in the failure message if anything else differs."""
    h4 = _by_ident(rendered(scenario, "helm4"))
    h4_again = _by_ident(render_once("helm4", scenario, attempt=1))
    h3 = _by_ident(rendered(scenario, "helm3"))
    volatile = {
        (key, path)
        for key in h4.keys() & h4_again.keys()
        for path in h4[key].keys() | h4_again[key].keys()
        if h4[key].get(path) != h4_again[key].get(path)
    }
    report = [f"only with helm 3: {k}" for k in sorted(h3.keys() - h4.keys())]
    report += [f"only with helm 4: {k}" for k in sorted(h4.keys() - h3.keys())]
    for key in sorted(h3.keys() & h4.keys()):
        for path in sorted(h3[key].keys() | h4[key].keys()):
            if (key, path) not in volatile and h3[key].get(path, "<absent>") != h4[key].get(path, "<absent>"):
                report.append(
                    f"{key} {path}: helm3={h3[key].get(path, '<absent>')!r} helm4={h4[key].get(path, '<absent>')!r}"
                )
    assert not report, (
        f"{scenario.id}:\n" + "\n".join(report) + f"\n(ignored as random on every render: {sorted(volatile)})"
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_ids(SCENARIOS))
def test_object_identities_are_unique(scenario: Scenario) -> None:
    counts = Counter(_ident(o) for o in rendered(scenario))
    duplicates = {key: n for key, n in counts.items() if n > 1}
    assert not duplicates, (
        f"{scenario.id}: objects rendered more than once (group, kind, namespace, name): {duplicates}"
    )


def _pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Pod templates of the built-in workloads (CronJob nests one inside its job template)."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template")
    return (
        [template]
        if isinstance(template, dict)
        and obj.get("kind")
        in {
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
            "ReplicationController",
        }
        else []
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_ids(SCENARIOS))
def test_every_object_carries_the_common_labels(scenario: Scenario) -> None:
    problems = []
    for obj in rendered(scenario):
        targets = [("", obj.get("metadata") or {})]
        targets += [(" pod template", t.get("metadata") or {}) for t in _pod_templates(obj)]
        for where, meta in targets:
            labels = meta.get("labels") or {}
            for key, value in REQUIRED_LABELS.items():
                if key == "app.kubernetes.io/managed-by" and where:
                    continue  # pods are not managed by Helm; only part-of is required on them
                if labels.get(key) != value:
                    problems.append(f"{_label(obj)}{where}: label {key}={labels.get(key)!r}, expected {value!r}")
    assert not problems, f"{scenario.id}:\n" + "\n".join(problems)


def _selector_label_keys(node: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, label key) for every label key that a selector anywhere in the object matches on.

    A selector is any field named `selector` or `*Selector` (workloads, Services, PDBs, NetworkPolicies,
    Istio policies, ServiceMonitors, topology spread and affinity terms, Gateway listeners). Its keys
    are read from matchLabels, matchExpressions and matchLabelKeys, or taken as a plain map (Service).
    """
    found: list[tuple[str, str]] = []
    if isinstance(node, list):
        for i, item in enumerate(node):
            found += _selector_label_keys(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if (key == "selector" or str(key).endswith("Selector")) and isinstance(value, dict):
                structured = {"matchLabels", "matchExpressions", "matchLabelKeys", "mismatchLabelKeys"}
                if structured & value.keys():
                    found += [(here, k) for k in (value.get("matchLabels") or {})]
                    found += [(here, e.get("key", "")) for e in value.get("matchExpressions") or []]
                elif all(isinstance(v, str) for v in value.values()):
                    found += [(here, k) for k in value]
            if key in ("matchLabelKeys", "mismatchLabelKeys") and isinstance(value, list):
                found += [(here, str(k)) for k in value]
            found += _selector_label_keys(value, here)
    return found


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_ids(SCENARIOS))
def test_no_selector_uses_chart_or_version_labels(scenario: Scenario) -> None:
    problems = [
        f"{_label(obj)}: {path} matches on {key}"
        for obj in rendered(scenario)
        for path, key in _selector_label_keys(obj.get("spec"), "spec")
        if key in VERSION_LABELS
    ]
    assert not problems, f"{scenario.id}:\n" + "\n".join(problems)


def test_scenarios_cover_every_chart() -> None:
    """Each chart has at least one ci/*-values.yaml scenario besides its defaults (chart-testing's input).
    A library chart is left out: it has no values to vary and renders nothing of its own."""
    missing = [c for c in charttree.chart_names() if not charttree.is_library(c) and not charttree.ci_values(c)]
    assert not missing, f"charts without ci/*-values.yaml: {missing}"


def test_selector_walker_finds_version_labels() -> None:
    """The policy check itself: it sees matchLabels, matchExpressions, plain maps and nested selectors."""
    spec = {
        "selector": {"matchLabels": {"helm.sh/chart": "x"}, "matchExpressions": [{"key": "version"}]},
        "template": {
            "spec": {
                "topologySpreadConstraints": [
                    {
                        "labelSelector": {"matchLabels": {"a": "b"}},
                        "matchLabelKeys": ["app.kubernetes.io/version"],
                    }
                ]
            }
        },
        "podSelector": {"app.kubernetes.io/version": "1"},
    }
    keys = {k for _, k in _selector_label_keys(spec)}
    assert keys == {"helm.sh/chart", "version", "a", "app.kubernetes.io/version"}


def test_schema_validators_reject_unknown_fields() -> None:
    """The validators are strict: a misspelt field fails both the built-in and the CRD path."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"prots": []}}
    assert any("prots" in e for e in k8sschema.errors(bad))
    if not crdschema.schema_dir().is_dir():
        pytest.skip(f"CRD directory {crdschema.schema_dir()} not found (set CRD_SCHEMA_DIR)")
    so = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "s"},
        "spec": {"scaleTargetRef": {"name": "d"}, "triggers": [], "minReplicaCont": 1},
    }
    with pytest.raises(crdschema.CRDSchemaError, match="minReplicaCont"):
        crdschema.validate(so)
    so["metadata"] = {"name": "s", "lables": {}}
    assert any("lables" in e for e in k8sschema.metadata_errors(so))
