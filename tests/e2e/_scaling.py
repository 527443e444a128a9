"""Time budgets for autoscaling, derived from the rendered ScaledObject and ServiceMonitor (never guessed)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

# The HPA controller's default --horizontal-pod-autoscaler-sync-period.
HPA_SYNC_SECONDS = 15
# A new agent pod: schedule, pull (IfNotPresent, image preloaded), start, pass readiness.
POD_START_SECONDS = 60
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> float:
    """A Prometheus duration (`30s`, `1m`, `1h30m`) in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT[u] for n, u in parts)


def query_windows(query: str) -> list[float]:
    """The range windows (`[5m]`, subquery `[10m:1m]`) in a PromQL query, in seconds."""
    return [
        duration_seconds(m.group(1))
        for m in re.finditer(r"\[(\d+(?:ms|s|m|h|d)(?:\d+(?:ms|s|m|h|d))*)(?::[^\]]*)?\]", query)
    ]


@dataclass(frozen=True)
class ScalingBudget:
    """How long KEDA plus the HPA may take, from the ScaledObject's own settings."""

    name: str
    min_replicas: int
    max_replicas: int
    polling_interval: float
    cooldown: float
    scrape_interval: float
    scale_up_sec_after_signal: float
    signal_lag_sec: dict[str, float]
    signal_tail_sec: dict[str, float]
    scale_down_steps: int
    scale_down_sec_after_signal: float

    def scale_up_sec(self, trigger: str) -> float:
        """From the flood until replicas rise when `trigger` drives: its reading's age, then KEDA and the HPA."""
        return self.signal_lag_sec[trigger] + self.scale_up_sec_after_signal

    def scale_down_sec(self, trigger: str) -> float:
        """From the end of the load until min replicas: the trigger's signal decays, then the HPA steps down."""
        return self.signal_tail_sec.get(trigger, 0.0) + self.scale_down_sec_after_signal


def _policy_step(replicas: int, policy: dict[str, Any]) -> int:
    if policy["type"] == "Pods":
        return int(policy["value"])
    return math.ceil(replicas * int(policy["value"]) / 100)


def scale_down_schedule(max_replicas: int, min_replicas: int, behavior: dict[str, Any]) -> list[tuple[float, int]]:
    """Replica counts over time when the desired count drops from max to min at t=0 (HPA scaleDown policies).

    Follows the HPA algorithm: wait `stabilizationWindowSeconds`, then each policy period allows the change that
    `selectPolicy` picks (Max: the largest step, Min: the smallest).
    """
    scale_down = behavior.get("scaleDown") or {}
    stabilization = float(scale_down.get("stabilizationWindowSeconds", 300))
    policies = scale_down.get("policies") or [{"type": "Percent", "value": 100, "periodSeconds": 15}]
    select = scale_down.get("selectPolicy", "Max")
    if select == "Disabled":
        raise ValueError("scaleDown selectPolicy Disabled: replicas never return to min")
    period = min(int(p["periodSeconds"]) for p in policies)
    t = stabilization
    replicas = max_replicas
    schedule = [(0.0, replicas)]
    while replicas > min_replicas:
        steps = [_policy_step(replicas, p) for p in policies]
        step = max(steps) if select == "Max" else min(steps)
        replicas = max(min_replicas, replicas - max(step, 1))
        schedule.append((t, replicas))
        t += period
    return schedule


def signal_lag_sec(trigger: dict[str, Any], scrape_interval: float) -> float:
    """How old a trigger's reading may be: a Prometheus query sees the last scrape; the orchestrator's queue
    (metrics-api), PostgreSQL and the CPU metrics API are read when KEDA or the HPA asks."""
    return scrape_interval if trigger["type"] == "prometheus" else 0.0


def trigger_target(trigger: dict[str, Any]) -> float:
    """The per-replica (or Value) target of a trigger, whatever its scaler calls it."""
    meta = trigger.get("metadata") or {}
    for key in ("threshold", "targetValue", "targetQueryValue", "value"):
        if key in meta:
            return float(meta[key])
    raise KeyError(f"trigger {trigger.get('name')!r} has no target in {sorted(meta)}")


def budget_from(scaled_object: dict[str, Any], *, scrape_interval: float) -> ScalingBudget:
    spec = scaled_object["spec"]
    polling = float(spec.get("pollingInterval", 30))
    cooldown = float(spec.get("cooldownPeriod", 300))
    min_r = int(spec.get("minReplicaCount", 0))
    max_r = int(spec.get("maxReplicaCount", 100))
    behavior = (spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig", {}).get("behavior") or {}
    scale_up = behavior.get("scaleUp") or {}
    up_period = max((int(p["periodSeconds"]) for p in scale_up.get("policies") or []), default=15)
    up_stabilization = float(scale_up.get("stabilizationWindowSeconds", 0))
    # Once the trigger's reading shows the flood, KEDA reads it on its next poll, the HPA acts on its next sync
    # (after any scale-up stabilization), and the new pod must start; one extra poll and policy period of slack.
    up_after_signal = 2 * polling + HPA_SYNC_SECONDS + up_stabilization + up_period + POD_START_SECONDS
    lags: dict[str, float] = {}
    tails: dict[str, float] = {}
    for trigger in spec.get("triggers", []):
        name = trigger.get("name") or trigger["type"]
        lags[name] = signal_lag_sec(trigger, scrape_interval)
        windows = query_windows((trigger.get("metadata") or {}).get("query", ""))
        # A rate()/increase() window keeps reporting the flood for that long after it ends.
        tails[name] = max(windows, default=0.0) + lags[name] + polling
    schedule = scale_down_schedule(max_r, min_r, behavior)
    # KEDA's cooldownPeriod strictly governs only scaling to zero, but it is the budget the chart documents for
    # "back to min", so it is granted on top of the HPA's scaleDown schedule.
    down_after = schedule[-1][0] + HPA_SYNC_SECONDS + polling + cooldown
    return ScalingBudget(
        name=scaled_object["metadata"]["name"],
        min_replicas=min_r,
        max_replicas=max_r,
        polling_interval=polling,
        cooldown=cooldown,
        scrape_interval=scrape_interval,
        scale_up_sec_after_signal=up_after_signal,
        signal_lag_sec=lags,
        signal_tail_sec=tails,
        scale_down_steps=len(schedule) - 1,
        scale_down_sec_after_signal=down_after,
    )


def scrape_interval_of(service_monitors: list[dict[str, Any]], default: float = 30.0) -> float:
    """The slowest scrape interval of the release's ServiceMonitor endpoints (what KEDA's queries wait on)."""
    intervals = [
        duration_seconds(ep["interval"])
        for sm in service_monitors
        for ep in sm["spec"].get("endpoints", [])
        if ep.get("interval")
    ]
    return max(intervals, default=default)
