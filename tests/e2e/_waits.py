"""Typed waits on Kubernetes objects (rollouts, deletions), on the shared deadline polling of tests/waits.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from waits import Clock, WaitTimeout, eventually

# ---- typed waits on Kubernetes objects ---------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutState:
    """What a Deployment or StatefulSet reports about its rollout."""

    name: str
    generation: int
    observed_generation: int
    replicas: int
    updated: int
    ready: int
    available: int

    @property
    def ready_for_use(self) -> bool:
        """observedGeneration caught up, and updated and available counts equal the desired replicas."""
        return (
            self.observed_generation >= self.generation
            and self.updated == self.replicas
            and self.available == self.replicas
            and self.ready == self.replicas
        )


def deployment_state(obj: Any) -> RolloutState:
    return _rollout_state(obj, available=obj.status.available_replicas or 0)


def statefulset_state(obj: Any) -> RolloutState:
    status = obj.status
    # Older StatefulSet controllers leave availableReplicas unset: ready is the best available figure then.
    available = status.available_replicas if status.available_replicas is not None else (status.ready_replicas or 0)
    return _rollout_state(obj, available=available)


def _rollout_state(obj: Any, *, available: int) -> RolloutState:
    status = obj.status
    return RolloutState(
        name=obj.metadata.name,
        generation=obj.metadata.generation or 0,
        observed_generation=status.observed_generation or 0,
        replicas=obj.spec.replicas if obj.spec.replicas is not None else 1,
        updated=status.updated_replicas or 0,
        ready=status.ready_replicas or 0,
        available=available,
    )


def wait_for_rollouts(
    read_all: Callable[[], list[RolloutState]],
    *,
    expected: set[str],
    timeout_sec: float,
    what: str,
    missing_ok: bool = False,
    clock: Clock | None = None,
) -> list[RolloutState]:
    """Wait until every workload named in `expected` exists and is ready; the timeout names the laggards."""

    def done(states: list[RolloutState]) -> bool:
        by_name = {s.name: s for s in states}
        return all((n in by_name and by_name[n].ready_for_use) or (missing_ok and n not in by_name) for n in expected)

    try:
        return eventually(read_all, done, timeout_sec=timeout_sec, expectation=f"{what} ready", clock=clock)
    except WaitTimeout as exc:
        states = {s.name: s for s in (exc.last or [])} if exc.observed else {}
        laggards = []
        for name in sorted(expected):
            state = states.get(name)
            if state is None:
                if not missing_ok:
                    laggards.append(f"{name} (not found)")
            elif not state.ready_for_use:
                laggards.append(
                    f"{name} (generation {state.observed_generation}/{state.generation}, updated {state.updated}, "
                    f"ready {state.ready}, available {state.available} of {state.replicas})"
                )
        detail = "; ".join(laggards) if laggards else "no successful read"
        err = f"; last error: {exc.last_error}" if exc.last_error else ""
        raise WaitTimeout(
            f"{what} ready; not ready: {detail}{err}",
            timeout_sec=timeout_sec,
            last=exc.last,
            last_error=exc.last_error,
            attempts=exc.attempts,
        ) from None


def wait_gone(exists: Callable[[], bool], *, timeout_sec: float, what: str, clock: Clock | None = None) -> None:
    """Wait until `exists()` is False (the read returning 404 must be mapped to False by the caller)."""
    eventually(exists, lambda present: not present, timeout_sec=timeout_sec, expectation=f"{what} deleted", clock=clock)
