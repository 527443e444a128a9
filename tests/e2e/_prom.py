"""Prometheus's HTTP API through a port-forward to a Prometheus pod of the monitoring namespace."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from _kube import Kube, PortForward, round_robin_ready_pod

PROMETHEUS_SELECTOR = "app.kubernetes.io/name=prometheus"


@dataclass
class Prometheus:
    base_url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = requests.get(f"{self.base_url}/api/v1/query", params={"query": expr}, timeout=15)
        body = response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query failed ({response.status_code}): {body.get('error')}: {expr}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        if not result:
            return None
        return max(float(r["value"][1]) for r in result)

    def active_targets(self) -> list[dict[str, Any]]:
        response = requests.get(f"{self.base_url}/api/v1/targets", params={"state": "active"}, timeout=15)
        response.raise_for_status()
        return response.json()["data"]["activeTargets"]


@contextlib.contextmanager
def prometheus(kube: Kube, namespace: str) -> Iterator[Prometheus]:
    pick = round_robin_ready_pod(kube, namespace, PROMETHEUS_SELECTOR)
    with PortForward(kube, namespace, pick, 9090) as pf:
        yield Prometheus(pf.url)
