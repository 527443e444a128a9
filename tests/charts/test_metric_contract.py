"""docs/contracts.md is the list of metrics, and everything the charts query is on it.

What passing proves:
- the contract's Metrics table names exactly the `ai_agents_*` metrics the runtime code defines (every process
  kind's registry, built here without starting anything), and the standard series it names exist too: the doc
  cannot drift from the code in either direction;
- every series a dashboard panel, a PrometheusRule or a KEDA trigger reads (as the e2e harness extracts them
  from the rendered charts) is a contract metric, a series the rules record, or an external series that the
  contract lists and whose prefix is allowed below with the reason it exists.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

# The one extractor of the charts' queries, shared with the cluster harness.
from _queries import ChartQuery, chart_queries
from helmrender import CHARTS_DIR, render_chart
from prometheus_client import CollectorRegistry
from promql import contract_metric_names, is_known_runtime_series, metric_names

NAMESPACE = "ai-agents"
CONTRACTS = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"

# Series the runtime does not export, allowed by where they come from; the contract still names each one read.
EXTERNAL_PREFIXES = {
    "istio_": "Istio's ztunnel and waypoint proxies, when the mesh is on",
    "kube_": "kube-state-metrics (part of kube-prometheus-stack): Deployment replicas as KEDA scales them",
    "container_": "cAdvisor, inside the kubelet: per-container CPU and memory",
    "kubelet_": "the kubelet's own metrics",
    "keda_": "KEDA's operator and metrics server",
}
# Series Prometheus adds to every target itself, whatever the target exports.
PROMETHEUS_TARGET_SERIES = {
    "up": "whether the last scrape of the target succeeded",
    "scrape_samples_scraped": "how many samples the last scrape returned",
}


# --- what the runtime code defines --------------------------------------------------------------------------


def _exposed_names(registry: CollectorRegistry) -> set[str]:
    """Names as /metrics shows them: prometheus_client drops a counter's `_total` from the family name."""
    names = set()
    for family in registry.collect():
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def runtime_metric_names() -> set[str]:
    """Every metric a process kind registers: orchestrator, agent, chaos monkey (CommonMetrics)."""
    from ai_agents.observability.metrics import AgentMetrics, CommonMetrics, OrchestratorMetrics, new_registry

    names: set[str] = set()
    names |= _exposed_names(OrchestratorMetrics(new_registry()).registry)
    names |= _exposed_names(AgentMetrics(new_registry(), "coding").registry)
    names |= _exposed_names(CommonMetrics(new_registry(), "chaos-monkey").registry)
    return names


