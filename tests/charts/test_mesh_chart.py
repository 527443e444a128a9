"""Static tests of charts/mesh (Istio 1.30 ambient policy) with Helm 3 and Helm 4.

They prove that every rendered custom resource is valid against the upstream Istio and Gateway API CRDs
(standard channel unless a value asks for an experimental field), that mTLS is STRICT, that authorization
is deny-by-default with allow rules naming only the ServiceAccounts the umbrella (or Istio, for its
gateways) creates, that L7 rules attach to the waypoint and L4 rules to ztunnel, that fault injection,
load balancing and outlier detection follow the values, that the waypoint and its users agree, that no
Service gets both a VirtualService and a Service-attached HTTPRoute, and that bad values fail with a
message naming the key.

The `helm` fixture (conftest.py) runs each test once with Helm 3 and once with Helm 4.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import crdschema
import pytest
import yaml
from helmrender import CHARTS_DIR, HelmError, by_kind, find, render_chart

CHART = CHARTS_DIR / "mesh"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
RELEASE = "ai-agents"
NAMESPACE = "agents-ns"
# docs/contracts.md: the fixed agent types and ports.
AGENT_TYPES = (
    "coding",
    "testing",
    "security",
    "compliance",
    "documentation",
    "discovery",
)
PORTS = {"http": 8080, "grpc": 9090, "metrics": 9091, "health": 8081}
L7_OPERATION_KEYS = {"paths", "notPaths", "methods", "notMethods", "hosts", "notHosts"}
L7_SOURCE_KEYS = {"requestPrincipals", "notRequestPrincipals"}


def chart(
    helm: Path,
    *values_files: Path,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    **sets: Any,
) -> list[dict[str, Any]]:
    """Render the chart; keyword `a__b=1` means `--set a.b=1`."""
    return render_chart(helm, CHART, *values_files, release=release, namespace=namespace, **sets)


def chart_with(helm: Path, tmp_path: Path, values: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    """Render with a values document written to a file (for lists and maps)."""
    path = tmp_path / f"values-{abs(hash(yaml.safe_dump(values)))}.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return chart(helm, path, **kwargs)


def render_error(helm: Path, *values_files: Path, **sets: Any) -> str:
    with pytest.raises(HelmError) as excinfo:
        chart(helm, *values_files, **sets)
    return str(excinfo.value)


def only_agent_types(*enabled: str) -> dict[str, Any]:
    """global.agents switches that leave only the given types on."""
    return {t: {"enabled": t in enabled} for t in AGENT_TYPES}


def scenario_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def authz(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return by_kind(objs, "AuthorizationPolicy")


def principals_of(policy: dict[str, Any]) -> list[str]:
    return [
        p
        for rule in policy["spec"].get("rules", [])
        for frm in rule.get("from", [])
        for p in frm.get("source", {}).get("principals", [])
    ]


def allowed(policy: dict[str, Any], principal: str, port: int) -> bool:
    """Whether an ALLOW policy has a rule admitting `principal` on `port` (ignoring L7 attributes)."""
    for rule in policy["spec"].get("rules", []):
        sources = [frm.get("source", {}) for frm in rule.get("from", [])]
        if sources and not any(principal in s.get("principals", []) for s in sources):
            continue
        ops = [to.get("operation", {}) for to in rule.get("to", [])]
        if not ops or any(str(port) in op.get("ports", [str(port)]) for op in ops):
            return True
    return False


def sa_name(principal: str, trust_domain: str = "cluster.local", namespace: str = NAMESPACE) -> str:
    """ServiceAccount name of a principal in the release namespace; fails on any other shape."""
    head = f"{trust_domain}/ns/{namespace}/sa/"
    assert principal.startswith(head), f"{principal!r} is not a principal of namespace {namespace!r}"
    return principal[len(head) :]


def umbrella_service_accounts(prefix: str, agent_types: tuple[str, ...] = AGENT_TYPES) -> set[str]:
    """ServiceAccounts the umbrella creates (docs/contracts.md)."""
    return {
        f"{prefix}-orchestrator",
        f"{prefix}-postgresql",
        *(f"{prefix}-agent-{t}" for t in agent_types),
    }


def service_hosts(prefix: str, namespace: str = NAMESPACE) -> dict[str, str]:
    """Mesh target -> Service FQDN, per the contract's Service names."""
    names = {
        "orchestrator": f"{prefix}-orchestrator",
        **{t: f"{prefix}-agent-{t}" for t in AGENT_TYPES},
    }
    return {target: f"{name}.{namespace}.svc.cluster.local" for target, name in names.items()}


