"""Static tier: one cluster of a multi-cluster Istio ambient mesh (docs/multi-cluster.md).

What passing proves, with Helm 3 and Helm 4:
- `global.multiCluster.{clusterName,meshID,network}` and `global.trustDomain(Aliases)`, set once, reach every chart:
  every pod the umbrella creates carries `topology.istio.io/network`, no Service or Gateway does (there it would
  mark an east-west gateway); every principal of every AuthorizationPolicy is rendered for each trust domain
  and for no other; both monitors give every target `cluster=<clusterName>` (applied with Prometheus' relabeling
  semantics to the umbrella's own pods); every KEDA query selects the cluster; every rule aggregation keeps
  `cluster`; every dashboard has a `cluster` variable that defaults to All and every query uses it;
- a real PromQL engine (promtool) agrees: the KEDA and dashboard queries pick this cluster's series, the
  recording rules keep two clusters apart, and without a cluster label the results are what they were;
- the default render carries none of it, and the subcharts installed alone read the same globals;
- bad values fail: the schemas reject malformed names (naming the key), and contradictory values fail naming
  the keys; the notes print the istiod and ztunnel values the platform must use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from helmrender import CHARTS_DIR, HelmError, by_kind, chart_dir, render, run_helm
from test_observability_chart import expect, pod_meta_labels, promtool_test_rules, relabel, selects

NAMESPACE = "ai-agents"
RELEASE = "ai-agents"
SCENARIO = CHARTS_DIR / "ai-agents" / "ci" / "06-multicluster-values.yaml"
SCENARIO_VALUES = yaml.safe_load(SCENARIO.read_text())
CLUSTER = SCENARIO_VALUES["global"]["multiCluster"]["clusterName"]
NETWORK = SCENARIO_VALUES["global"]["multiCluster"]["network"]
MESH_ID = SCENARIO_VALUES["global"]["multiCluster"]["meshID"]
TRUST_DOMAINS = [SCENARIO_VALUES["global"]["trustDomain"], *SCENARIO_VALUES["global"]["trustDomainAliases"]]
NETWORK_LABEL = "topology.istio.io/network"
ALL_ON = {
    "mesh": {"enabled": True, "keda": {"orchestratorTrigger": True}},
    "observability": {"enabled": True},
    "kedaScalers": {"enabled": True},
}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}
DASHBOARDS = sorted((CHARTS_DIR / "observability" / "dashboards").glob("*.json"))
APPLICATION_CHARTS = ("ai-agents", "mesh", "observability", "keda-scalers")

Obj = dict[str, Any]


def render_values(helm: Path, chart: str, values: dict[str, Any], tmp_path: Path, **kwargs: Any) -> list[Obj]:
    path = tmp_path / f"values-{chart}-{abs(hash(json.dumps(values, sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return render(helm, CHARTS_DIR / chart, values_files=[path], release=RELEASE, namespace=NAMESPACE, **kwargs)


def render_error(helm: Path, chart: str, values: dict[str, Any], tmp_path: Path) -> str:
    with pytest.raises(HelmError) as excinfo:
        render_values(helm, chart, values, tmp_path)
    return str(excinfo.value)


def scenario(helm: Path, **sets: str) -> list[Obj]:
    return render(helm, CHARTS_DIR / "ai-agents", values_files=[SCENARIO], set_values=sets, namespace=NAMESPACE)


def single_cluster(helm: Path, tmp_path: Path) -> list[Obj]:
    return render_values(helm, "ai-agents", ALL_ON, tmp_path)


def pod_labels(obj: Obj) -> dict[str, str]:
    meta = obj["metadata"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]
    return dict(meta.get("labels") or {})


def principals(objs: list[Obj]) -> dict[str, list[str]]:
    return {
        policy["metadata"]["name"]: [
            p
            for rule in policy["spec"].get("rules", [])
            for frm in rule.get("from", [])
            for p in frm.get("source", {}).get("principals", [])
        ]
        for policy in by_kind(objs, "AuthorizationPolicy")
    }


def endpoints(monitor: Obj) -> list[Obj]:
    return list(monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"])


def keda_queries(objs: list[Obj]) -> list[str]:
    return [
        t["metadata"]["query"]
        for so in by_kind(objs, "ScaledObject")
        for t in so["spec"]["triggers"]
        if t["type"] == "prometheus"
    ]


def rule_exprs(objs: list[Obj]) -> dict[str, str]:
    return {
        r.get("record") or r["alert"]: r["expr"]
        for rule in by_kind(objs, "PrometheusRule")
        for group in rule["spec"]["groups"]
        for r in group["rules"]
    }


# --- labels on pods, never on Services ---------------------------------------------------------------------


def test_every_pod_is_placed_on_the_network_and_no_service_or_gateway_is(helm: Path) -> None:
    objs = scenario(helm)
    workloads = [o for o in objs if o["kind"] in POD_KINDS]
    assert {o["kind"] for o in workloads} >= {"Deployment", "StatefulSet", "Pod"}
    missing = [f"{o['kind']}/{o['metadata']['name']}" for o in workloads if pod_labels(o).get(NETWORK_LABEL) != NETWORK]
    assert not missing, f"pods without {NETWORK_LABEL}={NETWORK}: {missing}"
    labelled = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objs
        if o["kind"] not in POD_KINDS and NETWORK_LABEL in (o["metadata"].get("labels") or {})
    ]
    assert not labelled, f"only pods may carry {NETWORK_LABEL} (on a Service it marks an east-west gateway): {labelled}"
    # The network label is not part of any selector: pods of an upgraded release stay selected.
    for obj in objs:
        selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        assert NETWORK_LABEL not in selector, obj["metadata"]["name"]


def test_default_render_has_no_multicluster_trace(helm: Path, tmp_path: Path) -> None:
    objs = single_cluster(helm, tmp_path)
    assert not [o for o in objs if o["kind"] in POD_KINDS and NETWORK_LABEL in pod_labels(o)]
    for monitor in by_kind(objs, "ServiceMonitor"):
        assert not [r for e in endpoints(monitor) for r in e["relabelings"] if r.get("targetLabel") == "cluster"]
    queries = keda_queries(objs)
    assert queries and not [q for q in queries if "cluster" in q]
    found = [p for ps in principals(objs).values() for p in ps]
    assert found and all(p.startswith("cluster.local/ns/") for p in found)


# --- trust domains -----------------------------------------------------------------------------------------


def test_every_principal_is_rendered_once_per_trust_domain(helm: Path) -> None:
    by_policy = principals(scenario(helm))
    assert len([name for name, ps in by_policy.items() if ps]) >= 4  # orchestrator, -l7, postgresql, metrics
    for name, found in by_policy.items():
        identities: dict[str, set[str]] = {}
        for principal in found:
            domain, _, rest = principal.partition("/")
            assert domain in TRUST_DOMAINS, f"{name}: {principal} is of no configured trust domain"
            identities.setdefault(rest, set()).add(domain)
        incomplete = {rest: domains for rest, domains in identities.items() if domains != set(TRUST_DOMAINS)}
        assert not incomplete, f"{name}: identities not admitted from every trust domain: {incomplete}"
        assert len(found) == len(set(found)), f"{name} repeats a principal"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"trustDomain": "other.example"}, ["trustDomain", "global.trustDomain", "other.example"]),
        (
            {"global": {"multiCluster": {"clusterName": "east"}}},
            ["global.multiCluster.clusterName", "global.multiCluster.meshID", "global.multiCluster.network"],
        ),
        ({"global": {"multiCluster": {"clusterName": "east", "meshID": "m"}}}, ["global.multiCluster.network"]),
    ],
    ids=["old-trust-domain-disagrees", "cluster-without-mesh-id-and-network", "cluster-without-network"],
)
def test_mesh_fails_on_contradictions_naming_the_keys(
    helm: Path, tmp_path: Path, values: dict[str, Any], message: list[str]
) -> None:
    error = render_error(helm, "mesh", values, tmp_path)
    for fragment in message:
        assert fragment in error, f"{fragment!r} not in:\n{error}"


def test_the_old_trust_domain_still_renders_when_it_agrees(helm: Path, tmp_path: Path) -> None:
    objs = render_values(
        helm, "mesh", {"trustDomain": "corp.example", "global": {"trustDomain": "corp.example"}}, tmp_path
    )
    found = [p for ps in principals(objs).values() for p in ps]
    assert found and all(p.startswith("corp.example/ns/") for p in found)


# --- metrics: every series labelled with the cluster -------------------------------------------------------


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor"])
def test_every_monitor_labels_each_scraped_pod_with_the_cluster(helm: Path, kind: str) -> None:
    objs = scenario(helm, **{"observability.podMonitor.enabled": "true"})
    (monitor,) = by_kind(objs, kind)
    deployments = [d for d in by_kind(objs, "Deployment") if selects(monitor["spec"]["selector"], pod_labels(d))]
    assert {d["metadata"]["name"] for d in deployments} >= {f"{RELEASE}-orchestrator", f"{RELEASE}-agent-coding"}
    for endpoint in endpoints(monitor):
        for deployment in deployments:
            meta = pod_meta_labels(deployment) | {"__meta_kubernetes_service_name": deployment["metadata"]["name"]}
            target = relabel(meta, endpoint["relabelings"])
            assert target is not None and target["cluster"] == CLUSTER, deployment["metadata"]["name"]
    # A user's own relabelings come after the chart's, so they may still override it.
    extra = scenario(helm, **{"observability.serviceMonitor.relabelings[0].targetLabel": "team"})
    (sm,) = by_kind(extra, "ServiceMonitor")
    assert [r.get("targetLabel") for r in endpoints(sm)[0]["relabelings"]][-2:] == ["cluster", "team"]


# The queue read from Prometheus (not from this cluster's orchestrator), so that every trigger is a query.
PROMETHEUS_QUEUE = {"kedaScalers.triggers.queueDepth.source": "prometheus"}


def test_keda_queries_select_this_cluster(helm: Path) -> None:
    queries = keda_queries(scenario(helm, **PROMETHEUS_QUEUE))
    assert len(queries) >= 6 * 2
    assert all(f'cluster=~"{CLUSTER}|"' in q for q in queries), queries


def test_every_rule_aggregation_keeps_the_cluster(helm: Path) -> None:
    exprs = rule_exprs(scenario(helm))
    assert len(exprs) > 10
    for name, expr in exprs.items():
        for clause in re.findall(r"\bby \(([^)]*)\)", expr):
            assert "cluster" in [label.strip() for label in clause.split(",")], f"{name}: by ({clause})"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_has_a_cluster_variable_that_every_query_uses(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert variables.index("cluster") < variables.index("namespace"), "cluster narrows the namespaces listed"
    cluster = next(v for v in dashboard["templating"]["list"] if v["name"] == "cluster")
    assert (cluster["includeAll"], cluster["allValue"], cluster["current"]["value"]) == (True, ".*", "$__all")
    assert cluster["definition"] == "label_values(ai_agents_build_info, cluster)"
    namespace = next(v for v in dashboard["templating"]["list"] if v["name"] == "namespace")
    assert 'cluster=~"$cluster"' in namespace["definition"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            if "expr" not in target:
                continue
            expr = target["expr"]
            # Istio labels its own series with the istiod clusterName, which the chart's clusterName equals.
            matcher = 'destination_cluster=~"$cluster"' if "istio_" in expr else 'cluster=~"$cluster"'
            selectors = re.findall(r"\{[^}]*\}", expr)
            assert selectors and all(matcher in s for s in selectors), f"{panel['title']}: {expr}"


# --- the same queries on a real PromQL engine ---------------------------------------------------------------


CODING = '{agent_type="coding"}'


def _queue_depth_query(objs: list[Obj]) -> str:
    return next(q for q in keda_queries(objs) if "ai_agents_queue_depth" in q and 'agent_type="coding"' in q)


def _queue_panel() -> str:
    dashboard = json.loads((CHARTS_DIR / "observability" / "dashboards" / "performance.json").read_text())
    panel = next(p for p in dashboard["panels"] if p["title"] == "Queue length by agent type")
    return str(panel["targets"][0]["expr"]).replace("$namespace", NAMESPACE)


def test_promql_engine_scopes_keda_and_dashboards_and_keeps_clusters_apart_in_rules(helm: Path, tmp_path: Path) -> None:
    multi = scenario(helm, **PROMETHEUS_QUEUE)
    single = render_values(
        helm,
        "ai-agents",
        {**ALL_ON, "kedaScalers": {"enabled": True, "triggers": {"queueDepth": {"source": "prometheus"}}}},
        tmp_path,
    )
    requests = rule_exprs(multi)["ai_agents:requests:rate5m"]
    assert requests == rule_exprs(single)["ai_agents:requests:rate5m"], "rules do not depend on the cluster name"
    queue = f'ai_agents_queue_depth{{namespace="{NAMESPACE}",agent_type="coding"'
    http = f'ai_agents_http_requests_total{{namespace="{NAMESPACE}",status="200"'
    tests: dict[str, Any] = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'{queue},cluster="{CLUSTER}"}}', "values": "5x10"},
                    {"series": f'{queue},cluster="west"}}', "values": "50x10"},
                    {"series": f'{http},cluster="{CLUSTER}"}}', "values": "0+60x10"},
                    {"series": f'{http},cluster="west"}}', "values": "0+120x10"},
                ],
                "promql_expr_test": [
                    # KEDA in this cluster sees only this cluster's queue, even where Prometheus holds both.
                    expect(_queue_depth_query(multi), "5m", ("{}", 5)),
                    # The dashboard: one cluster, or All adding the clusters' queues up.
                    expect(_queue_panel().replace("$cluster", CLUSTER), "5m", (CODING, 5)),
                    expect(_queue_panel().replace("$cluster", ".*"), "5m", (CODING, 55)),
                    # The recording rule keeps each cluster's request rate apart.
                    expect(
                        requests,
                        "10m",
                        (f'{{cluster="{CLUSTER}",namespace="{NAMESPACE}"}}', 1),
                        (f'{{cluster="west",namespace="{NAMESPACE}"}}', 2),
                    ),
                ],
            },
            {
                # One cluster without the label (the default, or a Prometheus that does not relabel): the same
                # queries return what they did before.
                "interval": "1m",
                "input_series": [
                    {"series": f"{queue}}}", "values": "7x10"},
                    {"series": f"{http}}}", "values": "0+60x10"},
                ],
                "promql_expr_test": [
                    expect(_queue_depth_query(multi), "5m", ("{}", 7)),
                    expect(_queue_depth_query(single), "5m", ("{}", 7)),
                    expect(_queue_panel().replace("$cluster", ".*"), "5m", (CODING, 7)),
                    expect(requests, "10m", (f'{{namespace="{NAMESPACE}"}}', 1)),
                ],
            },
        ],
    }
    result = promtool_test_rules(tests, tmp_path)
    assert result.returncode == 0, f"promtool test rules:\n{result.stdout}{result.stderr}"
    # Not vacuous: a wrong expectation (KEDA seeing both clusters' queues) fails.
    tests["tests"][0]["promql_expr_test"][0]["exp_samples"][0]["value"] = 55
    assert promtool_test_rules(tests, tmp_path).returncode != 0


# --- the subcharts alone read the same globals ---------------------------------------------------------------


def test_subcharts_installed_alone_read_the_same_globals(helm: Path, tmp_path: Path) -> None:
    values = {"global": SCENARIO_VALUES["global"]}
    mesh = render_values(helm, "mesh", values, tmp_path)
    found = [p for ps in principals(mesh).values() for p in ps]
    assert {p.partition("/")[0] for p in found} == set(TRUST_DOMAINS)
    observability = render_values(helm, "observability", values, tmp_path)
    (sm,) = by_kind(observability, "ServiceMonitor")
    assert {"targetLabel": "cluster", "replacement": CLUSTER, "action": "replace"} in endpoints(sm)[0]["relabelings"]
    keda = render_values(helm, "keda-scalers", values, tmp_path)
    assert keda_queries(keda) and all(f'cluster=~"{CLUSTER}|"' in q for q in keda_queries(keda))


# --- bad values ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chart", APPLICATION_CHARTS)
@pytest.mark.parametrize(
    ("global_values", "fragments"),
    [
        ({"multiCluster": {"clusterName": "East_1"}}, ["clusterName", "pattern"]),
        ({"multiCluster": {"clusterName": "east", "network": "net/east"}}, ["network"]),
        ({"multiCluster": {"clusterName": "east", "meshID": "mesh one"}}, ["meshID"]),
        ({"multiCluster": {"clustername": "east"}}, ["clustername"]),
        ({"trustDomain": "spiffe://east.example"}, ["trustDomain"]),
        ({"trustDomainAliases": "west.example"}, ["trustDomainAliases"]),
        ({"trustDomainAliases": ["West.example"]}, ["trustDomainAliases"]),
    ],
    ids=["cluster-name", "network", "mesh-id", "typo", "trust-domain", "aliases-not-a-list", "alias"],
)
def test_schemas_reject_bad_values_naming_the_key(
    helm: Path, tmp_path: Path, chart: str, global_values: dict[str, Any], fragments: list[str]
) -> None:
    error = render_error(helm, chart, {"global": global_values}, tmp_path)
    for fragment in fragments:
        assert fragment in error, f"{fragment!r} not in:\n{error}"


@pytest.mark.parametrize("chart", APPLICATION_CHARTS)
def test_a_network_without_a_cluster_name_fails_in_every_chart(helm: Path, tmp_path: Path, chart: str) -> None:
    error = render_error(helm, chart, {"global": {"multiCluster": {"network": "network-east"}}}, tmp_path)
    assert "global.multiCluster.clusterName is required" in error and "network-east" in error, error


def test_schemas_declare_the_same_multicluster_globals() -> None:
    declared = {
        chart: {
            key: json.loads((CHARTS_DIR / chart / "values.schema.json").read_text())["properties"]["global"][
                "properties"
            ][key]
            for key in ("trustDomain", "trustDomainAliases", "multiCluster")
        }
        for chart in APPLICATION_CHARTS
    }
    first = declared["ai-agents"]
    assert first["multiCluster"]["additionalProperties"] is False
    for chart, schema in declared.items():
        assert schema == first, f"{chart} declares the multi-cluster globals differently from ai-agents"


# --- notes -------------------------------------------------------------------------------------------------------


def test_notes_print_the_platform_values(helm4: Path) -> None:
    # Helm 3's `install --dry-run=client` still wants a cluster, so NOTES.txt is rendered with Helm 4 only.
    path = str(chart_dir(helm4, CHARTS_DIR / "ai-agents"))
    args = ["install", RELEASE, path, "--dry-run=client", "--namespace", NAMESPACE]
    notes = run_helm(helm4, *args, "--values", str(SCENARIO)).split("NOTES:", 1)[1]
    assert (
        f"global.multiCluster.clusterName={CLUSTER} global.meshID={MESH_ID} global.network={NETWORK}"
        f" env.AMBIENT_ENABLE_MULTI_NETWORK=true meshConfig.trustDomain={TRUST_DOMAINS[0]}" in notes
    ), notes
    assert f"multiCluster.clusterName={CLUSTER} global.network={NETWORK}" in notes
    assert f"kubectl label namespace istio-system {NETWORK_LABEL}={NETWORK}" in notes
    assert f'cluster="{CLUSTER}"' in notes
    plain = run_helm(helm4, *args).split("NOTES:", 1)[1]
    assert "Multi-cluster" not in plain
    deprecated = run_helm(helm4, *args, "--set", "mesh.enabled=true", "--set", "mesh.trustDomain=cluster.local")
    assert "WARNING: mesh.trustDomain is deprecated" in deprecated.split("NOTES:", 1)[1]
