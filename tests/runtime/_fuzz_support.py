"""What the fuzz tests share: bounded, reproducible Hypothesis settings and a collector of distinct failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, settings

# The shown input of a failure is cut here: enough to reproduce, short enough to read.
SHOWN = 300


def fuzz_settings(examples: int) -> settings:
    """A fixed number of examples from a derandomized search (the seed comes from the test), so CI is stable."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        # Failures are collected, not raised (see Failures), so there is nothing to shrink.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


@dataclass
class Failures:
    """Distinct failures of a run, keyed by (operation, what went wrong, status), each with its first input.

    Collecting instead of failing at the first example lists every distinct cause in one run, and keeps the run
    bounded (no shrinking of an HTTP or gRPC round trip).
    """

    seen: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def add(self, operation: str, what: str, status: object, shown_input: str) -> None:
        self.seen.setdefault((operation, what, str(status)), shown_input[:SHOWN])

    def assert_none(self) -> None:
        lines = [f"{op} -> {status} {what}\n    input: {shown}" for (op, what, status), shown in self.seen.items()]
        assert not lines, f"{len(lines)} distinct failure(s):\n" + "\n".join(lines)


async def run_in_thread(fuzz: Callable[[], None]) -> None:
    """Hypothesis drives blocking clients in a worker thread; the orchestrator keeps serving on the test's loop."""
    await asyncio.to_thread(fuzz)
