"""The harness's own logic, without a cluster: waits, budgets derived from the rendered charts, PromQL probes,
the locust plan (bounded by count and time), the helm values per prerequisite."""

from __future__ import annotations

import ast
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from _cluster import E2E_VALUES, UMBRELLA, E2EConfig, Prerequisites
from _helm import ReleaseOptions, by_kind, options_for, release_values, template
from _load import LOCUSTFILE, LoadProfile, LoadRun, Slo
from _loadplan import TaskBudget, logical_summary, write_summary
from _queries import alternatives, chart_queries, data_probes, reads_only, substitute_grafana
from _scaling import budget_from, duration_seconds, query_windows, scale_down_schedule, scrape_interval_of
from waits import Clock, WaitAborted, WaitTimeout, assert_eventually, consistently, eventually

pytestmark = pytest.mark.offline


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 0.0
        super().__init__(now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.t += seconds


def test_eventually_keeps_last_error_and_observation_and_honours_deadline() -> None:
    clock = FakeClock()
    reads = iter([1, 2, RuntimeError("api down")] + [RuntimeError("still down")] * 100)

    def read() -> int:
        value = next(reads)
        if isinstance(value, Exception):
            raise value
        return value

    with pytest.raises(WaitTimeout) as info:
        eventually(read, lambda v: v > 5, timeout_sec=30, interval_sec=4, expectation="value above 5", clock=clock)
    err = info.value
    assert err.last == 2 and err.observed
    assert isinstance(err.last_error, RuntimeError) and str(err.last_error) == "still down"
    assert "value above 5" in str(err) and "last observation: 2" in str(err) and "still down" in str(err)
    assert clock.t == pytest.approx(30.0)  # stopped at the deadline, not after N iterations


def test_eventually_returns_value_and_failure_predicate_aborts() -> None:
    clock = FakeClock()
    values = iter(range(100))
    assert eventually(lambda: next(values), lambda v: v == 3, timeout_sec=60, expectation="3", clock=clock) == 3
    with pytest.raises(WaitAborted, match="image pull"):
        eventually(
            lambda: "ErrImagePull",
            lambda v: False,
            timeout_sec=60,
            expectation="pod running",
            failed=lambda v: "image pull" if v == "ErrImagePull" else None,
            clock=FakeClock(),
        )


def test_eventually_with_no_successful_read_says_so() -> None:
    def read() -> int:
        raise ConnectionError("refused")

    with pytest.raises(WaitTimeout, match=r"nothing .no read succeeded.*refused"):
        eventually(read, bool, timeout_sec=5, expectation="x", clock=FakeClock())


def test_consistently_fails_on_first_break_and_needs_an_observation() -> None:
    values = iter([1, 1, 2, 1])
    with pytest.raises(AssertionError, match="broken by 2"):
        consistently(lambda: next(values), lambda v: v == 1, duration_sec=60, expectation="one", clock=FakeClock())
    seen = consistently(
        lambda: 1, lambda v: v == 1, duration_sec=10, interval_sec=2, expectation="one", clock=FakeClock()
    )
    assert len(seen) == 6

    def broken() -> int:
        raise OSError("no read")

    with pytest.raises(WaitTimeout):
        consistently(broken, lambda v: True, duration_sec=4, expectation="x", clock=FakeClock())


def test_assert_eventually_reraises_last_assertion() -> None:
    clock = FakeClock()
    calls = []

    def check() -> None:
        calls.append(clock.t)
        raise AssertionError(f"attempt {len(calls)}")

    with pytest.raises(AssertionError, match=r"attempt \d+"):
        assert_eventually(check, timeout_sec=10, interval_sec=3, clock=clock)
    assert calls[-1] >= 10


def test_durations_and_windows() -> None:
    assert duration_seconds("30s") == 30 and duration_seconds("1h30m") == 5400
    with pytest.raises(ValueError):
        duration_seconds("5 minutes")
    assert query_windows("sum(increase(x[10m])) / rate(y[1m]) + max_over_time(z[5m:30s])") == [600, 60, 300]


def test_scale_down_schedule_follows_hpa_policies() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 30,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 15}],
        }
    }
    assert scale_down_schedule(10, 1, behavior) == [(0.0, 10), (30.0, 5), (45.0, 2), (60.0, 1)]


