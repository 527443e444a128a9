"""charts/observability: monitors, SLO rules and dashboards, rendered with Helm 3 and Helm 4.

What passing proves:
- every ci/ scenario lints, and every custom resource it renders validates against the upstream
  Prometheus Operator CRD (a misspelt field is caught);
- the ServiceMonitor/PodMonitor select exactly the umbrella's orchestrator and agent Services/pods on
  their `metrics` port, and their relabelings (applied here with Prometheus' semantics) drop the headless
  duplicates and yield `agent_type`, `pod` and `namespace`;
- the rule file passes `promtool check rules`, every alert has severity/summary/description, thresholds
  follow the values, and every series a rule reads is in the contract (or recorded by the chart);
- every dashboard JSON parses, has a unique uid, the datasource and namespace variables, exactly the
  panels the rollout document names (plus the few listed with a reason), PromQL that promtool accepts and
  only contract series;
- both gates (serviceMonitor, podMonitor) and the other switches work, and the schema rejects typos
  with a message naming the key.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import charttree
import crdschema
import pytest
import yaml
from helmrender import CHARTS_DIR, HelmError, by_kind, chart_dir, find, render, render_chart, run_helm
from promql import contract_metric_names, is_known_runtime_series, metric_names

CHART = CHARTS_DIR / "observability"
RELEASE = "ai-agents"
NAMESPACE = "ai-agents"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
DASHBOARD_FILES = sorted((CHART / "dashboards").glob("*.json"))
CONTRACTS = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"
AGENT_TYPES = ("coding", "testing", "security", "compliance", "documentation", "discovery")
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}

# The rollout document's "Monitoring & Dashboards" section: dashboard title -> its panels.
ROLLOUT_DASHBOARDS = {
    "AI Agents Overview": {"Active AI agents", "Total tasks processed", "Task success rate", "Response time (P95)"},
    "AI Agents Scaling": {
        "Agent replicas by type",
        "CPU usage by agent type",
        "Memory usage by agent type",
        "Scaling events",
    },
    "AI Agents Performance": {
        "Request rate by agent type",
        "Response time distribution",
        "Error rate by agent type",
        "Queue length by agent type",
    },
    "AI Agents Resilience": {
        "Circuit breaker status",
        "Retry attempts",
        "Fault injection impact",
        "Service health status",
    },
    "AI Agents Observability": {
        "Distributed tracing",
        "Log volume by agent type",
        "Error logs by severity",
        "Metrics collection rate",
    },
}

# Panels beyond the rollout document's, each with the reason it exists.
EXTRA_PANELS = {
    "AI Agents Resilience": {
        # "Retry attempts" shows gRPC's own retries; what is repeated after they give up is another signal.
        "Repeated calls and redelivered tasks",
        # The mesh's own account of mTLS and traffic, from ztunnel (L4): data with no waypoint, unlike the
        # fault-injection panel's L7 series.
        "Mesh connections by caller and mTLS",
        "Mesh traffic by workload",
    },
}

# Series Prometheus itself attaches to every target: not runtime metrics, always present.
PROMETHEUS_TARGET_SERIES = {"up", "scrape_samples_scraped"}


# --- rendering -----------------------------------------------------------------------------------------


def chart(
    helm: Path, *values_files: Path, release: str = RELEASE, namespace: str = NAMESPACE, **sets: Any
) -> list[dict[str, Any]]:
    """Render the chart; keyword `a__b=1` means `--set a.b=1`."""
    return render_chart(helm, CHART, *values_files, release=release, namespace=namespace, **sets)


def chart_with(helm: Path, values: dict[str, Any], tmp_path: Path, **kwargs: Any) -> list[dict[str, Any]]:
    """Render with a values file written from `values` (floats and lists survive, unlike --set)."""
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return render(helm, CHART, values_files=[path], **kwargs)


def render_error(helm: Path, values: dict[str, Any], tmp_path: Path) -> str:
    with pytest.raises(HelmError) as excinfo:
        chart_with(helm, values, tmp_path)
    return str(excinfo.value)


def rule(objs: list[dict[str, Any]]) -> dict[str, Any]:
    rules = by_kind(objs, "PrometheusRule")
    assert len(rules) == 1, f"expected one PrometheusRule, got {len(rules)}"
    return rules[0]


def rules_of(prometheus_rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for group in prometheus_rule["spec"]["groups"] for r in group["rules"]]


def alerts(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in rules_of(rule(objs)) if "alert" in r}


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in DASHBOARD_FILES}


def prometheus_targets(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every Prometheus query in a dashboard."""
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]


# --- metric-name policy ----------------------------------------------------------------------------------


