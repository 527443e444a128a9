"""A circuit breaker for calls to one target: fail fast while the target is down, probe it to recover."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

import grpc

from ai_agents.errors import Unavailable

# Codes that say the target (not the request) is unhealthy.
TRIPPING_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitOpenError(Unavailable):
    """Raised without calling the target while the circuit is open."""


class CircuitBreaker:
    """Opens after `failure_threshold` consecutive tripping failures; after `reset_timeout` lets probes through.

    `half_open_max_calls` probes may run at once; one success closes the circuit, one failure re-opens it.
    """

    def __init__(
        self,
        target: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 5.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.target = target
        self._threshold = failure_threshold
        self._reset_timeout = reset_timeout
        self._half_open_max = half_open_max_calls
        self._clock = clock
        self._on_change = on_state_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0

    @property
    def failure_threshold(self) -> int:
        return self._threshold

    @property
    def reset_timeout(self) -> float:
        return self._reset_timeout

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self._reset_timeout:
            self._set(BreakerState.HALF_OPEN)
        return self._state

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            self._probes = 0
            if self._on_change is not None:
                self._on_change(state)

    def before_call(self) -> None:
        """Raise CircuitOpenError instead of calling when open (or when half-open probes are all in flight)."""
        state = self.state
        if state is BreakerState.OPEN:
            raise CircuitOpenError(f"circuit to {self.target} is open; retry after {self._reset_timeout:.1f}s")
        if state is BreakerState.HALF_OPEN:
            if self._probes >= self._half_open_max:
                raise CircuitOpenError(f"circuit to {self.target} is half-open; a probe is in flight")
            self._probes += 1

    def before_stream(self) -> None:
        """Raise CircuitOpenError unless the circuit is closed: a long-lived stream is never a probe.

        A probe holds its slot until it is answered, and a stream's first answer may be long in coming (a resumed
        message stream says nothing until a message arrives). A stream holding the only slot would refuse every
        unary call, the heartbeats that could close the circuit included, for as long as it stayed open.
        """
        state = self.state
        if state is not BreakerState.CLOSED:
            raise CircuitOpenError(f"circuit to {self.target} is {state.name.lower().replace('_', '-')}; streams wait")

    def record(self, code: grpc.StatusCode) -> None:
        if code in TRIPPING_CODES:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
                self._opened_at = self._clock()
                self._set(BreakerState.OPEN)
            return
        # Any answer from the target (even an application error) shows it is reachable.
        self._failures = 0
        self._set(BreakerState.CLOSED)