# ---------------------------------------------------------------------------------------------------------
# CRD schemas


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.stem)
def test_every_custom_resource_matches_the_standard_crd_schema(
    helm: Path, crd_schema_dir: Path, values_file: Path
) -> None:
    objs = chart(helm, values_file)
    assert objs, "scenario renders nothing"
    for obj in objs:
        assert crdschema.covers(obj), f"{obj['kind']} {obj['apiVersion']} has no upstream CRD"
        source = crdschema.validate(obj)
        assert "experimental" not in source, f"{obj['kind']} {obj['metadata']['name']} needs the experimental channel"
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_ci_scenarios_start_with_a_purpose_comment() -> None:
    assert {p.name.split("-", 1)[1] for p in CI_VALUES} >= {
        "defaults-values.yaml",
        "chaos-values.yaml",
        "lb-strategies-values.yaml",
        "no-gateway-values.yaml",
    }
    for path in CI_VALUES:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# ") and len(first) > 20, f"{path.name} must start with a purpose comment"


def test_httproute_retry_is_the_only_experimental_field(helm: Path, crd_schema_dir: Path) -> None:
    route = find(
        chart(helm, gateway__httpRoute__retry__enabled="true"),
        "HTTPRoute",
        f"{RELEASE}-orchestrator-http",
    )
    assert route["spec"]["rules"][0]["retry"]["attempts"] == DEFAULTS["gateway"]["httpRoute"]["retry"]["attempts"]
    assert "experimental" in crdschema.validate(route)
    without = copy.deepcopy(route)
    del without["spec"]["rules"][0]["retry"]
    assert "standard" in crdschema.validate(without)


def test_crd_validation_rejects_what_istio_would(crd_schema_dir: Path, helm: Path) -> None:
    dr = find(chart(helm), "DestinationRule", f"{RELEASE}-orchestrator")
    dr["spec"]["trafficPolicy"]["loadBalancer"]["simple"] = "FASTEST"
    with pytest.raises(crdschema.CRDSchemaError, match="FASTEST"):
        crdschema.validate(dr)
    dr = find(chart(helm), "DestinationRule", f"{RELEASE}-orchestrator")
    dr["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xx"] = 5
    with pytest.raises(crdschema.CRDSchemaError, match="consecutive5xx"):
        crdschema.validate(dr)


# ---------------------------------------------------------------------------------------------------------
# mTLS


def test_peer_authentication_is_strict_for_the_namespace(helm: Path) -> None:
    pas = by_kind(chart(helm), "PeerAuthentication")
    namespace_wide = [pa for pa in pas if "selector" not in pa["spec"]]
    assert len(namespace_wide) == 1
    assert namespace_wide[0]["spec"]["mtls"]["mode"] == "STRICT"
    assert not [pa for pa in pas if "portLevelMtls" in pa["spec"]], "no plaintext exception by default"