def contract_external_series() -> set[str]:
    """The contract's paragraph of series used by the charts that the runtime does not export."""

    text = CONTRACTS.read_text()
    paragraph = text[text.index("Kubernetes-side series") :].split("\n\n", 1)[0]
    return set(re.findall(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`", paragraph))


def test_contract_lists_exactly_the_metrics_the_runtime_defines() -> None:
    contract = contract_metric_names(CONTRACTS)
    defined = runtime_metric_names()
    assert "ai_agents_queue_depth" in contract, "the contract's Metrics table was not found"
    ours = {n for n in defined if n.startswith("ai_agents_")}
    assert sorted(ours - contract) == [], "defined in the runtime, missing from docs/contracts.md"
    assert sorted(n for n in contract if n.startswith("ai_agents_") and n not in defined) == [], (
        "listed in docs/contracts.md, defined nowhere in the runtime"
    )
    # The standard process series the contract promises come from the registry's collectors.
    assert sorted(n for n in contract if not n.startswith("ai_agents_") and n not in defined) == []


# --- what the charts read -------------------------------------------------------------------------------------


def _rendered(helm: Path) -> list[dict[str, Any]]:
    """Every query source with everything on: dashboards, alert and recording rules, each type's triggers."""
    objects = render_chart(helm, CHARTS_DIR / "observability", namespace=NAMESPACE)
    objects += render_chart(helm, CHARTS_DIR / "keda-scalers", namespace=NAMESPACE)
    for values in sorted((CHARTS_DIR / "keda-scalers" / "ci").glob("*-values.yaml")):
        objects += render_chart(helm, CHARTS_DIR / "keda-scalers", values, namespace=NAMESPACE)
    return objects


def _recorded(objects: list[dict[str, Any]]) -> set[str]:
    return {
        rule["record"]
        for obj in objects
        if obj["kind"] == "PrometheusRule"
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def unlisted_reads(queries: list[ChartQuery], recorded: set[str]) -> dict[str, set[str]]:
    """Per query, the series it reads that neither the runtime (per the contract) nor an allowed source exports."""
    contract = contract_metric_names(CONTRACTS)
    external = contract_external_series()
    bad: dict[str, set[str]] = {}
    for query in queries:
        unknown = set()
        for name in metric_names(query.expr):
            if is_known_runtime_series(name, contract) or name in recorded:
                continue
            allowed_source = name in PROMETHEUS_TARGET_SERIES or name.startswith(tuple(EXTERNAL_PREFIXES))
            if not (allowed_source and name in external):
                unknown.add(name)
        if unknown:
            bad[f"{query.source}: {query.expr}"] = unknown
    return bad


def test_every_chart_query_reads_only_listed_series(helm4: Path) -> None:
    objects = _rendered(helm4)
    queries = chart_queries(objects, namespace=NAMESPACE)
    sources = {q.source.split(" ", 1)[0] for q in queries}
    # Not vacuous: all three kinds of reader were found.
    assert sources == {"dashboard", "rule", "ScaledObject"}, sources
    assert unlisted_reads(queries, _recorded(objects)) == {}


def test_every_series_a_trigger_rates_exists_at_zero_before_its_first_event(helm4: Path) -> None:
    """rate() and increase() never count a series' first sample, so a per-type counter or histogram that appears
    only with its first event hides that event from KEDA (a first burst of long tests never scaled testing). Every
    series a ScaledObject reads through rate() or increase() is exported at zero for every type from the start."""
    from ai_agents.domain import AGENT_TYPES
    from ai_agents.observability.metrics import OrchestratorMetrics, new_registry

    rated = {
        name
        for so in render_chart(helm4, CHARTS_DIR / "keda-scalers", namespace=NAMESPACE)
        if so["kind"] == "ScaledObject"
        for trigger in so["spec"]["triggers"]
        if trigger["type"] == "prometheus"
        for inner in re.findall(r"\b(?:rate|increase)\s*\(([^\[]*)\[", trigger["metadata"]["query"])
        for name in metric_names(inner)
    }
    assert {"ai_agents_tasks_submitted_total", "ai_agents_test_duration_seconds_bucket"} <= rated, rated
    registry = OrchestratorMetrics(new_registry()).registry
    fresh = {(s.name, s.labels.get("agent_type")) for m in registry.collect() for s in m.samples}
    missing = sorted((name, t) for name in rated for t in AGENT_TYPES if (name, t) not in fresh)
    assert missing == [], f"series absent until their first event: {missing}"


def test_external_series_in_the_contract_come_from_an_allowed_source() -> None:
    """The contract may not name a foreign series whose source is not explained above."""
    unexplained = {
        n
        for n in contract_external_series()
        if n not in PROMETHEUS_TARGET_SERIES and not n.startswith(tuple(EXTERNAL_PREFIXES))
    }
    assert unexplained == set()


@pytest.mark.parametrize(
    ("expr", "unknown"),
    [
        ("rate(ai_agents_made_up_total[5m])", {"ai_agents_made_up_total"}),
        ("rate(ai_agents_task_duration_seconds_bucket[5m])", set()),  # a histogram's series
        ("istio_requests_total", set()),  # allowed prefix, listed in the contract
        ("istio_tcp_closed_connections_total", {"istio_tcp_closed_connections_total"}),  # allowed, not listed
        ("node_cpu_seconds_total", {"node_cpu_seconds_total"}),  # no allowed source
        ("ai_agents:recorded:rate5m", set()),
        ("ai_agents:not_recorded:rate5m", {"ai_agents:not_recorded:rate5m"}),
    ],
)
def test_the_check_rejects_what_it_should(expr: str, unknown: set[str]) -> None:
    bad = unlisted_reads([ChartQuery("case", expr)], {"ai_agents:recorded:rate5m"})
    assert bad == ({f"case: {expr}": unknown} if unknown else {})
