"""Throughput and latency over time: finished tasks bucketed by when they finished, for the report's charts."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

# Bucket widths a reader can count with; a phase gets the smallest that yields at most MAX_BUCKETS points.
_WIDTHS = (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0)
MAX_BUCKETS = 120


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank, as the bench's other percentiles."""
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def _bucket(offset: float, width: float) -> int:
    """The bucket an offset falls in; a hair of tolerance keeps 5.5 s in the 0.1 s bucket 55 (5.5 / 0.1 is 54.99...)."""
    return math.floor(offset / width + 1e-9)


def timeline(finished: Iterable[tuple[float, float]], start: float) -> dict[str, Any]:
    """`finished`: (finish time, submit-to-complete ms) per task, times in seconds on one clock; `start`: the
    phase's first submission on that clock. Per bucket: tasks finished per second and the latency p50/p95 of the
    tasks that finished in it (None where none did)."""
    events = sorted((t - start, ms) for t, ms in finished)
    if not events:
        return {"bucket_seconds": None, "t": [], "completed_per_second": [], "p50_ms": [], "p95_ms": []}
    span = max(events[-1][0], 1e-3)
    width = next((w for w in _WIDTHS if span / w <= MAX_BUCKETS), _WIDTHS[-1])
    count = _bucket(span, width) + 1
    buckets: list[list[float]] = [[] for _ in range(count)]
    for offset, ms in events:
        buckets[min(count - 1, max(0, _bucket(offset, width)))].append(ms)
    p50: list[float | None] = []
    p95: list[float | None] = []
    for bucket in buckets:
        bucket.sort()
        p50.append(round(_percentile(bucket, 0.50), 1) if bucket else None)
        p95.append(round(_percentile(bucket, 0.95), 1) if bucket else None)
    return {
        "bucket_seconds": width,
        "t": [round((i + 1) * width, 3) for i in range(count)],
        "completed_per_second": [round(len(b) / width, 1) for b in buckets],
        "p50_ms": p50,
        "p95_ms": p95,
    }
