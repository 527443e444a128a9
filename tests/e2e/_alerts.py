"""Prometheus's own view of the chart's alerts: the `ALERTS` series, read for one namespace, kept as a timeline.

An alert with a `for` goes pending, then firing; when its condition ends its `ALERTS` series goes stale at the
next evaluation, which is what "resolved" means here. The timeline keeps each alert's distinct states in the
order they were seen, with the time since the watch began.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from _prom import Prometheus

RESOLVED = "resolved"


@dataclass
class AlertTimeline:
    prometheus: Prometheus
    namespace: str
    started: float = field(default_factory=time.monotonic)
    # alert name -> [(state, seconds since start)], a state appended only when it changes
    seen: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    def poll(self) -> dict[str, str]:
        """Read every alert of the namespace once; alerts seen before and absent now are recorded as resolved."""
        rows = self.prometheus.query(f'ALERTS{{namespace="{self.namespace}"}}')
        now: dict[str, str] = {}
        for row in rows:
            name, state = row["metric"]["alertname"], row["metric"]["alertstate"]
            # One alert name may have several label sets (agent types): firing wins over pending.
            if now.get(name) != "firing":
                now[name] = state
        at = time.monotonic() - self.started
        for name in set(now) | set(self.seen):
            state = now.get(name, RESOLVED)
            history = self.seen.setdefault(name, [])
            if not history or history[-1][0] != state:
                history.append((state, at))
        return now

    def now(self) -> float:
        """Seconds since the watch began, on the timeline's clock."""
        return time.monotonic() - self.started

    def states(self, alert: str, *, since: float = 0.0) -> list[str]:
        """The alert's states in order, those entered at or after `since` only."""
        return [state for state, at in self.seen.get(alert, []) if at >= since]

    def reached(self, alert: str, state: str, *, since: float = 0.0) -> bool:
        return state in self.states(alert, since=since)

    def active(self) -> list[str]:
        """Alerts pending or firing at the last poll."""
        return [name for name, history in self.seen.items() if history[-1][0] != RESOLVED]

    def describe(self, alert: str) -> str:
        history = self.seen.get(alert)
        if not history:
            return f"{alert}: never seen"
        return f"{alert}: " + " -> ".join(f"{state} at {at:.0f}s" for state, at in history)