def test_outside_mesh_prometheus_gets_only_a_metrics_port_exception(helm: Path) -> None:
    objs = chart(helm, prometheus__source="outsideMesh")
    exceptions = [pa for pa in by_kind(objs, "PeerAuthentication") if "portLevelMtls" in pa["spec"]]
    assert len(exceptions) == 1
    pa = exceptions[0]["spec"]
    assert pa["mtls"]["mode"] == "STRICT"
    assert pa["portLevelMtls"] == {PORTS["metrics"]: {"mode": "PERMISSIVE"}}, "DISABLE is ignored by ztunnel"
    # portLevelMtls requires a selector (CEL rule in the CRD, not checked by jsonschema).
    assert pa["selector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
    metrics = find(objs, "AuthorizationPolicy", f"{RELEASE}-metrics")
    assert principals_of(metrics) == [], "a plaintext scraper has no identity to match"
    assert allowed(metrics, "", PORTS["metrics"]) and not allowed(metrics, "", PORTS["grpc"])


def test_peer_authentication_can_be_left_to_the_platform(helm: Path) -> None:
    assert by_kind(chart(helm, peerAuthentication__enabled="false"), "PeerAuthentication") == []


# ---------------------------------------------------------------------------------------------------------
# Authorization


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.stem)
def test_default_deny_and_every_principal_is_a_known_service_account(helm: Path, values_file: Path) -> None:
    values = scenario_values(values_file)
    gateway_on = values.get("gateway", {}).get("enabled", True)
    waypoint_on = values.get("waypoint", {}).get("enabled", True)
    objs = chart(helm, values_file)
    policies = authz(objs)
    deny = find(objs, "AuthorizationPolicy", f"{RELEASE}-allow-nothing")
    assert deny["spec"].get("action", "ALLOW") == "ALLOW" and not deny["spec"].get("rules"), "allow-nothing"
    known = umbrella_service_accounts(RELEASE)
    if gateway_on:
        known.add(f"{RELEASE}-gateway-istio")
    if waypoint_on:
        known.add(f"{RELEASE}-waypoint")
    prom = DEFAULTS["prometheus"]
    prom_principal = f"cluster.local/ns/{prom['namespace']}/sa/{prom['serviceAccount']}"
    for policy in policies:
        assert policy["spec"].get("action", "ALLOW") == "ALLOW", "allow-list model: no DENY/CUSTOM policies"
        for principal in principals_of(policy):
            if principal == prom_principal:
                continue
            assert sa_name(principal) in known, f"{policy['metadata']['name']} names unknown SA {principal}"