@pytest.fixture(scope="module")
def rendered(helm4_path: Path) -> list[dict]:
    cfg = E2EConfig.from_env({"E2E_IMAGE": "example.test/ai-agents:1.2.3"})
    options = ReleaseOptions(observability=True, keda=True)
    # A private copy with the file:// subcharts built, the same way the chart tests render the umbrella.
    from charttree import prepared_charts

    return template(
        str(helm4_path),
        prepared_charts(helm4_path) / UMBRELLA.name,
        release="ai-agents",
        namespace="pytest-0ff1ce",
        values=release_values(cfg, "pytest-0ff1ce", options),
    )


@pytest.fixture(scope="module")
def helm4_path() -> Path:
    path = UMBRELLA.parents[1] / ".tools" / "bin" / "h4" / "helm"
    if not path.is_file():
        pytest.skip(f"no helm at {path}: run `make tools`")
    return path


def test_budget_derived_from_rendered_scaled_object(rendered: list[dict]) -> None:
    objects = {o["metadata"]["name"]: o for o in by_kind(rendered, "ScaledObject")}
    security = objects["ai-agents-agent-security"]
    scrape = scrape_interval_of(by_kind(rendered, "ServiceMonitor"))
    budget = budget_from(security, scrape_interval=scrape)
    spec = security["spec"]
    assert (budget.min_replicas, budget.max_replicas) == (spec["minReplicaCount"], spec["maxReplicaCount"])
    assert budget.polling_interval == spec["pollingInterval"] == 5  # the e2e values' fast polling
    # Scale-up: one scrape (Prometheus triggers only) + two polls + the HPA sync + the policy period + pod start.
    assert budget.scale_up_sec("vulnerabilities") == scrape + 2 * budget.polling_interval + 15 + 5 + 60
    # The queue trigger asks the orchestrator, which counts the queue when asked: no scrape to wait for.
    assert budget.scale_up_sec("queue-depth") == 2 * budget.polling_interval + 15 + 5 + 60
    # The vulnerability trigger's increase() window keeps the signal up long after the tasks finish.
    vulnerabilities = next(t for t in spec["triggers"] if t.get("name") == "vulnerabilities")
    window = max(query_windows(vulnerabilities["metadata"]["query"]))
    assert window == 120  # the e2e values shorten the look-back to 2m
    assert budget.signal_tail_sec["vulnerabilities"] == window + scrape + budget.polling_interval
    assert budget.signal_tail_sec["queue-depth"] == budget.polling_interval
    assert budget.scale_down_sec("vulnerabilities") > budget.scale_down_sec("queue-depth") > budget.cooldown


def test_release_values_follow_prerequisites(rendered: list[dict]) -> None:
    kinds = {o["kind"] for o in rendered}
    assert {"ScaledObject", "ServiceMonitor", "PrometheusRule"} <= kinds
    assert "PeerAuthentication" not in kinds  # mesh off
    images = {c["image"] for o in by_kind(rendered, "Deployment") for c in o["spec"]["template"]["spec"]["containers"]}
    assert images == {"example.test/ai-agents:1.2.3"}
    pre = Prerequisites(
        istio_missing="no Istio", keda_missing=None, prometheus_missing="x", prometheus_operator_missing="no CRDs"
    )
    opts = options_for(pre)
    assert (opts.mesh, opts.keda, opts.observability) == (False, True, False)
    assert E2E_VALUES.is_file()


def test_chart_queries_are_concrete_and_probeable(rendered: list[dict]) -> None:
    queries = chart_queries(rendered, namespace="pytest-0ff1ce")
    sources = {q.source.split(" ", 1)[0] for q in queries}
    assert {"dashboard", "rule", "ScaledObject"} <= sources
    for query in queries:
        assert not re.search(r"\$\{?(namespace|cluster|__rate_interval)\b", query.expr), query
        assert data_probes(query.expr), f"no probe for {query.source}: {query.expr}"
    assert substitute_grafana('x{namespace=~"$namespace"}[$__rate_interval]', namespace="n") == 'x{namespace=~"n"}[2m]'
    assert substitute_grafana('x{cluster=~"${cluster}"}', namespace="n") == 'x{cluster=~".*"}'