@functools.cache
def kubernetes_side_series() -> frozenset[str]:
    """The contract's "Kubernetes-side series used by dashboards" (kube-state-metrics, cAdvisor, Istio)."""
    text = CONTRACTS.read_text()
    start = text.index("Kubernetes-side series")
    paragraph = text[start:].split("\n\n", 1)[0]
    return frozenset(re.findall(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`", paragraph))


def unknown_series(exprs: dict[str, str], recorded: set[str], *, allow_external: bool) -> dict[str, set[str]]:
    """Per expression, the series it reads that are neither contract metrics nor recorded by the chart.

    Rules may read only the runtime's contract metrics and their own recordings; dashboards may also read
    the contract's Kubernetes-side series and Prometheus' per-target series.
    """
    contract = contract_metric_names()
    external = (kubernetes_side_series() | PROMETHEUS_TARGET_SERIES) if allow_external else frozenset()
    bad: dict[str, set[str]] = {}
    for name, expr in exprs.items():
        names = {
            n
            for n in metric_names(expr)
            if not is_known_runtime_series(n, contract) and n not in recorded and n not in external
        }
        if names:
            bad[name] = names
    return bad


# --- promtool --------------------------------------------------------------------------------------------


def promtool() -> str:
    path = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not path:
        pytest.skip("promtool not on PATH nor in $PROMTOOL (Debian package `prometheus`): PromQL unchecked")
    return path


def promtool_check_rules(groups: list[dict[str, Any]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def promtool_test_rules(
    tests: dict[str, Any], tmp_path: Path, rule_files: dict[str, list[dict[str, Any]]] | None = None
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` on `tests`, with `rule_files` (file name -> rule groups) written beside it."""
    for name, groups in (rule_files or {}).items():
        (tmp_path / name).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    path = tmp_path / "rules_test.yaml"
    path.write_text(yaml.safe_dump({"rule_files": list(rule_files or {}), **tests}, sort_keys=False))
    return subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def expect(expr: str, at: str, *samples: tuple[str, float]) -> dict[str, Any]:
    """One promtool `promql_expr_test`: `expr` evaluated at `at` returns exactly these (labels, value) samples."""
    return {"expr": expr, "eval_time": at, "exp_samples": [{"labels": lab, "value": v} for lab, v in samples]}


_GRAFANA_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_GRAFANA_DURATIONS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's template variables so promtool can parse the query: durations by a duration,
    everything else (always inside a quoted string) by a placeholder value."""
    return _GRAFANA_VAR.sub(lambda m: _GRAFANA_DURATIONS.get(m.group(1) or m.group(2), "x"), expr)


# --- Prometheus relabeling, for checking the monitors' rules against real target labels -------------------


def sanitize(label: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def relabel(labels: dict[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Apply relabel configs with Prometheus' semantics (anchored regex, `;` separator, `$1` replacement,
    empty results removed). Returns None when the target is dropped."""
    labels = dict(labels)
    for cfg in configs:
        action = cfg.get("action", "replace").lower()
        regex = re.compile(cfg.get("regex", "(.*)"))
        value = cfg.get("separator", ";").join(labels.get(s, "") for s in cfg.get("sourceLabels", []))
        match = regex.fullmatch(value)
        if action == "drop" and match:
            return None
        if action == "keep" and not match:
            return None
        if action == "labeldrop":
            labels = {k: v for k, v in labels.items() if not regex.fullmatch(k)}
        if action == "replace" and match:
            template = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", cfg.get("replacement", "$1"))
            labels[cfg["targetLabel"]] = match.expand(template)
    return {k: v for k, v in labels.items() if v != ""}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics for matchLabels and In/NotIn/Exists/DoesNotExist expressions."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


@functools.cache
def _umbrella_cached(helm: Path) -> list[dict[str, Any]]:
    charts = charttree.prepared_charts(helm)
    return render(
        helm, charts / "ai-agents", set_values={"observability.enabled": "true"}, release=RELEASE, namespace=NAMESPACE
    )


@pytest.fixture
def umbrella(helm: Path) -> list[dict[str, Any]]:
    """The umbrella rendered with this chart enabled. Its own rendering failures are test_render_validate's
    to report; here they skip, naming the error, since there is nothing to match the selectors against."""
    if not (CHARTS_DIR / "ai-agents" / "Chart.yaml").is_file():
        pytest.skip("charts/ai-agents does not exist: nothing to match the selectors against")
    try:
        return copy.deepcopy(_umbrella_cached(helm))
    except (HelmError, charttree.PrepareError) as err:
        pytest.skip(f"the umbrella chart does not render, so the fit is unchecked: {err}")


def fake_pod_name(deployment: dict[str, Any]) -> str:
    """A pod name as a Deployment's ReplicaSet generates it: <deployment>-<hash>-<suffix>."""
    return f"{deployment['metadata']['name']}-5d9f8c7b6-x2k9q"


def pod_meta_labels(deployment: dict[str, Any]) -> dict[str, str]:
    template = deployment["spec"]["template"]["metadata"]
    meta = {f"__meta_kubernetes_pod_label_{sanitize(k)}": v for k, v in template["labels"].items()}
    meta["__meta_kubernetes_pod_name"] = fake_pod_name(deployment)
    meta["__meta_kubernetes_namespace"] = deployment["metadata"].get("namespace", NAMESPACE)
    return meta


def container_ports(deployment: dict[str, Any]) -> dict[str, int]:
    return {
        p["name"]: p["containerPort"]
        for c in deployment["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
        if "name" in p
    }


# === scenarios and CRD schemas ============================================================================


def test_the_four_scenarios_exist() -> None:
    names = {p.name for p in CI_VALUES}
    assert names >= {
        "01-defaults-values.yaml",
        "02-podmonitor-values.yaml",
        "03-kube-prometheus-stack-labels-values.yaml",
        "04-rules-only-values.yaml",
    }


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_scenario_lints_and_custom_resources_match_upstream_crds(
    helm: Path, values: Path, crd_schema_dir: Path
) -> None:
    assert values.read_text().startswith("# "), f"{values.name} must start with a comment stating its purpose"
    run_helm(helm, "lint", str(chart_dir(helm, CHART)), "--strict", "--values", str(values))
    objs = chart(helm, values)
    custom = [o for o in objs if o["kind"] in MONITORING_KINDS]
    assert custom, f"{values.name} renders no custom resource"
    for obj in objs:
        assert obj["kind"] in MONITORING_KINDS | {"ConfigMap"}, f"unexpected {obj['kind']}"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ai-agents"
    for obj in custom:
        source = crdschema.validate(obj)
        assert source.startswith("prometheus-operator-kps-"), f"{obj['kind']} validated against {source}"


def test_crd_validation_catches_a_misspelt_relabeling(helm: Path, crd_schema_dir: Path) -> None:
    objs = chart(
        helm,
        **{
            "serviceMonitor.relabelings[0].sourceLabel[0]": "__address__",
            "serviceMonitor.relabelings[0].targetLabel": "x",
        },
    )
    with pytest.raises(crdschema.CRDSchemaError, match="sourceLabel"):
        crdschema.validate(by_kind(objs, "ServiceMonitor")[0])


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (None, {"ServiceMonitor": 1, "PrometheusRule": 1, "ConfigMap": 5}),
        ("02-podmonitor-values.yaml", {"PodMonitor": 1, "PrometheusRule": 1, "ConfigMap": 5}),
        ("03-kube-prometheus-stack-labels-values.yaml", {"ServiceMonitor": 1, "PrometheusRule": 1, "ConfigMap": 5}),
        ("04-rules-only-values.yaml", {"PrometheusRule": 1}),
    ],
)
def test_scenario_renders_the_objects_it_states(helm: Path, values: str | None, expected: dict[str, int]) -> None:
    objs = chart(helm, *([CHART / "ci" / values] if values else []))
    kinds: dict[str, int] = {}
    for obj in objs:
        kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
    assert kinds == expected


# === gating ===============================================================================================


@pytest.mark.parametrize("service_monitor", [True, False])
@pytest.mark.parametrize("pod_monitor", [True, False])
def test_both_scrape_switches_gate_their_monitor(helm: Path, service_monitor: bool, pod_monitor: bool) -> None:
    objs = chart(helm, serviceMonitor__enabled=service_monitor, podMonitor__enabled=pod_monitor)
    assert len(by_kind(objs, "ServiceMonitor")) == int(service_monitor)
    assert len(by_kind(objs, "PodMonitor")) == int(pod_monitor)
    assert len(by_kind(objs, "PrometheusRule")) == 1  # untouched by the scrape switches


def test_double_scraping_is_warned_about(helm4: Path) -> None:
    # Helm 3's `install --dry-run=client` still wants a cluster, so NOTES.txt is rendered with Helm 4 only.
    helm = helm4
    path = str(chart_dir(helm, CHART))
    notes = run_helm(
        helm,
        "install",
        RELEASE,
        path,
        "--dry-run=client",
        "--namespace",
        NAMESPACE,
        "--set",
        "podMonitor.enabled=true",
    )
    assert "WARNING" in notes.split("NOTES:", 1)[1]
    notes = run_helm(helm, "install", RELEASE, path, "--dry-run=client", "--namespace", NAMESPACE)
    assert "WARNING" not in notes.split("NOTES:", 1)[1]


def test_rule_and_dashboard_switches(helm: Path) -> None:
    objs = chart(helm, prometheusRule__enabled=False, dashboards__enabled=False)
    assert [o["kind"] for o in objs] == ["ServiceMonitor"]


# === selectors, ports and relabelings ======================================================================


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor"])
def test_selector_targets_the_release_in_its_namespace(helm: Path, kind: str) -> None:
    monitor = by_kind(chart(helm, podMonitor__enabled=True), kind)[0]
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert spec["selector"]["matchLabels"] == {
        "app.kubernetes.io/part-of": "ai-agents",
        "app.kubernetes.io/instance": RELEASE,
    }
    endpoints = spec["endpoints"] if kind == "ServiceMonitor" else spec["podMetricsEndpoints"]
    assert [(e["port"], e["path"]) for e in endpoints] == [("metrics", "/metrics")]
    assert monitor["metadata"]["name"] == f"{RELEASE}-observability"

    # Installed alone under another release name, it still targets the fleet's release.
    alone = by_kind(chart(helm, release="obs", podMonitor__enabled=True, targets__release="ai-agents"), kind)[0]
    assert alone["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "ai-agents"
    assert alone["metadata"]["name"] == "obs-observability"


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor"])
def test_selector_picks_the_contract_labels_of_orchestrator_and_agents_only(helm: Path, kind: str) -> None:
    """Labels as docs/contracts.md defines them, independent of the umbrella's current templates."""
    selector = by_kind(chart(helm, podMonitor__enabled=True), kind)[0]["spec"]["selector"]

    def contract_labels(name: str, component: str, release: str = RELEASE) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/instance": release,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "ai-agents",
        }

    assert selects(selector, contract_labels("orchestrator", "orchestrator"))
    for agent_type in AGENT_TYPES:
        labels = contract_labels("agent", f"agent-{agent_type}") | {"ai-agents.io/agent-type": agent_type}
        assert selects(selector, labels), agent_type
    assert not selects(selector, contract_labels("postgresql", "database"))
    assert not selects(selector, contract_labels("chaos-monkey", "chaos-monkey"))
    assert not selects(selector, contract_labels("orchestrator", "orchestrator", release="other"))


def test_interval_timeout_and_extra_relabelings_are_applied(helm: Path) -> None:
    objs = chart(
        helm,
        CHART / "ci" / "02-podmonitor-values.yaml",
        **{"podMonitor.relabelings[0].targetLabel": "team", "podMonitor.relabelings[0].replacement": "a"},
    )
    endpoint = by_kind(objs, "PodMonitor")[0]["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")
    assert endpoint["relabelings"][-1] == {"targetLabel": "team", "replacement": "a"}
    assert relabel({}, endpoint["relabelings"]) == {"team": "a"}


def test_service_monitor_scrapes_each_umbrella_orchestrator_and_agent_once(
    helm: Path, umbrella: list[dict[str, Any]]
) -> None:
    monitor = find(umbrella, "ServiceMonitor", f"{RELEASE}-observability")
    endpoint = monitor["spec"]["endpoints"][0]
    services = by_kind(umbrella, "Service")
    deployments = by_kind(umbrella, "Deployment")
    selected = [s for s in services if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
    names = {s["metadata"]["name"] for s in selected}
    assert f"{RELEASE}-orchestrator" in names
    assert {f"{RELEASE}-agent-{t}" for t in AGENT_TYPES} <= names
    assert not any("postgresql" in n for n in names)

    scraped: dict[str, dict[str, str]] = {}
    for service in selected:
        ports = {p.get("name"): p["port"] for p in service["spec"]["ports"]}
        assert ports.get(endpoint["port"]) == 9091, f"{service['metadata']['name']} has no metrics port 9091"
        backends = [
            d
            for d in deployments
            if selects({"matchLabels": service["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(backends) == 1, f"{service['metadata']['name']} should front one Deployment"
        meta = pod_meta_labels(backends[0]) | {"__meta_kubernetes_service_name": service["metadata"]["name"]}
        target = relabel(meta, endpoint["relabelings"])
        if target is not None:
            scraped[service["metadata"]["name"]] = target

    # Headless duplicates dropped: one scrape per Deployment.
    assert set(scraped) == {f"{RELEASE}-orchestrator"} | {f"{RELEASE}-agent-{t}" for t in AGENT_TYPES}
    for name, target in scraped.items():
        assert target["namespace"] == NAMESPACE
        assert target["pod"].startswith(name + "-")
        expected_type = name.removeprefix(f"{RELEASE}-agent-") if "-agent-" in name else None
        assert target.get("agent_type") == expected_type, name


def test_pod_monitor_scrapes_each_umbrella_orchestrator_and_agent_pod(
    helm: Path, umbrella: list[dict[str, Any]]
) -> None:
    objs = render(
        helm,
        charttree.prepared_charts(helm) / "ai-agents",
        release=RELEASE,
        namespace=NAMESPACE,
        set_values={
            "observability.enabled": "true",
            "observability.podMonitor.enabled": "true",
            "observability.serviceMonitor.enabled": "false",
        },
    )
    monitor = find(objs, "PodMonitor", f"{RELEASE}-observability")
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    selected = [
        d
        for d in by_kind(umbrella, "Deployment")
        if selects(monitor["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
    ]
    assert {d["metadata"]["name"] for d in selected} == (
        {f"{RELEASE}-orchestrator"} | {f"{RELEASE}-agent-{t}" for t in AGENT_TYPES}
    )
    for deployment in selected:
        assert container_ports(deployment).get(endpoint["port"]) == 9091, deployment["metadata"]["name"]
        target = relabel(pod_meta_labels(deployment), endpoint["relabelings"])
        assert target is not None
        assert target["pod"] == fake_pod_name(deployment) and target["namespace"] == NAMESPACE
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert target.get("agent_type") == labels.get("ai-agents.io/agent-type")


def test_agent_type_duplicate_of_an_agents_own_label_is_dropped(helm: Path) -> None:
    endpoint = by_kind(chart(helm), "ServiceMonitor")[0]["spec"]["endpoints"][0]
    # What Prometheus produces when the target label and the sample label clash (honor_labels off).
    sample = {"__name__": "ai_agents_agent_tasks_running", "agent_type": "coding", "exported_agent_type": "coding"}
    assert relabel(sample, endpoint["metricRelabelings"]) == {
        "__name__": "ai_agents_agent_tasks_running",
        "agent_type": "coding",
    }


def test_additional_labels_reach_every_monitoring_resource(helm: Path) -> None:
    objs = chart(helm, CHART / "ci" / "03-kube-prometheus-stack-labels-values.yaml", podMonitor__enabled=True)
    monitoring = [o for o in objs if o["kind"] in MONITORING_KINDS]
    assert {o["kind"] for o in monitoring} == MONITORING_KINDS
    for obj in monitoring:
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack", obj["kind"]
    assert all("release" not in o["metadata"]["labels"] for o in chart(helm) if o["kind"] in MONITORING_KINDS)


def test_name_prefix_names_every_object(helm: Path) -> None:
    objs = chart(helm, global__namePrefix="fleet", podMonitor__enabled=True)
    for obj in objs:
        assert obj["metadata"]["name"].startswith("fleet-observability"), obj["metadata"]["name"]


# === PrometheusRule ========================================================================================


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: "defaults" if p is None else p.name)
def test_rule_file_passes_promtool(helm: Path, values: Path | None, tmp_path: Path) -> None:
    objs = chart(helm, *([values] if values else []))
    if not by_kind(objs, "PrometheusRule"):
        pytest.skip(f"{values.name if values else 'defaults'} renders no PrometheusRule")
    spec = rule(objs)["spec"]
    result = promtool_check_rules(spec["groups"], tmp_path)
    assert result.returncode == 0, f"promtool rejected the rules:\n{result.stdout}{result.stderr}"
    assert f"SUCCESS: {len(rules_of(rule(objs)))} rules found" in result.stdout


def test_promtool_check_catches_a_broken_rule(tmp_path: Path) -> None:
    broken = [{"name": "x", "rules": [{"record": "a:b:c", "expr": "sum(rate(ai_agents_queue_depth[5m])"}]}]
    assert promtool_check_rules(broken, tmp_path).returncode != 0


def test_slo_alerts_exist_with_severity_and_annotations(helm: Path) -> None:
    found = alerts(chart(helm))
    assert set(found) >= {
        "AIAgentsHTTPLatencyP95High",
        "AIAgentsGRPCLatencyP95High",
        "AIAgentsErrorRateHigh",
        "AIAgentsErrorBudgetBurnFast",
        "AIAgentsErrorBudgetBurnSlow",
        "AIAgentsQueueBacklogGrowing",
        "AIAgentsAgentsStale",
        "AIAgentsDeadLetterTasks",
    }
    for name, alert in found.items():
        assert alert["labels"]["severity"] in {"warning", "critical"}, name
        for key in ("summary", "description"):
            assert alert["annotations"].get(key, "").strip(), f"{name} lacks a {key}"
    assert found["AIAgentsErrorBudgetBurnFast"]["labels"]["severity"] == "critical"


def test_alerts_read_the_series_the_slos_name(helm: Path) -> None:
    objs = chart(helm)
    recorded = {r["record"]: r["expr"] for r in rules_of(rule(objs)) if "record" in r}
    found = alerts(objs)

    def reads(alert: str) -> set[str]:
        """Series an alert reads, through the recording rules it uses."""
        out: set[str] = set()
        pending = [found[alert]["expr"]]
        while pending:
            for name in metric_names(pending.pop()):
                out.add(name)
                if name in recorded:
                    pending.append(recorded[name])
        return out

    assert "ai_agents_http_request_duration_seconds_bucket" in reads("AIAgentsHTTPLatencyP95High")
    assert "ai_agents_grpc_request_duration_seconds_bucket" in reads("AIAgentsGRPCLatencyP95High")
    for alert in ("AIAgentsErrorRateHigh", "AIAgentsErrorBudgetBurnFast", "AIAgentsErrorBudgetBurnSlow"):
        assert {"ai_agents_http_requests_total", "ai_agents_grpc_requests_total"} <= reads(alert), alert
    assert 'status=~"5.."' in recorded["ai_agents:request_errors:rate5m"]
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
        assert f"ai_agents:request_errors:ratio_rate{window}" in recorded
    assert 'state="stale"' in found["AIAgentsAgentsStale"]["expr"]
    assert "ai_agents_agents" in reads("AIAgentsAgentsStale")
    dead = found["AIAgentsDeadLetterTasks"]["expr"]
    assert re.search(r'increase\(ai_agents_tasks_completed_total\{[^}]*outcome="dead_letter"', dead)
    assert "deriv(ai_agents_queue_depth" in found["AIAgentsQueueBacklogGrowing"]["expr"]


def test_thresholds_follow_the_values(helm: Path, tmp_path: Path) -> None:
    default = alerts(chart(helm))
    assert re.search(r">\s*0\.1$", default["AIAgentsHTTPLatencyP95High"]["expr"])
    assert re.search(r">\s*0\.01$", default["AIAgentsErrorRateHigh"]["expr"])
    assert "14.4 * (1 - 0.999)" in default["AIAgentsErrorBudgetBurnFast"]["expr"]
    assert re.search(r"\)\s*>\s*100\n", default["AIAgentsQueueBacklogGrowing"]["expr"])

    custom = alerts(
        chart_with(
            helm,
            {
                "prometheusRule": {
                    "slo": {"latencyP95Seconds": 0.25, "errorRatio": 0.02, "availability": 0.995, "latencyFor": "3m"},
                    "queueBacklog": {"threshold": 40, "window": "20m", "for": "7m"},
                    "staleAgents": {"for": "9m"},
                    "deadLetter": {"window": "1h"},
                    "alertLabels": {"team": "platform"},
                }
            },
            tmp_path,
        )
    )
    assert re.search(r">\s*0\.25$", custom["AIAgentsGRPCLatencyP95High"]["expr"])
    assert custom["AIAgentsGRPCLatencyP95High"]["for"] == "3m"
    assert re.search(r">\s*0\.02$", custom["AIAgentsErrorRateHigh"]["expr"])
    assert "(1 - 0.995)" in custom["AIAgentsErrorBudgetBurnSlow"]["expr"]
    assert "0.999" not in custom["AIAgentsErrorBudgetBurnSlow"]["expr"]
    backlog = custom["AIAgentsQueueBacklogGrowing"]
    assert re.search(r"\)\s*>\s*40\n", backlog["expr"]) and "[20m]" in backlog["expr"] and backlog["for"] == "7m"
    assert custom["AIAgentsAgentsStale"]["for"] == "9m"
    assert "[1h]" in custom["AIAgentsDeadLetterTasks"]["expr"]
    assert all(a["labels"]["team"] == "platform" for a in custom.values())


def test_alert_labels_cannot_override_severity(helm: Path, tmp_path: Path) -> None:
    message = render_error(helm, {"prometheusRule": {"alertLabels": {"severity": "info"}}}, tmp_path)
    assert "prometheusRule.alertLabels" in message and "severity" in message


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: "defaults" if p is None else p.name)
def test_rules_read_only_contract_metrics_and_their_own_records(helm: Path, values: Path | None) -> None:
    objs = chart(helm, *([values] if values else []))
    if not by_kind(objs, "PrometheusRule"):
        pytest.skip("no PrometheusRule in this scenario")
    all_rules = rules_of(rule(objs))
    recorded = {r["record"] for r in all_rules if "record" in r}
    assert all(r.startswith("ai_agents:") for r in recorded), "recording rules use the level:metric:operation form"
    exprs = {r.get("alert") or r["record"]: r["expr"] for r in all_rules}
    assert unknown_series(exprs, recorded, allow_external=False) == {}


def test_metric_check_rejects_names_outside_the_contract() -> None:
    exprs = {
        "a": "rate(ai_agents_made_up_total[5m])",
        "b": "kube_deployment_status_replicas",
        "c": "ai_agents:not_recorded:rate5m",
        "d": "rate(ai_agents_task_duration_seconds_bucket[5m])",
    }
    assert unknown_series(exprs, set(), allow_external=False) == {
        "a": {"ai_agents_made_up_total"},
        "b": {"kube_deployment_status_replicas"},
        "c": {"ai_agents:not_recorded:rate5m"},
    }
    assert set(unknown_series(exprs, set(), allow_external=True)) == {"a", "c"}


def test_rules_are_scoped_to_the_release_namespace(helm: Path) -> None:
    objs = chart(helm, namespace="team-a")
    for r in rules_of(rule(objs)):
        # Runtime series and the records of the rules themselves: every release writes the same record names.
        selectors = re.findall(r"\bai_agents[_:][a-z0-9_:]+(\{[^}]*\}|\[|\)|\s)", r["expr"] + " ")
        assert selectors, r.get("alert") or r["record"]
        for selector in selectors:
            assert selector.startswith("{") and 'namespace="team-a"' in selector, r.get("alert") or r["record"]


def test_two_releases_in_one_prometheus_keep_their_records_and_alerts_apart(helm: Path, tmp_path: Path) -> None:
    """Two releases' rules on one Prometheus, one release failing half its requests and the other none: each
    records its own error ratio only (were a rule to read every namespace's records, the healthy release would
    write its zero over the failing one's, and the failing release's alert would come and go)."""
    rule_files = {f"{ns}.yaml": rule(chart(helm, namespace=ns))["spec"]["groups"] for ns in ("team-a", "team-b")}
    ok = 'ai_agents_http_requests_total{namespace="%s",method="POST",path="/v1/tasks",status="201"}'
    unavailable = 'ai_agents_grpc_requests_total{namespace="team-a",method="/x",code="UNAVAILABLE"}'

    def per_namespace(record: str, team_a: float, team_b: float) -> dict[str, Any]:
        return expect(
            record,
            "15m",
            (f'{{__name__="{record}",namespace="team-a"}}', team_a),
            (f'{{__name__="{record}",namespace="team-b"}}', team_b),
        )

    firing = (
        '{__name__="ALERTS",alertname="AIAgentsErrorRateHigh",alertstate="firing",namespace="team-a",'
        'severity="warning"}'
    )
    tests: dict[str, Any] = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": ok % "team-a", "values": "0+60x30"},
                    {"series": unavailable, "values": "0+60x30"},
                    {"series": ok % "team-b", "values": "0+60x30"},
                ],
                "promql_expr_test": [
                    per_namespace("ai_agents:requests:rate5m", 2, 1),
                    per_namespace("ai_agents:request_errors:rate5m", 1, 0),
                    per_namespace("ai_agents:request_errors:ratio_rate5m", 0.5, 0),
                    # Only the failing release alerts, once.
                    expect('ALERTS{alertname="AIAgentsErrorRateHigh"}', "25m", (firing, 1)),
                ],
            }
        ],
    }
    result = promtool_test_rules(tests, tmp_path, rule_files)
    assert result.returncode == 0, f"promtool test rules:\n{result.stdout}{result.stderr}"


# === dashboards ============================================================================================


def test_five_dashboards_with_unique_uids_and_the_rollout_panels() -> None:
    found = dashboards()
    assert len(found) == 5
    uids = [d["uid"] for d in found.values()]
    assert len(set(uids)) == len(uids) and all(uids)
    by_title = {d["title"]: d for d in found.values()}
    assert set(by_title) == set(ROLLOUT_DASHBOARDS)
    for title, panels in ROLLOUT_DASHBOARDS.items():
        got = [p["title"] for p in by_title[title]["panels"]]
        assert sorted(got) == sorted(panels | EXTRA_PANELS.get(title, set())), title


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_variables_and_datasources(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard.get("id") is None, "provisioned dashboards must not pin an id"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    namespace = variables["namespace"]
    assert namespace["datasource"]["uid"] == "${datasource}"
    match = re.fullmatch(r"label_values\((\w+)(?:\{[^}]*\})?,\s*namespace\)", namespace["definition"])
    assert match and is_known_runtime_series(match.group(1), contract_metric_names())
    for panel in dashboard["panels"]:
        assert panel.get("description"), f"{panel['title']} has no description"
        for target in panel["targets"]:
            ds = target["datasource"]
            if "expr" in target:
                assert ds == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
                assert re.search(r'namespace=~"\$namespace"', target["expr"]), (
                    f"{panel['title']}: query not filtered by the namespace variable"
                )
            else:
                assert ds["type"] == "jaeger" and ds["uid"] == "${tracing}", panel["title"]


def test_retry_panels_read_what_their_names_say() -> None:
    """gRPC's own retry attempts and the calls repeated after those gave up are different counters, on
    different panels, and each legend names the one it shows."""
    dashboard = next(d for d in dashboards().values() if d["title"] == "AI Agents Resilience")
    panels = {p["title"]: p for p in dashboard["panels"]}
    reads = {
        title: {(t["legendFormat"], n) for t in panels[title]["targets"] for n in metric_names(t["expr"])}
        for title in ("Retry attempts", "Repeated calls and redelivered tasks")
    }
    assert reads["Retry attempts"] == {("gRPC retry attempts: {{method}}", "ai_agents_grpc_retried_requests_total")}
    assert reads["Repeated calls and redelivered tasks"] == {
        ("repeated after gRPC retries gave up: {{method}}", "ai_agents_client_retries_total"),
        ("tasks redelivered: {{agent_type}}", "ai_agents_task_redeliveries_total"),
    }


def test_log_panels_select_levels_the_runtime_writes() -> None:
    """The log panels read the per-level counter; a level matcher must use the runtime's lower-case names."""
    runtime_levels = {"debug", "info", "warning", "error", "critical"}
    dashboard = next(d for d in dashboards().values() if d["title"] == "AI Agents Observability")
    exprs = [t["expr"] for p in dashboard["panels"] if "log" in p["title"].lower() for t in p["targets"]]
    assert exprs and all("ai_agents_log_messages_total" in e for e in exprs)
    for expr in exprs:
        for matcher in re.findall(r'level=~"([^"]*)"', expr):
            assert set(matcher.split("|")) <= runtime_levels, matcher


def test_tracing_panel_uses_jaeger_and_links_to_its_ui() -> None:
    dashboard = next(d for d in dashboards().values() if d["title"] == "AI Agents Observability")
    panel = next(p for p in dashboard["panels"] if p["title"] == "Distributed tracing")
    assert panel["datasource"]["type"] == "jaeger"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["tracing"]["query"] == "jaeger"
    assert any(link["url"].startswith("${tracing_url}") for link in panel["links"])
    assert variables["tracing_url"]["query"] == "__TRACING_URL__"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_queries_read_only_contract_series(path: Path) -> None:
    exprs = {f"{title} #{i}": expr for i, (title, expr) in enumerate(prometheus_targets(json.loads(path.read_text())))}
    assert exprs
    assert unknown_series(exprs, set(), allow_external=True) == {}


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    queries = [(f"{d['uid']}: {title}", expr) for d in dashboards().values() for title, expr in prometheus_targets(d)]
    assert len(queries) >= 20
    groups = [
        {
            "name": "dashboards",
            "rules": [
                {"record": f"dashboard:query_{i}:check", "expr": grafana_to_promql(expr)}
                for i, (_, expr) in enumerate(queries)
            ],
        }
    ]
    result = promtool_check_rules(groups, tmp_path)
    assert result.returncode == 0, f"promtool rejected a dashboard query:\n{result.stdout}{result.stderr}"
    # The substitution must not hide a syntax error.
    broken = [{"name": "x", "rules": [{"record": "a:b:c", "expr": grafana_to_promql("rate(up[$__rate_interval]")}]}]
    assert promtool_check_rules(broken, tmp_path).returncode != 0


def test_dashboard_name_patterns_match_the_umbrella_workloads(umbrella: list[dict[str, Any]]) -> None:
    """label_replace regexes that derive agent_type from Deployment/pod names fit what the umbrella creates."""
    patterns: dict[str, set[str]] = {"deployment": set(), "pod": set()}
    for d in dashboards().values():
        for _, expr in prometheus_targets(d):
            for source, regex in re.findall(r'"agent_type",\s*"\$1",\s*"(deployment|pod)",\s*"([^"]+)"', expr):
                patterns[source].add(regex)
    assert patterns["deployment"] and patterns["pod"]
    deployments = by_kind(umbrella, "Deployment")
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        agent_type = deployment["spec"]["template"]["metadata"]["labels"].get("ai-agents.io/agent-type")
        for source, subject in (("deployment", name), ("pod", fake_pod_name(deployment))):
            for regex in patterns[source]:
                match = re.fullmatch(regex, subject)
                assert (match.group(1) if match else None) == agent_type, f"{regex} on {subject}"


def test_dashboard_configmaps_carry_the_sidecar_label_and_the_json(helm: Path) -> None:
    configmaps = by_kind(chart(helm), "ConfigMap")
    assert len(configmaps) == len(DASHBOARD_FILES)
    files = dashboards()
    for cm in configmaps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "AI Agents"}
        assert cm["metadata"]["namespace"] == NAMESPACE
        ((key, text),) = cm["data"].items()
        rendered = json.loads(text)
        assert "__TRACING_URL__" not in text
        expected = json.loads(json.dumps(files[key]).replace("__TRACING_URL__", "http://localhost:16686"))
        assert rendered == expected, key
    assert "${datasource}" in text  # Grafana's variables pass through Helm untouched


def test_dashboard_label_namespace_folder_and_jaeger_url_are_configurable(helm: Path) -> None:
    objs = chart(helm, CHART / "ci" / "03-kube-prometheus-stack-labels-values.yaml")
    for cm in by_kind(objs, "ConfigMap"):
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["annotations"]["grafana_folder"] == "AI Agents (platform)"
    observability = next(cm for cm in by_kind(objs, "ConfigMap") if "observability.json" in cm["data"])
    assert "https://jaeger.example.com" in observability["data"]["observability.json"]

    objs = chart(helm, dashboards__label="dash", dashboards__labelValue="yes", dashboards__folder="")
    for cm in by_kind(objs, "ConfigMap"):
        assert cm["metadata"]["labels"]["dash"] == "yes" and "grafana_dashboard" not in cm["metadata"]["labels"]
        assert "annotations" not in cm["metadata"]


# === schema ================================================================================================


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        ({"serviceMonitr": {"enabled": True}}, ["serviceMonitr"]),
        ({"podMonitor": {"enable": True}}, ["enable", "podMonitor"]),
        ({"prometheusRule": {"slo": {"availabilty": 0.99}}}, ["availabilty", "slo"]),
        ({"prometheusRule": {"slo": {"availability": 1.5}}}, ["availability"]),
        ({"serviceMonitor": {"interval": "30 seconds"}}, ["interval"]),
        ({"targets": {"components": ["postgresql"]}}, ["components"]),
        ({"dashboards": {"tracing": {"url": 'http://x"y'}}}, ["url"]),
    ],
)
def test_schema_rejects_bad_values_naming_them(
    helm: Path, values: dict[str, Any], fragments: list[str], tmp_path: Path
) -> None:
    message = render_error(helm, values, tmp_path)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_schema_accepts_every_key_of_the_defaults(helm: Path, tmp_path: Path) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart_with(helm, defaults, tmp_path)
