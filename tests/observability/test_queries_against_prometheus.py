"""Every dashboard panel, alert and ScaledObject query, evaluated by a real Prometheus scraping the local fleet.

The charts are rendered by helm, their PromQL extracted, and each query is run against Prometheus after
traffic. Queries over series that only a cluster has (kube-state-metrics, cAdvisor, Istio) are listed and
left to the cluster harness; everything else must return data here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from _queries import alternatives, chart_queries
from ai_agents.local.ports import free_port
from charttree import prepared_charts
from fleet_cli import run_cli
from helmrender import helm_binaries, render
from promql import metric_names
from waits import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)

NAMESPACE = "ai-agents"
# Series that exist only on a cluster: the harness in tests/e2e checks the queries that read them.
CLUSTER_ONLY = re.compile(r"^(kube_|container_|istio_|kubelet_|node_)")
# Grafana's intervals for a short local run (the namespace variable is the fleet's).
GRAFANA_INTERVALS = {"rate_interval": "1m", "range_": "5m", "interval": "15s"}


def _find_prometheus() -> str:
    found = os.environ.get("PROMETHEUS") or shutil.which("prometheus")
    if not found:
        pytest.skip("the prometheus server binary is not installed (Debian package `prometheus`)")
    return found


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = _get(f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert data["status"] == "success", data
        result = data["data"]["result"]
        return result if isinstance(result, list) else [result]


def _targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Scrape targets labelled the way the chart's ServiceMonitor relabeling labels pods in a cluster."""
    groups = []
    for index, orchestrator in enumerate(summary["orchestrators"]):
        groups.append(
            {
                "targets": [urllib.parse.urlparse(orchestrator["metrics"]).netloc],
                "labels": {
                    "namespace": NAMESPACE,
                    "pod": f"ai-agents-orchestrator-{index}",
                    "service": "ai-agents-orchestrator",
                    "job": "ai-agents-orchestrator",
                },
            }
        )
    for agent in summary["agents"]:
        groups.append(
            {
                "targets": [urllib.parse.urlparse(agent["metrics"]).netloc],
                "labels": {
                    "namespace": NAMESPACE,
                    "pod": f"ai-agents-agent-{agent['agent_type']}-0",
                    "service": f"ai-agents-agent-{agent['agent_type']}",
                    "agent_type": agent["agent_type"],
                    "job": f"ai-agents-agent-{agent['agent_type']}",
                },
            }
        )
    return groups


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    helms = helm_binaries()
    if not helms:
        pytest.skip("helm is not installed (make tools)")
    helm = next(iter(helms.values()))
    charts = prepared_charts(helm)
    return {
        "observability": render(helm, charts / "observability", namespace=NAMESPACE),
        "keda-scalers": render(helm, charts / "keda-scalers", namespace=NAMESPACE),
        # The queue read from Prometheus instead of the orchestrator: every query a ScaledObject can make.
        "keda-scalers-prometheus-queue": render(
            helm,
            charts / "keda-scalers",
            namespace=NAMESPACE,
            set_values={"triggers.queueDepth.source": "prometheus"},
        ),
    }