def test_alert_conditions_reduce_to_data_probes() -> None:
    assert data_probes("ai_agents:err:ratio5m > 0.01") == ["ai_agents:err:ratio5m"]
    assert data_probes("(a > (14.4 * (1 - 0.999)) and b > 0.0144)\nor\n(c > 0.006 and d > 0.006)") == [
        "a",
        "b",
        "c",
        "d",
    ]
    assert data_probes('absent(up{job="x"} == 1)') == ['up{job="x"}']
    assert data_probes("x unless y") == ["x"]
    # A recording rule's union: the error side is empty while nothing fails, so only the union must have data.
    assert data_probes("sum(rate(e[5m])) or 0 * r") == ["sum(rate(e[5m])) or 0 * r"]
    assert data_probes("(a > 1) or b") == ["a", "b"]
    assert data_probes('max(q{a=~"b|c"}) >= 5') == ['max(q{a=~"b|c"})']


def test_a_kube_state_metrics_query_with_a_fallback_is_not_left_to_kube_state_metrics(rendered: list[dict]) -> None:
    queries = {q.source: q for q in chart_queries(rendered, namespace="pytest-0ff1ce")}
    replicas = queries["dashboard scaling.json: Agent replicas by type"]
    events = queries["dashboard scaling.json: Scaling events"]
    for query in (replicas, events):
        assert "kube_deployment_status_replicas" in query.expr and "up{" in query.expr, query.expr
        assert not query.needs_kube_state_metrics, f"{query.source} has a fallback without kube-state-metrics"
        # The union is probed as a whole: its kube-state-metrics side may be empty, the fallback may not.
        assert data_probes(query.expr) == [query.expr]
    assert reads_only("max(kube_a) or max(kube_b)", re.compile(r"\bkube_")), "no fallback: both read kube_*"
    assert not reads_only("max(kube_a) or count(up)", re.compile(r"\bkube_"))
    assert alternatives("(a or b) and c or d") == ["(a or b) and c", "d"]


def test_task_budget_is_a_hard_bound() -> None:
    budget = TaskBudget(50)
    taken = []

    def worker() -> None:
        while budget.take():
            taken.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 50 and not budget.take()


def test_locustfile_parses_and_bounds_its_loop() -> None:
    tree = ast.parse(LOCUSTFILE.read_text())
    source = LOCUSTFILE.read_text()
    assert "constant_throughput" in source and "BUDGET.take()" in source and "runner.quit" in source
    users = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert [u.name for u in users] == ["ApiUser"]


class _FakeApi(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.headers["Authorization"] == "Bearer t0ken"
        out = json.dumps({"task_id": "t-" + body["idempotency_key"][-12:], "state": "queued"}).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self) -> None:
        out = b'{"state": "queued"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def test_locust_run_stops_at_its_task_count_long_before_its_time_limit(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        profile = LoadProfile(users=2, rate_per_user=20, run_time_sec=60, max_tasks=12, agent_types=("coding",))
        result = (
            LoadRun(f"http://127.0.0.1:{server.server_address[1]}", profile, tmp_path, token="t0ken", run_id="offline")
            .start()
            .wait(grace_sec=20)
        )
    finally:
        server.shutdown()
    assert len(result.acknowledged) == 12
    assert result.elapsed_sec < 30, f"locust ran {result.elapsed_sec:.0f}s: the count bound did not stop it"
    assert result.summary.failures == 0 and result.summary.requests >= 12
    assert result.summary.p99_ms >= result.summary.p50_ms > 0


def _row(kind: str, name: str, requests: int, failures: int, p95: float = 40.0) -> dict[str, object]:
    return {"type": kind, "name": name, "requests": requests, "failures": failures, "rps": requests / 10,
            "p50_ms": 10.0, "p95_ms": p95, "p99_ms": p95 * 2}  # fmt: skip


