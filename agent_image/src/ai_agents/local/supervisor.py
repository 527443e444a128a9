"""Restart fleet processes that exit, with back-off, as Kubernetes restarts a pod's container."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestartBackoff:
    """Kubernetes' CrashLoopBackOff, scaled to a developer's machine.

    The first restart comes after `initial` seconds, each quick death doubles the delay up to `cap`, and a
    process that ran for `reset_after` seconds before dying starts again from `initial`.
    """

    initial: float = 1.0
    cap: float = 30.0
    reset_after: float = 60.0

    def delay(self, consecutive_crashes: int) -> float:
        return min(self.initial * 2.0 ** max(consecutive_crashes - 1, 0), self.cap)


@dataclass
class _Watched:
    started_at: float
    consecutive_crashes: int = 0
    restart_at: float | None = None
    exit_code: int | None = None


class Supervisor:
    """Polls processes by name; restarts each one that exited once its back-off delay has passed.

    `exit_code(name)` says whether a process is still running (None) or how it ended; `restart(name)` starts it
    again and returns how many restarts it has had. The owner calls `poll()` periodically and stops calling it
    before stopping the fleet, so an orderly stop is never mistaken for a crash.
    """

    def __init__(
        self,
        names: list[str],
        *,
        exit_code: Callable[[str], int | None],
        restart: Callable[[str], int],
        backoff: RestartBackoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._exit_code = exit_code
        self._restart = restart
        self._backoff = backoff or RestartBackoff()
        self._clock = clock
        now = clock()
        self._watched = {name: _Watched(started_at=now) for name in names}

    def poll(self) -> None:
        now = self._clock()
        for name, watched in self._watched.items():
            if watched.restart_at is None:
                code = self._exit_code(name)
                if code is None:
                    continue
                ran_for = now - watched.started_at
                if ran_for >= self._backoff.reset_after:
                    watched.consecutive_crashes = 0
                watched.consecutive_crashes += 1
                delay = self._backoff.delay(watched.consecutive_crashes)
                watched.restart_at = now + delay
                watched.exit_code = code
                log.warning(
                    "process exited; restarting it after back-off",
                    extra={
                        "fleet_process": name,
                        "exit_code": code,
                        "ran_seconds": round(ran_for, 1),
                        "in_seconds": delay,
                    },
                )
            if watched.restart_at is not None and now >= watched.restart_at:
                try:
                    restarts = self._restart(name)
                except OSError as exc:
                    # E.g. out of file descriptors: try again after the next back-off step, keep the rest supervised.
                    watched.consecutive_crashes += 1
                    watched.restart_at = now + self._backoff.delay(watched.consecutive_crashes)
                    log.error("restart failed", extra={"fleet_process": name, "error": repr(exc)})
                    continue
                watched.restart_at = None
                watched.started_at = now
                log.warning(
                    "process restarted",
                    extra={"fleet_process": name, "restarts": restarts, "previous_exit_code": watched.exit_code},
                )