@pytest.fixture(scope="module")
def prometheus(
    fleet: tuple[dict[str, Any], dict[str, str]], rendered: dict[str, list[dict[str, Any]]]
) -> Iterator[Prometheus]:
    binary = _find_prometheus()
    summary, env = fleet
    workdir = Path(tempfile.mkdtemp(prefix="ai-agents-prometheus-"))
    rules = [obj["spec"] for obj in rendered["observability"] if obj["kind"] == "PrometheusRule"]
    rule_files = []
    for index, spec in enumerate(rules):
        path = workdir / f"rules-{index}.yaml"
        path.write_text(yaml.safe_dump(spec))
        rule_files.append(str(path))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_files,
        "scrape_configs": [
            {
                "job_name": "ai-agents",
                "static_configs": _targets(summary),
                "relabel_configs": [{"source_labels": ["job"], "target_label": "job"}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                active = _get(f"{server.base}/api/v1/targets")["data"]["activeTargets"]
                if active and all(t["health"] == "up" for t in active):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus targets not up: {(workdir / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.5)
        # Traffic for a minute's worth of rate() windows: every type, some failing, some with signals.
        for round_ in range(3):
            for agent_type in ("coding", "testing", "security", "compliance", "documentation", "discovery"):
                run_cli("submit", agent_type, "--payload", json.dumps({"round": round_}), env=env)
            run_cli(
                "submit", "security", "--payload", '{"simulate_failure_rate": 1, "simulate_retryable": false}', env=env
            )
            _http_submit(summary["orchestrators"][0]["http"], "discovery")
            time.sleep(2)
        run_cli("submit", "testing", "--wait", "--quiet", env=env)
        finished = time.time()

        def scraped_and_evaluated_since() -> float:
            """Seconds since the last task of the oldest last scrape or rule evaluation."""
            targets = _get(f"{server.base}/api/v1/targets")["data"]["activeTargets"]
            groups = _get(f"{server.base}/api/v1/rules")["data"]["groups"]
            stamps = [t["lastScrape"] for t in targets] + [g["lastEvaluation"] for g in groups]
            return min(datetime.fromisoformat(s).timestamp() for s in stamps) - finished

        # Every target scraped and every rule group evaluated twice more (1 s intervals) after the last task.
        eventually(
            scraped_and_evaluated_since,
            lambda since: since >= 1.0,
            timeout_sec=30,
            interval_sec=0.25,
            expectation="two scrapes and rule evaluations after the last task",
        )
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def _http_submit(base: str, agent_type: str) -> None:
    """The HTTP API too, so its request metrics have data."""
    request = urllib.request.Request(
        f"{base}/v1/tasks",
        data=json.dumps({"agent_type": agent_type, "payload": {}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


def _queries(objects: list[dict[str, Any]], kind: str) -> list[tuple[str, str]]:
    """(source, expression) of the chart's queries of one kind: "dashboard", "rule" or "ScaledObject"."""
    return [
        (q.source, q.expr)
        for q in chart_queries(objects, namespace=NAMESPACE, **GRAFANA_INTERVALS)
        if q.source.startswith(kind + " ")
    ]


def _split(queries: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    local, cluster = [], []
    for where, expr in queries:
        # A query with a fallback (`kube_... or up ...`) is checked here when one alternative reads local series.
        if all(any(CLUSTER_ONLY.match(n) for n in metric_names(alt)) for alt in alternatives(expr)):
            cluster.append(where)
        else:
            local.append((where, expr))
    return local, cluster


def test_every_dashboard_panel_returns_data(prometheus: Prometheus, rendered: dict[str, Any]) -> None:
    queries = _queries(rendered["observability"], "dashboard")
    assert len({w.split(":")[0] for w, _ in queries}) == 5, "five dashboards expected"
    local, cluster = _split(queries)
    assert local, "no dashboard query can be checked locally"
    empty = [f"{where}: {expr}" for where, expr in local if not prometheus.query(expr)]
    assert not empty, "panels without data after traffic:\n" + "\n".join(empty)
    print(f"{len(local)} panel queries returned data; cluster-only (checked by tests/e2e): {cluster}")


def test_every_scaledobject_query_returns_data(prometheus: Prometheus, rendered: dict[str, Any]) -> None:
    local, cluster = _split(_queries(rendered["keda-scalers-prometheus-queue"], "ScaledObject"))
    assert not cluster, f"scaling queries must read runtime metrics only: {cluster}"
    assert len(local) >= 6 * 2 + 3, "queue depth and task submissions/s per type plus three type-specific signals"
    empty = [f"{where}: {expr}" for where, expr in local if not prometheus.query(expr)]
    assert not empty, "ScaledObject queries without data:\n" + "\n".join(empty)


def test_every_queue_trigger_url_answers_with_a_count(
    fleet: tuple[dict[str, Any], dict[str, str]], rendered: dict[str, Any]
) -> None:
    """The default queue trigger is KEDA's metrics-api: its URL's path and query, asked of a local orchestrator,
    answer JSON whose `valueLocation` (one top-level key) is a count."""
    summary, _env = fleet
    base = summary["orchestrators"][0]["http"]
    triggers = [
        t
        for so in rendered["keda-scalers"]
        if so["kind"] == "ScaledObject"
        for t in so["spec"]["triggers"]
        if t["type"] == "metrics-api"
    ]
    assert len(triggers) == 6, "one queue trigger per agent type"
    for trigger in triggers:
        url = urllib.parse.urlsplit(trigger["metadata"]["url"])
        body = _get(f"{base}{url.path}?{url.query}")
        value = body[trigger["metadata"]["valueLocation"]]
        assert isinstance(value, int) and value >= 0, f"{trigger['metadata']['url']}: {body}"
        assert body["agent_type"] == urllib.parse.parse_qs(url.query)["agent_type"][0]


def test_every_rule_reads_series_that_exist(prometheus: Prometheus, rendered: dict[str, Any]) -> None:
    """Alerts fire only on trouble, so each series an alert or recording rule reads must exist instead."""
    groups = [g for obj in rendered["observability"] if obj["kind"] == "PrometheusRule" for g in obj["spec"]["groups"]]
    assert groups, "no PrometheusRule rendered"
    missing = []
    recorded = set()
    for group in groups:
        for rule in group["rules"]:
            if "record" in rule:
                recorded.add(rule["record"])
            for name in metric_names(rule["expr"]):
                if CLUSTER_ONLY.match(name):
                    continue
                if not prometheus.query(f'count({name}{{namespace="{NAMESPACE}"}})'):
                    missing.append(f"{rule.get('alert') or rule.get('record')}: {name}")
    assert not missing, "rules read series that have no data:\n" + "\n".join(missing)
    # Prometheus itself evaluated the rules: every recording rule produced a series.
    absent = [name for name in sorted(recorded) if not prometheus.query(name)]
    assert not absent, f"recording rules without output: {absent}"
    rules = _get(f"{prometheus.base}/api/v1/rules")["data"]["groups"]
    unhealthy = [r["name"] for g in rules for r in g["rules"] if r.get("health") not in (None, "ok", "unknown")]
    assert not unhealthy, f"rules Prometheus could not evaluate: {unhealthy}"