def test_a_retried_submission_counts_against_the_attempt_error_rate_not_the_logical_one(tmp_path: Path) -> None:
    # 990 submissions succeeded, 8 of them only after a retry; 10 reads; the retries were 8 failed attempts.
    path = tmp_path / "summary.json"
    write_summary(
        path,
        [
            _row("POST", "/v1/tasks", 990, 0),
            _row("GET", "/v1/tasks/{task_id}", 10, 0),
            _row("ATTEMPT", "/v1/tasks (retried)", 8, 8),
        ],
    )
    summary = logical_summary(path)
    assert (summary.requests, summary.failures, summary.error_rate) == (1000, 0, 0.0)
    assert (summary.attempts, summary.failed_attempts) == (1008, 8)
    assert summary.attempt_error_rate == pytest.approx(8 / 1008)
    slo = Slo(max_attempt_error_rate=0.005, p95_ms=100.0, min_achieved_share=0.9)
    assert slo.misses(100.0, summary) == ["attempt errors 0.79% >= 0.5%"]
    assert Slo(max_attempt_error_rate=0.01).misses(100.0, summary) == [], "under 1% of attempts failed"


def test_a_rate_is_held_only_if_reached_with_p95_and_errors_within_the_slo(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_summary(path, [_row("POST", "/v1/tasks", 600, 0, p95=150.0)])  # 60 RPS achieved of 100 asked
    missed = Slo().misses(100.0, logical_summary(path))
    assert [m.split(" ")[0] for m in missed] == ["p95", "achieved"]
    write_summary(path, [_row("POST", "/v1/tasks", 1000, 0, p95=60.0)])
    assert Slo().misses(100.0, logical_summary(path)) == []


def test_load_profile_at_a_rate_spreads_it_over_users_and_bounds_the_count() -> None:
    profile = LoadProfile.at_rate(150.0, 12)
    assert profile.users == 30 and profile.target_rps == pytest.approx(150.0)
    assert profile.max_tasks == 1800


@pytest.mark.parametrize(
    ("ref", "values"),
    [
        ("", {}),
        (
            "localhost/offline/postgres:15-bookworm",
            {"registry": "localhost", "repository": "offline/postgres", "tag": "15-bookworm"},
        ),
        ("docker.io/library/postgres:17.6", {"registry": "docker.io", "repository": "library/postgres", "tag": "17.6"}),
        ("registry.test:5000/pg", {"registry": "registry.test:5000", "repository": "pg", "tag": "latest"}),
        ("postgres:16", {"registry": "", "repository": "postgres", "tag": "16"}),
    ],
)
def test_postgres_image_override(ref: str, values: dict[str, str]) -> None:
    """E2E_POSTGRES_IMAGE becomes store.postgresql.image.* (the offline cluster's Debian-built PostgreSQL)."""
    cfg = E2EConfig.from_env({"E2E_POSTGRES_IMAGE": ref})
    assert cfg.postgres_image_values == values
    sets = release_values(cfg, "ns", ReleaseOptions())
    assert [a for a in sets if a.startswith("store.postgresql.image.")] == [
        f"store.postgresql.image.{k}={v}" for k, v in values.items()
    ]


def test_tracing_release_sends_spans_to_jaeger_and_opens_egress(helm4_path: Path) -> None:
    """ReleaseOptions(tracing=True): every workload exports OTLP to the Jaeger collector, and the NetworkPolicies
    of the orchestrator and the agents let exactly that through."""
    from charttree import prepared_charts

    cfg = E2EConfig.from_env({"E2E_JAEGER_NAMESPACE": "tracing-ns"})
    objects = template(
        str(helm4_path),
        prepared_charts(helm4_path) / UMBRELLA.name,
        release="ai-agents",
        namespace="pytest-0ff1ce",
        values=release_values(cfg, "pytest-0ff1ce", ReleaseOptions(tracing=True)),
    )
    endpoint = "http://jaeger-collector.tracing-ns.svc:4317"
    for deployment in by_kind(objects, "Deployment"):
        containers = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for c in containers for e in c["env"]}
        assert env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == endpoint, deployment["metadata"]["name"]
    egress_to_jaeger = [
        policy["metadata"]["name"]
        for policy in by_kind(objects, "NetworkPolicy")
        for rule in policy["spec"].get("egress", [])
        if {"port": 4317, "protocol": "TCP"} in rule.get("ports", [])
        and any(
            (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            == "tracing-ns"
            for peer in rule.get("to", [])
        )
    ]
    assert any("orchestrator" in name for name in egress_to_jaeger), egress_to_jaeger
    assert any("agent" in name for name in egress_to_jaeger), egress_to_jaeger