def test_allow_rules_cover_the_required_flows(helm: Path) -> None:
    objs = chart(helm)
    p = f"cluster.local/ns/{NAMESPACE}/sa/{RELEASE}"
    orch = find(objs, "AuthorizationPolicy", f"{RELEASE}-orchestrator")
    assert orch["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/name": "orchestrator",
    }
    for agent in AGENT_TYPES:
        assert allowed(orch, f"{p}-agent-{agent}", PORTS["grpc"])
        assert not allowed(orch, f"{p}-agent-{agent}", PORTS["http"]), "agents only speak gRPC"
    for port in (PORTS["http"], PORTS["grpc"]):
        assert allowed(orch, f"{p}-gateway-istio", port)
    assert not allowed(orch, f"cluster.local/ns/other/sa/{RELEASE}-agent-coding", PORTS["grpc"])
    db = find(objs, "AuthorizationPolicy", f"{RELEASE}-postgresql")
    assert db["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "postgresql"
    assert principals_of(db) == [f"{p}-orchestrator"] and allowed(db, f"{p}-orchestrator", 5432)
    metrics = find(objs, "AuthorizationPolicy", f"{RELEASE}-metrics")
    prom = DEFAULTS["prometheus"]
    prom_principal = f"cluster.local/ns/{prom['namespace']}/sa/{prom['serviceAccount']}"
    assert allowed(metrics, prom_principal, PORTS["metrics"])
    assert not allowed(metrics, prom_principal, PORTS["grpc"])


def test_prometheus_can_be_matched_by_namespace(helm: Path) -> None:
    metrics = find(
        chart(helm, prometheus__source="namespace", prometheus__namespace="observability"),
        "AuthorizationPolicy",
        f"{RELEASE}-metrics",
    )
    sources = [frm["source"] for rule in metrics["spec"]["rules"] for frm in rule["from"]]
    assert sources == [{"namespaces": ["observability"]}]


def test_clients_prefix_and_trust_domain_flow_into_principals(helm: Path, tmp_path: Path) -> None:
    objs = chart_with(
        helm,
        tmp_path,
        {
            "global": {
                "namePrefix": "fleet",
                "agents": only_agent_types("coding", "testing"),
                "trustDomain": "example.org",
            },
            "authorization": {"orchestratorClients": ["cli"]},
        },
    )
    orch = find(objs, "AuthorizationPolicy", "fleet-orchestrator")
    names = {sa_name(p, "example.org") for p in principals_of(orch)}
    assert names == {
        "fleet-agent-coding",
        "fleet-agent-testing",
        "fleet-gateway-istio",
        "fleet-waypoint",
        "cli",
    }
    assert allowed(orch, f"example.org/ns/{NAMESPACE}/sa/cli", PORTS["http"])
    l7 = find(objs, "AuthorizationPolicy", "fleet-orchestrator-l7")
    assert {sa_name(p, "example.org") for p in principals_of(l7)} == names - {"fleet-waypoint"}
    assert {dr["metadata"]["name"] for dr in by_kind(objs, "DestinationRule")} == {
        "fleet-orchestrator",
        "fleet-agent-coding",
        "fleet-agent-testing",
    }


def test_default_deny_scope_release_selects_only_release_pods(helm: Path) -> None:
    deny = find(
        chart(helm, authorization__defaultDeny__scope="release"),
        "AuthorizationPolicy",
        f"{RELEASE}-allow-nothing",
    )
    assert deny["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
    assert "rules" not in deny["spec"]


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.stem)
def test_l7_rules_attach_to_the_waypoint_and_l4_rules_to_ztunnel(helm: Path, values_file: Path) -> None:
    for policy in authz(chart(helm, values_file)):
        spec, name = policy["spec"], policy["metadata"]["name"]
        assert not ("selector" in spec and "targetRefs" in spec), f"{name}: selector and targetRefs are exclusive"
        is_l7 = any(
            L7_OPERATION_KEYS & set(to.get("operation", {})) or L7_SOURCE_KEYS & set(frm.get("source", {}))
            for rule in spec.get("rules", [])
            for to in rule.get("to", [])
            for frm in rule.get("from", []) or [{}]
        )
        if is_l7:
            assert "targetRefs" in spec, f"{name}: L7 rules must attach to the waypoint with targetRefs"


# ---------------------------------------------------------------------------------------------------------
# Waypoint


def test_waypoint_gateway_and_its_users_agree(helm: Path) -> None:
    objs = chart(helm)
    wp = find(objs, "Gateway", f"{RELEASE}-waypoint")
    assert wp["spec"]["gatewayClassName"] == "istio-waypoint"
    assert wp["metadata"]["labels"]["istio.io/waypoint-for"] == "service"
    assert wp["spec"]["listeners"] == [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]
    services = {
        f"{RELEASE}-orchestrator",
        *(f"{RELEASE}-agent-{t}" for t in AGENT_TYPES),
    }
    targeted = [p for p in authz(objs) if "targetRefs" in p["spec"]]
    assert targeted, "the waypoint must check callers (ztunnel sees the waypoint's identity)"
    for policy in targeted:
        for ref in policy["spec"]["targetRefs"]:
            if ref["kind"] == "Gateway":
                assert ref["name"] == wp["metadata"]["name"], "policies attach to this chart's waypoint"
            else:
                assert (ref["group"], ref["kind"]) == ("", "Service") and ref["name"] in services
    orch = find(objs, "AuthorizationPolicy", f"{RELEASE}-orchestrator")
    assert allowed(orch, f"cluster.local/ns/{NAMESPACE}/sa/{RELEASE}-waypoint", PORTS["grpc"])
    wp_deny = find(objs, "AuthorizationPolicy", f"{RELEASE}-waypoint-allow-nothing")
    assert not wp_deny["spec"].get("rules"), "Services without their own L7 policy stay closed at the waypoint"


def test_without_waypoint_nothing_relies_on_it(helm: Path) -> None:
    objs = chart(helm, waypoint__enabled="false")
    assert [g["metadata"]["name"] for g in by_kind(objs, "Gateway")] == [f"{RELEASE}-gateway"]
    assert not [p for p in authz(objs) if "targetRefs" in p["spec"]]
    for policy in authz(objs):
        assert not any(p.endswith(f"/sa/{RELEASE}-waypoint") for p in principals_of(policy))
    assert by_kind(objs, "VirtualService") == []


@pytest.mark.parametrize("feature", ["chaos__enabled", "meshRoutes__enabled"])
def test_waypoint_features_fail_without_a_waypoint(helm: Path, feature: str) -> None:
    message = render_error(helm, waypoint__enabled="false", **{feature: "true"})
    assert "waypoint.enabled" in message and feature.replace("__", ".") in message


# ---------------------------------------------------------------------------------------------------------
# Gateway API ingress


def test_ingress_routes_reach_the_orchestrator(helm: Path) -> None:
    objs = chart(helm, **{"gateway.hostnames[0]": "agents.example.com"})
    gw = find(objs, "Gateway", f"{RELEASE}-gateway")
    assert gw["spec"]["gatewayClassName"] == "istio"
    assert gw["spec"]["listeners"][0]["protocol"] == "HTTP"
    assert gw["spec"]["listeners"][0]["port"] == DEFAULTS["gateway"]["port"]
    http = find(objs, "HTTPRoute", f"{RELEASE}-orchestrator-http")
    grpc = find(objs, "GRPCRoute", f"{RELEASE}-orchestrator-grpc")
    for route, port in ((http, PORTS["http"]), (grpc, PORTS["grpc"])):
        assert route["spec"]["parentRefs"][0]["kind"] == "Gateway"
        assert route["spec"]["parentRefs"][0]["name"] == gw["metadata"]["name"]
        assert route["spec"]["hostnames"] == ["agents.example.com"]
        backends = [b for rule in route["spec"]["rules"] for b in rule["backendRefs"]]
        assert backends == [{"name": f"{RELEASE}-orchestrator", "port": port}]
    timeouts = http["spec"]["rules"][0]["timeouts"]
    assert timeouts == DEFAULTS["gateway"]["httpRoute"]["timeouts"]
    services = [m["method"]["service"] for m in grpc["spec"]["rules"][0]["matches"]]
    assert services == DEFAULTS["gateway"]["grpcRoute"]["services"]
    assert not any(http["spec"]["rules"][0]["matches"][0]["path"]["value"].startswith(f"/{s}") for s in services)
    gw_policy = find(objs, "AuthorizationPolicy", f"{RELEASE}-gateway")
    assert gw_policy["spec"]["selector"]["matchLabels"] == {
        "gateway.networking.k8s.io/gateway-name": gw["metadata"]["name"]
    }


def test_routes_are_toggleable(helm: Path) -> None:
    objs = chart(helm, gateway__grpcRoute__enabled="false")
    assert by_kind(objs, "GRPCRoute") == [] and len(by_kind(objs, "HTTPRoute")) == 1
    objs = chart(helm, gateway__httpRoute__enabled="false")
    assert by_kind(objs, "HTTPRoute") == [] and len(by_kind(objs, "GRPCRoute")) == 1


def test_no_gateway_removes_ingress_and_its_principal(helm: Path) -> None:
    objs = chart(helm, gateway__enabled="false")
    assert [g["metadata"]["name"] for g in by_kind(objs, "Gateway")] == [f"{RELEASE}-waypoint"]
    assert by_kind(objs, "HTTPRoute") == [] and by_kind(objs, "GRPCRoute") == []
    for policy in authz(objs):
        assert not any(p.endswith("-gateway-istio") for p in principals_of(policy))
        assert "gateway.networking.k8s.io/gateway-name" not in policy["spec"].get("selector", {}).get("matchLabels", {})


# ---------------------------------------------------------------------------------------------------------
# DestinationRules


def test_destination_rule_per_service_with_circuit_breaking(helm: Path) -> None:
    objs = chart(helm)
    drs = {dr["spec"]["host"]: dr for dr in by_kind(objs, "DestinationRule")}
    assert set(drs) == set(service_hosts(RELEASE).values())
    expected_od = DEFAULTS["destinationRules"]["defaults"]["outlierDetection"]
    for dr in drs.values():
        policy = dr["spec"]["trafficPolicy"]
        assert policy["loadBalancer"]["simple"] == "LEAST_REQUEST"
        od = policy["outlierDetection"]
        assert {
            "consecutive5xxErrors",
            "interval",
            "baseEjectionTime",
            "maxEjectionPercent",
        } <= set(od)
        assert od == expected_od
        assert policy["connectionPool"] == DEFAULTS["destinationRules"]["defaults"]["connectionPool"]


def test_load_balancer_strategy_per_service(helm: Path) -> None:
    values_file = CHART / "ci" / "03-lb-strategies-values.yaml"
    wanted = scenario_values(values_file)["destinationRules"]["services"]
    assert {s["loadBalancer"] for s in wanted.values()} == {
        "LEAST_REQUEST",
        "ROUND_ROBIN",
        "RANDOM",
    }
    objs = chart(helm, values_file)
    hosts = service_hosts(RELEASE)
    for target, settings in wanted.items():
        dr = next(d for d in by_kind(objs, "DestinationRule") if d["spec"]["host"] == hosts[target])
        policy = dr["spec"]["trafficPolicy"]
        assert policy["loadBalancer"]["simple"] == settings["loadBalancer"], target
        expected_od = {
            **DEFAULTS["destinationRules"]["defaults"]["outlierDetection"],
            **settings.get("outlierDetection", {}),
        }
        assert policy["outlierDetection"] == expected_od, f"{target}: override merges over the defaults"


@pytest.mark.parametrize("strategy", ["LEAST_CONN", "least_request", "PASSTHROUGH"])
def test_invalid_load_balancer_is_rejected_by_the_schema(helm: Path, strategy: str) -> None:
    message = render_error(helm, destinationRules__services__testing__loadBalancer=strategy)
    assert "destinationRules/services/testing/loadBalancer" in message
    assert "LEAST_REQUEST" in message and "ROUND_ROBIN" in message and "RANDOM" in message


# ---------------------------------------------------------------------------------------------------------
# Fault injection


def fault_routes(vs: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """http routes with a fault, keyed by the port they match."""
    return {r["match"][0]["port"]: r for r in vs["spec"]["http"] if "fault" in r}


def test_chaos_is_off_by_default(helm: Path) -> None:
    assert by_kind(chart(helm), "VirtualService") == []


def test_fault_injection_defaults_to_5_percent_delay_and_2_percent_abort(
    helm: Path,
) -> None:
    values_file = CHART / "ci" / "02-chaos-values.yaml"
    targets = scenario_values(values_file)["chaos"]["targets"]
    objs = chart(helm, values_file)
    hosts = service_hosts(RELEASE)
    vss = by_kind(objs, "VirtualService")
    assert sorted(vs["spec"]["hosts"][0] for vs in vss) == sorted(hosts[t] for t in targets)
    for vs in vss:
        routes = fault_routes(vs)
        assert set(routes) == {PORTS["http"], PORTS["grpc"]}
        for port, route in routes.items():
            assert route["fault"]["delay"]["percentage"]["value"] == 5
            assert route["fault"]["abort"]["percentage"]["value"] == 2
            assert route["route"][0]["destination"] == {
                "host": vs["spec"]["hosts"][0],
                "port": {"number": port},
            }
            assert set(route["retries"]["retryOn"].split(",")) >= {
                "5xx",
                "reset",
                "connect-failure",
                "unavailable",
            }
            assert route["retries"]["attempts"] >= 1 and route["retries"]["perTryTimeout"]
        assert routes[PORTS["http"]]["fault"]["abort"] == {
            "percentage": {"value": 2},
            "httpStatus": 503,
        }
        assert routes[PORTS["grpc"]]["fault"]["abort"] == {
            "percentage": {"value": 2},
            "grpcStatus": "UNAVAILABLE",
        }
        assert "match" not in vs["spec"]["http"][-1], "other ports pass through"


def test_fault_percentages_and_delay_are_overridable(helm: Path, tmp_path: Path) -> None:
    chaos = {
        "enabled": True,
        "delay": {"percentage": 12.5, "fixedDelay": "2s"},
        "abort": {"percentage": 7, "httpStatus": 500},
    }
    objs = chart_with(helm, tmp_path, {"chaos": chaos})
    (vs,) = by_kind(objs, "VirtualService")
    for route in fault_routes(vs).values():
        assert route["fault"]["delay"] == {
            "percentage": {"value": 12.5},
            "fixedDelay": "2s",
        }
        assert route["fault"]["abort"]["percentage"]["value"] == 7
    assert fault_routes(vs)[PORTS["http"]]["fault"]["abort"]["httpStatus"] == 500


@pytest.mark.parametrize("value", ["101", "-1"])
def test_fault_percentage_out_of_range_is_rejected(helm: Path, value: str) -> None:
    assert "chaos/abort/percentage" in render_error(helm, chaos__enabled="true", chaos__abort__percentage=value)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.stem)
def test_no_service_has_both_a_virtualservice_and_a_service_httproute(helm: Path, values_file: Path) -> None:
    objs = chart(helm, values_file)
    vs_services = {vs["spec"]["hosts"][0].split(".")[0] for vs in by_kind(objs, "VirtualService")}
    route_services = {
        ref["name"]
        for route in by_kind(objs, "HTTPRoute")
        for ref in route["spec"]["parentRefs"]
        if ref.get("kind") == "Service"
    }
    assert not vs_services & route_services


def test_mesh_routes_attach_to_services_through_the_waypoint(helm: Path) -> None:
    objs = chart(helm, CHART / "ci" / "02-chaos-values.yaml")
    mesh_routes = [r for r in by_kind(objs, "HTTPRoute") if r["spec"]["parentRefs"][0]["kind"] == "Service"]
    assert [r["spec"]["parentRefs"][0]["name"] for r in mesh_routes] == [f"{RELEASE}-agent-security"]
    assert mesh_routes[0]["spec"]["parentRefs"][0]["port"] == PORTS["http"]


def test_virtualservice_and_mesh_route_on_one_service_fails(helm: Path, tmp_path: Path) -> None:
    with pytest.raises(HelmError) as excinfo:
        chart_with(
            helm,
            tmp_path,
            {
                "chaos": {"enabled": True, "targets": ["orchestrator", "coding"]},
                "meshRoutes": {"enabled": True, "services": ["coding"]},
            },
        )
    message = str(excinfo.value)
    assert "chaos.targets" in message and "meshRoutes.services" in message and '"coding"' in message


def test_chaos_target_must_be_a_deployed_agent_type(helm: Path, tmp_path: Path) -> None:
    with pytest.raises(HelmError, match=r"chaos\.targets"):
        chart_with(
            helm,
            tmp_path,
            {
                "global": {"agents": only_agent_types("coding")},
                "chaos": {"enabled": True, "targets": ["testing"]},
            },
        )


# ---------------------------------------------------------------------------------------------------------
# Telemetry and values hygiene


def test_telemetry_tracing_provider_and_sampling(helm: Path) -> None:
    (tel,) = by_kind(
        chart(
            helm,
            telemetry__tracing__provider="jaeger-otlp",
            telemetry__tracing__samplingPercentage="25",
        ),
        "Telemetry",
    )
    assert tel["spec"]["tracing"] == [{"providers": [{"name": "jaeger-otlp"}], "randomSamplingPercentage": 25}]
    assert tel["spec"]["metrics"] == [{"providers": [{"name": DEFAULTS["telemetry"]["metrics"]["provider"]}]}]
    assert "selector" not in tel["spec"] and "targetRefs" not in tel["spec"]
    assert by_kind(chart(helm, telemetry__enabled="false"), "Telemetry") == []


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("chaos__enabeld", "enabeld"),
        ("waypoint__enable", "enable"),
        ("gatway__enabled", "gatway"),
    ],
)
def test_typo_in_a_key_is_rejected(helm: Path, key: str, shown: str) -> None:
    message = render_error(helm, **{key: "true"})
    assert shown in message and "additional properties" in message.lower()


def test_umbrella_injected_values_are_accepted(helm: Path) -> None:
    objs = chart(helm, enabled="true", global__namePrefix="p", global__imageRegistry="r.example")
    assert {o["metadata"]["name"] for o in by_kind(objs, "Gateway")} == {
        "p-gateway",
        "p-waypoint",
    }


def test_every_object_carries_the_chart_labels(helm: Path) -> None:
    for obj in chart(helm, CHART / "ci" / "02-chaos-values.yaml"):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/name"] == "mesh"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
