"""Static tests of charts/keda-scalers with Helm 3 and Helm 4.

They prove that the rendered ScaledObjects and TriggerAuthentications are valid KEDA v2.20 resources, scale
the umbrella's agent Deployments over the rollout's replica ranges, scale on the rollout's signals with
queries that read only metrics the runtime exports (scoped to the release namespace and agent type), react
to a burst within 30 seconds, and that bad values fail with a message naming the key.

The `helm` fixture (conftest.py) runs each test once with Helm 3 and once with Helm 4.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import crdschema
import pytest
import yaml
from helmrender import CHARTS_DIR, HelmError, by_kind, chart_dir, find, render_chart, run_helm
from promql import contract_metric_names, is_known_runtime_series, metric_names

CHART = CHARTS_DIR / "keda-scalers"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "ai-agents"
NAMESPACE = "ai-agents"

# The rollout's "Autoscaling policies for all agent types" (Phase E): the requirement, not chart output.
ROLLOUT_RANGES = {
    "coding": (5, 100),
    "testing": (8, 200),
    "security": (6, 150),
    "compliance": (4, 100),
    "documentation": (3, 50),
    "discovery": (2, 20),
}
AGENT_TYPES = tuple(ROLLOUT_RANGES)
# Metrics that only one agent type's results produce, and the type whose ScaledObject must read them.
TYPE_SPECIFIC_METRIC = {
    "testing": "ai_agents_test_duration_seconds",
    "security": "ai_agents_vulnerabilities_found_total",
    "compliance": "ai_agents_compliance_violations_total",
}


def chart(
    helm: Path,
    *values_files: Path,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    **sets: Any,
) -> list[dict[str, Any]]:
    """Render the chart; keyword `a__b=1` means `--set a.b=1`."""
    return render_chart(helm, CHART, *values_files, release=release, namespace=namespace, **sets)


def render_error(helm: Path, **sets: Any) -> str:
    with pytest.raises(HelmError) as excinfo:
        chart(helm, **sets)
    return str(excinfo.value)


def scaled_objects(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """ScaledObjects keyed by the agent type they scale (from the agent-type label)."""
    out = {so["metadata"]["labels"]["ai-agents.io/agent-type"]: so for so in by_kind(objs, "ScaledObject")}
    assert len(out) == len(by_kind(objs, "ScaledObject")), "two ScaledObjects claim the same agent type"
    return out


def prometheus_queries(so: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["metadata"]["query"] for t in so["spec"]["triggers"] if t["type"] == "prometheus"}


def trigger_reading(so: dict[str, Any], metric: str) -> dict[str, Any]:
    """The single prometheus trigger whose query reads `metric` (or its histogram series)."""
    hits = [
        t
        for t in so["spec"]["triggers"]
        if t["type"] == "prometheus"
        and any(is_known_runtime_series(n, {metric}) for n in metric_names(t["metadata"]["query"]))
    ]
    assert len(hits) == 1, f"{so['metadata']['name']}: expected one trigger reading {metric}, got {len(hits)}"
    return hits[0]


# --- every scenario: valid KEDA objects --------------------------------------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_ci_scenario_lints_and_renders_valid_keda_objects(helm: Path, values: Path, crd_schema_dir: Path) -> None:
    first_line = values.read_text().splitlines()[0]
    assert first_line.startswith("# "), f"{values.name} must start with a comment stating its purpose"
    run_helm(helm, "lint", str(chart_dir(helm, CHART)), "--strict", "--values", str(values))

    objs = chart(helm, values)
    assert by_kind(objs, "ScaledObject"), f"{values.name} renders no ScaledObject"
    for obj in objs:
        assert obj["kind"] in {"ScaledObject", "TriggerAuthentication"}, f"unexpected {obj['kind']}"
        assert obj["metadata"]["namespace"] == NAMESPACE
        source = crdschema.validate(obj)
        assert source.startswith("keda-v2.20.2/"), f"{obj['kind']} validated against {source}"
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ai-agents"


def test_crd_validation_catches_a_misspelt_field(helm: Path, crd_schema_dir: Path) -> None:
    """Guards the check above: a field KEDA does not know must fail the CRD schema."""
    so = by_kind(chart(helm), "ScaledObject")[0]
    so["spec"]["minReplicas"] = so["spec"].pop("minReplicaCount")
    with pytest.raises(crdschema.CRDSchemaError, match="minReplicas"):
        crdschema.validate(so)


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_trigger_names_are_unique_per_scaled_object(helm: Path, values: Path) -> None:
    # KEDA's admission webhook rejects a ScaledObject that defines a trigger name twice.
    for so in by_kind(chart(helm, values), "ScaledObject"):
        names = [t.get("name") for t in so["spec"]["triggers"]]
        assert all(names) and len(names) == len(set(names)), f"{so['metadata']['name']}: {names}"


# --- replica ranges and targets ---------------------------------------------------------------------


def test_replica_ranges_equal_the_rollout_table(helm: Path) -> None:
    sos = scaled_objects(chart(helm))
    assert set(sos) == set(AGENT_TYPES)
    for agent_type, (low, high) in ROLLOUT_RANGES.items():
        spec = sos[agent_type]["spec"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (low, high), agent_type


def test_replica_range_overrides_apply_to_one_type_only(helm: Path) -> None:
    sos = scaled_objects(chart(helm, agents__security__minReplicaCount=7, agents__security__maxReplicaCount=9))
    assert (sos["security"]["spec"]["minReplicaCount"], sos["security"]["spec"]["maxReplicaCount"]) == (7, 9)
    for agent_type, (low, high) in ROLLOUT_RANGES.items():
        if agent_type != "security":
            assert (sos[agent_type]["spec"]["minReplicaCount"], sos[agent_type]["spec"]["maxReplicaCount"]) == (
                low,
                high,
            )


def test_disabled_type_renders_no_scaled_object(helm: Path) -> None:
    sos = scaled_objects(chart(helm, global__agents__discovery__enabled="false"))
    assert set(sos) == set(AGENT_TYPES) - {"discovery"}


@pytest.mark.parametrize(
    "release,prefix,expected",
    [
        ("ai-agents", None, "ai-agents"),
        ("staging", None, "staging"),
        ("staging", "fleet", "fleet"),
    ],
)
def test_scale_target_is_the_umbrella_agent_deployment(
    helm: Path, release: str, prefix: str | None, expected: str
) -> None:
    sets = {"global__namePrefix": prefix} if prefix else {}
    sos = scaled_objects(chart(helm, release=release, **sets))
    for agent_type, so in sos.items():
        ref = so["spec"]["scaleTargetRef"]
        assert ref == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{expected}-agent-{agent_type}"}
        assert so["metadata"]["labels"]["app.kubernetes.io/component"] == f"agent-{agent_type}"


# --- values rejected with a readable message ----------------------------------------------------------


def test_min_above_max_fails_naming_the_keys(helm: Path) -> None:
    message = render_error(helm, agents__discovery__minReplicaCount=21)
    assert "agents.discovery.minReplicaCount (21)" in message
    assert "agents.discovery.maxReplicaCount (20)" in message


def test_equal_min_and_max_is_allowed(helm: Path) -> None:
    so = scaled_objects(chart(helm, agents__discovery__minReplicaCount=20))["discovery"]
    assert so["spec"]["minReplicaCount"] == so["spec"]["maxReplicaCount"] == 20


@pytest.mark.parametrize(
    "sets,fragments",
    [
        ({"agents__planner__enabled": "true"}, ["/agents", "'planner'", "not allowed"]),
        ({"agents__coding__minReplicas": "3"}, ["/agents/coding", "'minReplicas'", "not allowed"]),
        ({"triggers__queuedepth__targetPerReplica": "3"}, ["/triggers", "'queuedepth'", "not allowed"]),
        ({"agents__testing__minReplicaCount": "-1"}, ["/agents/testing/minReplicaCount", "minimum"]),
        ({"prometheus__auth__mode": "oauth"}, ["/prometheus/auth/mode"]),
        # The key's old name, from before it said what the trigger counts: refused, not silently ignored.
        ({"triggers__requestsPerSecond__window": "2m"}, ["/triggers", "'requestsPerSecond'", "not allowed"]),
    ],
    ids=["unknown-type", "typo-in-type", "typo-in-trigger", "negative", "unknown-auth-mode", "old-trigger-key"],
)
def test_schema_rejects_bad_values_naming_them(helm: Path, sets: dict[str, str], fragments: list[str]) -> None:
    message = render_error(helm, **sets)
    assert "schema" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_too_long_prefix_fails_naming_the_key(helm: Path) -> None:
    # KEDA names the HPA keda-hpa-<ScaledObject> and labels with it: 63 characters at most.
    message = render_error(helm, global__namePrefix="p" * 40)
    assert "global.namePrefix" in message and "63" in message


# --- triggers -----------------------------------------------------------------------------------------


def test_every_type_scales_on_queue_depth_task_submissions_and_cpu(helm: Path) -> None:
    for agent_type, so in scaled_objects(chart(helm)).items():
        (queue,) = [t for t in so["spec"]["triggers"] if t["name"] == "queue-depth"]
        # By default KEDA asks the orchestrator, which counts the queue on every call (no scrape in between).
        assert queue["type"] == "metrics-api"
        assert queue["metricType"] == "AverageValue", "queue depth is a per-replica target"
        assert float(queue["metadata"]["targetValue"]) > 0

        submissions = trigger_reading(so, "ai_agents_tasks_submitted_total")
        # The trigger's name says what it reads: task submissions, not API requests.
        assert submissions["name"] == "task-submission-rate"
        assert submissions["metricType"] == "AverageValue"
        assert re.search(r"\brate\s*\(", submissions["metadata"]["query"]), "submissions/s needs rate()"
        assert float(submissions["metadata"]["threshold"]) > 0

        cpu = [t for t in so["spec"]["triggers"] if t["type"] == "cpu"]
        assert len(cpu) == 1, agent_type
        assert cpu[0]["metricType"] == "Utilization"
        assert 0 < int(cpu[0]["metadata"]["value"]) <= 100


def test_queue_trigger_asks_the_release_orchestrator_for_its_own_type(helm: Path, crd_schema_dir: Path) -> None:
    objs = chart(helm, namespace="team-blue", global__namePrefix="fleet")
    auth = find(objs, "TriggerAuthentication", "fleet-keda-orchestrator")
    crdschema.validate(auth)
    # The umbrella's generated API token: the same Secret the orchestrator checks requests against.
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "token", "name": "fleet-api-token", "key": "token"}]
    for agent_type, so in scaled_objects(objs).items():
        (queue,) = [t for t in so["spec"]["triggers"] if t["name"] == "queue-depth"]
        meta = queue["metadata"]
        assert meta["url"] == f"http://fleet-orchestrator.team-blue.svc:8080/v1/queue?agent_type={agent_type}"
        assert meta["valueLocation"] == "queued", "queued tasks, not leased ones: those have an agent"
        assert meta["authMode"] == "bearer"
        assert queue["authenticationRef"] == {"name": "fleet-keda-orchestrator"}

    objs = chart(helm, orchestrator__tokenSecret__name="vault-token", orchestrator__tokenSecret__key="t")
    auth = find(objs, "TriggerAuthentication", f"{RELEASE}-keda-orchestrator")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "token", "name": "vault-token", "key": "t"}]


def test_queue_trigger_can_read_prometheus_instead(helm: Path) -> None:
    objs = chart(helm, triggers__queueDepth__source="prometheus")
    assert not [a for a in by_kind(objs, "TriggerAuthentication") if a["metadata"]["name"].endswith("-orchestrator")]
    for so in scaled_objects(objs).values():
        queue = trigger_reading(so, "ai_agents_queue_depth")
        assert queue["name"] == "queue-depth"
        assert queue["metricType"] == "AverageValue"
        assert re.match(r"^\s*max\s*\(", queue["metadata"]["query"]), "every orchestrator reports it: use max"
        assert float(queue["metadata"]["threshold"]) > 0
    message = render_error(helm, triggers__queueDepth__source="redis")
    assert "/triggers/queueDepth/source" in message


def test_type_specific_signals_belong_to_their_type_only(helm: Path) -> None:
    sos = scaled_objects(chart(helm))
    for agent_type, so in sos.items():
        read = {n for q in prometheus_queries(so).values() for n in metric_names(q)}
        for owner, metric in TYPE_SPECIFIC_METRIC.items():
            reads_it = any(is_known_runtime_series(n, {metric}) for n in read)
            assert reads_it == (agent_type == owner), f"{agent_type} reading {metric}: {reads_it}"

    duration = trigger_reading(sos["testing"], "ai_agents_test_duration_seconds")
    assert re.search(r"histogram_quantile\(\s*0\.95\s*,", duration["metadata"]["query"]), "p95 of test duration"
    assert "_bucket" in duration["metadata"]["query"]
    # A duration is not shared among replicas, so it is a Value target, not AverageValue.
    assert duration["metricType"] == "Value"
    for agent_type in ("security", "compliance"):
        trig = trigger_reading(sos[agent_type], TYPE_SPECIFIC_METRIC[agent_type])
        assert re.search(r"\bincrease\s*\(.*\[\d+[smhd]\]", trig["metadata"]["query"]), "increase over a window"


def test_type_specific_signals_can_be_turned_off(helm: Path) -> None:
    sos = scaled_objects(chart(helm, triggers__testDuration__enabled="false", triggers__cpu__enabled="false"))
    assert "test-duration" not in prometheus_queries(sos["testing"])
    assert not [t for so in sos.values() for t in so["spec"]["triggers"] if t["type"] == "cpu"]
    assert "vulnerabilities" in prometheus_queries(sos["security"])


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_queries_read_only_contract_metrics(helm: Path, values: Path) -> None:
    exported = contract_metric_names()
    assert "ai_agents_queue_depth" in exported, "contracts' Metrics table not found"
    for so in by_kind(chart(helm, values), "ScaledObject"):
        for name, query in prometheus_queries(so).items():
            names = metric_names(query)
            assert names, f"{so['metadata']['name']}/{name}: no metric found in {query!r}"
            unknown = {n for n in names if not is_known_runtime_series(n, exported)}
            assert not unknown, f"{so['metadata']['name']}/{name} reads {unknown} missing from docs/contracts.md"


def test_queries_are_scoped_to_release_namespace_and_type(helm: Path) -> None:
    # A namespace other than the default proves the scope comes from the release, not a constant.
    namespace = "team-blue"
    for agent_type, so in scaled_objects(chart(helm, namespace=namespace)).items():
        for name, query in prometheus_queries(so).items():
            selectors = re.findall(r"\b(ai_agents_[a-z0-9_]+)\s*(\{[^}]*\})?", query)
            assert selectors, query
            for metric, matchers in selectors:
                assert matchers, f"{agent_type}/{name}: {metric} read without label matchers"
                pairs = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', matchers))
                assert pairs.get("namespace") == namespace, f"{agent_type}/{name}: {matchers}"
                assert pairs.get("agent_type") == agent_type, f"{agent_type}/{name}: {matchers}"
                assert not re.search(r"=~|!=|!~", matchers), f"{agent_type}/{name}: only exact matchers"


def _promtool_check(queries: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = {
        "groups": [
            {
                "name": "keda-scalers",
                "rules": [
                    {"record": f"keda_scalers:query_{i}", "expr": expr} for i, expr in enumerate(queries.values())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_queries_parse_as_promql(helm: Path, tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool not on PATH (Debian package `prometheus`): PromQL syntax of the queries unchecked")
    objs = chart(helm, CHART / "ci" / "02-postgresql-trigger-values.yaml")
    queries = {
        f"{so['metadata']['name']}/{name}": query
        for so in by_kind(objs, "ScaledObject")
        for name, query in prometheus_queries(so).items()
    }
    assert len(queries) == 2 * len(AGENT_TYPES) + len(TYPE_SPECIFIC_METRIC)
    result = _promtool_check(queries, tmp_path)
    assert result.returncode == 0, f"promtool rejected a query:\n{result.stdout}{result.stderr}"
    # The same check must reject a broken expression, or it proves nothing.
    broken = _promtool_check({"broken": "sum(rate(ai_agents_tasks_submitted_total[1m])"}, tmp_path)
    assert broken.returncode != 0


def test_server_address_is_configurable_and_defaults_to_kube_prometheus_stack(helm: Path) -> None:
    default = {
        t["metadata"]["serverAddress"]
        for so in by_kind(chart(helm), "ScaledObject")
        for t in so["spec"]["triggers"]
        if t["type"] == "prometheus"
    }
    assert default == {"http://kube-prometheus-stack-prometheus.monitoring.svc:9090"}
    custom = {
        t["metadata"]["serverAddress"]
        for so in by_kind(chart(helm, prometheus__serverAddress="http://prom.obs.svc:9090"), "ScaledObject")
        for t in so["spec"]["triggers"]
        if t["type"] == "prometheus"
    }
    assert custom == {"http://prom.obs.svc:9090"}


# --- scaling behaviour --------------------------------------------------------------------------------


def _replicas_after(start: int, seconds: int, policies: list[dict[str, Any]], select: str) -> int:
    """Replicas the HPA may reach from `start` within `seconds`, applying the policies once per period."""
    current = start
    for elapsed in range(1, seconds + 1):
        grown = []
        for policy in policies:
            if elapsed % policy["periodSeconds"]:
                continue
            if policy["type"] == "Pods":
                grown.append(current + policy["value"])
            elif policy["type"] == "Percent":
                grown.append(math.ceil(current * (1 + policy["value"] / 100)))
        if grown:
            current = max(grown) if select == "Max" else min(grown)
    return current


@pytest.mark.parametrize("values", [None, CHART / "ci" / "03-fast-scaling-values.yaml"], ids=["defaults", "fast"])
def test_scale_up_reaches_more_replicas_within_30_seconds(helm: Path, values: Path | None) -> None:
    for agent_type, so in scaled_objects(chart(helm, *([values] if values else []))).items():
        spec = so["spec"]
        up = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]
        assert up["stabilizationWindowSeconds"] == 0, agent_type
        select = up.get("selectPolicy", "Max")
        assert select != "Disabled", agent_type
        fast = [p for p in up["policies"] if p["periodSeconds"] <= 30 and p["value"] > 0]
        assert fast, f"{agent_type}: no scale-up policy acts within 30 s"
        start = spec["minReplicaCount"]
        assert _replicas_after(start, 30, up["policies"], select) > start, agent_type


def test_scale_down_is_conservative_by_default(helm: Path) -> None:
    for agent_type, so in scaled_objects(chart(helm)).items():
        behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        down = behavior["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 300, agent_type
        for policy in down["policies"]:
            assert policy["periodSeconds"] >= 60, agent_type
            assert not (policy["type"] == "Percent" and policy["value"] >= 50), agent_type
        start = so["spec"]["maxReplicaCount"]
        # At most a fifth of the fleet goes in the first two minutes after the stabilization window.
        # For scale-down, selectPolicy Min picks the policy that removes least: the most remaining replicas.
        removing = [dict(p, value=-p["value"]) for p in down["policies"]]
        shrink = _replicas_after(start, 120, removing, "Max" if down.get("selectPolicy", "Max") == "Min" else "Min")
        assert shrink >= start * 0.8, f"{agent_type}: {start} -> {shrink} in 2 minutes"


def test_fast_scaling_scenario_polls_often_and_cools_down_quickly(helm: Path) -> None:
    for so in by_kind(chart(helm, CHART / "ci" / "03-fast-scaling-values.yaml"), "ScaledObject"):
        assert so["spec"]["pollingInterval"] == 5
        assert so["spec"]["cooldownPeriod"] == 30
    for so in by_kind(chart(helm, scaling__pollingInterval=20, scaling__cooldownPeriod=90), "ScaledObject"):
        assert (so["spec"]["pollingInterval"], so["spec"]["cooldownPeriod"]) == (20, 90)


def test_fallback_meets_kedas_constraints(helm: Path) -> None:
    for agent_type, so in scaled_objects(chart(helm)).items():
        spec = so["spec"]
        fallback = spec["fallback"]
        assert fallback["failureThreshold"] >= 1
        assert spec["minReplicaCount"] <= fallback["replicas"] <= spec["maxReplicaCount"], agent_type
        # KEDA 2.20: fallback applies to non-cpu/memory triggers with a Value or AverageValue target,
        # and needs at least one such trigger.
        others = [t for t in spec["triggers"] if t["type"] not in {"cpu", "memory"}]
        assert others, agent_type
        assert all(t.get("metricType", "AverageValue") in {"Value", "AverageValue"} for t in others), agent_type


def test_fallback_replicas_override_and_disable(helm: Path) -> None:
    sos = scaled_objects(chart(helm, CHART / "ci" / "04-single-type-values.yaml"))
    assert set(sos) == {"coding"}
    assert sos["coding"]["spec"]["fallback"]["replicas"] == 4
    assert not [t for t in sos["coding"]["spec"]["triggers"] if t["type"] == "cpu"]
    for so in by_kind(chart(helm, scaling__fallback__enabled="false"), "ScaledObject"):
        assert "fallback" not in so["spec"]


# --- postgresql trigger and authentication ------------------------------------------------------------


def test_postgresql_trigger_counts_queued_tasks_of_its_type(helm: Path) -> None:
    assert not [
        t for so in by_kind(chart(helm), "ScaledObject") for t in so["spec"]["triggers"] if t["type"] == "postgresql"
    ], "postgresql trigger must be opt-in"

    objs = chart(helm, CHART / "ci" / "02-postgresql-trigger-values.yaml")
    auth = find(objs, "TriggerAuthentication", f"{RELEASE}-keda-postgresql")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "connection", "name": f"{RELEASE}-database", "key": "dsn"}]
    for agent_type, so in scaled_objects(objs).items():
        (trigger,) = [t for t in so["spec"]["triggers"] if t["type"] == "postgresql"]
        sql = trigger["metadata"]["query"]
        assert re.search(r"\bFROM\s+tasks\b", sql, re.IGNORECASE), sql
        assert re.search(r"\bstate\s*=\s*'queued'", sql), sql
        assert re.search(rf"\bagent_type\s*=\s*'{agent_type}'", sql), sql
        assert re.match(r"^\s*SELECT\s+count\(\*\)", sql, re.IGNORECASE), sql
        assert float(trigger["metadata"]["targetQueryValue"]) > 0
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert not {"connection", "connectionFromEnv", "password"} & set(trigger["metadata"]), "secret inline"


def test_postgresql_secret_name_and_key_are_configurable(helm: Path, crd_schema_dir: Path) -> None:
    objs = chart(helm, postgresql__enabled="true", postgresql__secretName="pg-app", postgresql__secretKey="uri")
    auth = find(objs, "TriggerAuthentication", f"{RELEASE}-keda-postgresql")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "connection", "name": "pg-app", "key": "uri"}]
    objs = chart(helm, postgresql__enabled="true", global__namePrefix="fleet")
    auth = find(objs, "TriggerAuthentication", "fleet-keda-postgresql")
    assert auth["spec"]["secretTargetRef"][0]["name"] == "fleet-database"
    crdschema.validate(auth)


@pytest.mark.parametrize(
    "mode,parameters",
    [
        ("bearer", {"bearerToken": "token"}),
        ("basic", {"username": "username", "password": "password"}),
    ],
)
def test_prometheus_auth_renders_trigger_authentication(
    helm: Path, mode: str, parameters: dict[str, str], crd_schema_dir: Path
) -> None:
    objs = chart(helm, prometheus__auth__mode=mode, prometheus__auth__secretName="prom-creds")
    auth = find(objs, "TriggerAuthentication", f"{RELEASE}-keda-prometheus")
    crdschema.validate(auth)
    refs = auth["spec"]["secretTargetRef"]
    assert {r["parameter"]: r["key"] for r in refs} == parameters
    assert {r["name"] for r in refs} == {"prom-creds"}
    for so in by_kind(objs, "ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                assert trigger["metadata"]["authModes"] == mode
                assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_prometheus_without_auth_has_no_credentials(helm: Path) -> None:
    objs = chart(helm)
    assert [a["metadata"]["name"] for a in by_kind(objs, "TriggerAuthentication")] == [f"{RELEASE}-keda-orchestrator"]
    for so in by_kind(objs, "ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                assert "authenticationRef" not in trigger and "authModes" not in trigger["metadata"]


def test_prometheus_auth_without_secret_fails_naming_the_key(helm: Path) -> None:
    message = render_error(helm, prometheus__auth__mode="bearer")
    assert "prometheus.auth.secretName" in message


# --- NOTES.txt (shown when the chart is installed alone; Helm 4 renders it without a cluster) ------------------


def _notes(helm4: Path, *sets: str) -> str:
    import charttree

    charts = charttree.prepared_charts(helm4)
    args = [str(helm4), "install", "fleet", str(charts / CHART.name), "-n", "team", "--dry-run=client"]
    for item in sets:
        args += ["--set", item]
    env = {**charttree.helm_env(charts.parent / "helm-home"), "KUBECONFIG": "/dev/null"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def test_notes_list_the_scaled_types_and_where_the_queue_is_read(helm4: Path) -> None:
    notes = _notes(helm4)
    for agent_type, (low, high) in ROLLOUT_RANGES.items():
        assert f"fleet-agent-{agent_type}: {low}-{high} replicas" in notes, notes
    assert "http://fleet-orchestrator.team.svc:8080/v1/queue" in notes and "fleet-api-token" in notes

    notes = _notes(helm4, "global.agents.coding.enabled=false", "triggers.queueDepth.source=prometheus")
    assert "fleet-agent-coding" not in notes and "fleet-agent-testing: 8-200 replicas" in notes
    assert "/v1/queue" not in notes and "query Prometheus at" in notes
