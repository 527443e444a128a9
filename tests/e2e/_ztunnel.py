"""What ztunnel, Istio ambient's node proxy, says about the connections it carried: its Prometheus metrics, read
through the API server's pod proxy (the test host cannot reach pod IPs; no scrape configuration is assumed)."""

from __future__ import annotations

from dataclasses import dataclass

from _kube import Kube

ZTUNNEL_SELECTOR = "app=ztunnel"
# ztunnel's stats port (its own default, DEFAULT_STATS_PORT) serves /metrics.
ZTUNNEL_STATS_PORT = 15020


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def samples(kube: Kube, namespace: str, metric: str) -> list[Sample]:
    """Every sample named `metric` (counters with their `_total`) from every ready ztunnel pod."""
    from prometheus_client.parser import text_string_to_metric_families

    found: list[Sample] = []
    for pod in kube.ready_pods(namespace, ZTUNNEL_SELECTOR):
        text = kube.core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod.metadata.name}:{ZTUNNEL_STATS_PORT}", namespace, "metrics"
        )
        for family in text_string_to_metric_families(text):
            found += [Sample(s.name, dict(s.labels), s.value) for s in family.samples if s.name == metric]
    return found


def spiffe(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"
