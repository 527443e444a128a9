"""Several serving processes behind one orchestrator's ports, for a pod given more than one core.

One Python process serves on one event loop, so an orchestrator uses about one core however many it is given. With
`serving_processes` above 1, `ai-agents orchestrator` starts that many copies of itself and serves nothing itself.
Each copy is a whole orchestrator (its own database pool, a share of the replica's, its LISTEN connection and
maintenance loop, as replicas have), bound to the same ports with SO_REUSEPORT, so the kernel spreads new
connections over them. They keep one metrics view (prometheus_client's multiprocess mode, in a directory made here),
so any of them answers /metrics for all; each answers ready only once all of them are, since a connection made while
one of them still starts would stay on the others for good; and each answers live only while all of them are, since
the kubelet's probe reaches one process, picked by the kernel, and a stalled one would otherwise be found only by
the probes that happen to land on it. The copies live and die as one: signals are passed on, and when one exits on
its own the others are stopped and this process exits 1, so Kubernetes restarts the container rather than run it a
process short.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ai_agents.config import OrchestratorSettings
from ai_agents.observability.logs import configure_logging
from ai_agents.observability.metrics import MULTIPROCESS_DIR_ENV

log = logging.getLogger(__name__)

SERVING_PROCESS_ENV = "AI_AGENTS_SERVING_PROCESS"
READY_DIR_ENV = "AI_AGENTS_SERVING_READY_DIR"
PARENT_ENV = "AI_AGENTS_SERVING_PARENT"
_POLL_SECONDS = 0.1
# After the grace, what a process that still runs gets before SIGKILL (the kubelet's own last step).
_KILL_AFTER_GRACE_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1
# Each serving process marks itself alive this often from its event loop, and one whose mark is older than
# STALLED_AFTER_SECONDS is stalled: its loop has not run for that long (the kubelet's own probe, 2 s, would have
# failed against it). The margin keeps a loop that a busy node only slows from being taken for a stalled one.
ALIVE_EVERY_SECONDS = 1.0
STALLED_AFTER_SECONDS = 10.0


@dataclass(frozen=True)
class ServingSiblings:
    """This process's place among the serving processes of one orchestrator, and their shared ready and alive
    marks (files in one directory: the mtime of `alive-N` is when process N's event loop last ran)."""

    index: int
    count: int
    ready_dir: Path

    @classmethod
    def from_environment(cls, count: int) -> ServingSiblings | None:
        """Set by the parent for each serving process; None for a process that serves alone."""
        index = os.environ.get(SERVING_PROCESS_ENV)
        ready_dir = os.environ.get(READY_DIR_ENV)
        if index is None or ready_dir is None:
            return None
        return cls(index=int(index), count=count, ready_dir=Path(ready_dir))

    def mark_ready(self) -> None:
        (self.ready_dir / f"ready-{self.index}").touch()

    def all_ready(self) -> bool:
        return all((self.ready_dir / f"ready-{index}").exists() for index in range(self.count))

    async def keep_alive(self, stop: asyncio.Event) -> None:
        """Marks this process alive until `stop`, then withdraws the mark: a process that is stopping, like one
        that has not started, is not judged (the parent sees it end)."""
        alive = self.ready_dir / f"alive-{self.index}"
        try:
            while True:
                alive.touch()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), ALIVE_EVERY_SECONDS)
                    return
        finally:
            alive.unlink(missing_ok=True)

    def stalled(self, now: float | None = None) -> list[int]:
        """The other serving processes whose event loop has not marked itself alive for STALLED_AFTER_SECONDS."""
        now = time.time() if now is None else now
        stalled = []
        for index in range(self.count):
            if index == self.index:  # this one runs: it is asking
                continue
            try:
                marked = (self.ready_dir / f"alive-{index}").stat().st_mtime
            except FileNotFoundError:
                continue
            if now - marked > STALLED_AFTER_SECONDS:
                stalled.append(index)
        return stalled


def main() -> int:
    """`ai-agents orchestrator`: settings from AI_AGENTS_*; serves, or starts `serving_processes` that serve.

    The parent of serving processes imports no more than settings and logging: it serves nothing, so the pod does
    not hold a copy of the server's modules (about 30 MiB) that never runs."""
    settings = OrchestratorSettings()
    siblings = ServingSiblings.from_environment(settings.serving_processes)
    if settings.serving_processes > 1 and siblings is None:
        configure_logging(component="orchestrator", level=settings.log_level, fmt=settings.log_format)
        return ServingProcesses(
            settings.serving_processes,
            grace_seconds=settings.shutdown_grace_seconds,
            pool=(settings.database_pool_min, settings.database_pool_max),
        ).run()
    from ai_agents.orchestrator.app import serve

    return serve(settings, siblings)


def end_with_parent() -> None:
    """A serving process gets SIGTERM when its parent dies, even by SIGKILL: never left holding the ports alone."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the parent's own stop still ends it
        return
    # The parent died before prctl took effect. (Compared with its pid, not with 1: in a container it is pid 1.)
    if str(os.getppid()) != os.environ.get(PARENT_ENV):
        os.kill(os.getpid(), signal.SIGTERM)


def pool_share(pool_min: int, pool_max: int, count: int, index: int) -> tuple[int, int]:
    """Serving process `index`'s part of the replica's database pool: the processes share `pool_max`, so the
    replica holds no more connections with several processes than with one (at least one each: with fewer
    connections than processes, each still has one)."""
    share_max = max(1, pool_max // count + (1 if index < pool_max % count else 0))
    return min(pool_min, share_max), share_max


class ServingProcesses:
    """`run()` starts `count` serving processes and returns the exit status once every one has ended."""

    def __init__(self, count: int, *, grace_seconds: float, pool: tuple[int, int]) -> None:
        self._count = count
        self._grace_seconds = grace_seconds
        self._pool = pool
        self._children: list[subprocess.Popen[bytes]] = []
        self._stopping = False
        self._failed = False

    def run(self) -> int:
        shared = Path(tempfile.mkdtemp(prefix="ai-agents-serving-"))
        (shared / "metrics").mkdir()
        (shared / "ready").mkdir()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._pass_on)
        try:
            for index in range(self._count):
                pool_min, pool_max = pool_share(*self._pool, self._count, index)
                env = {
                    **os.environ,
                    "AI_AGENTS_DATABASE_POOL_MIN": str(pool_min),
                    "AI_AGENTS_DATABASE_POOL_MAX": str(pool_max),
                    SERVING_PROCESS_ENV: str(index),
                    MULTIPROCESS_DIR_ENV: str(shared / "metrics"),
                    READY_DIR_ENV: str(shared / "ready"),
                    PARENT_ENV: str(os.getpid()),
                }
                self._children.append(subprocess.Popen([sys.executable, "-m", "ai_agents", "orchestrator"], env=env))
            log.info("serving processes started", extra={"pids": [child.pid for child in self._children]})
            if self._stopping:  # a signal arrived while they started
                self._signal_all(signal.SIGTERM)
            self._wait_for_all()
        finally:
            for child in self._children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            shutil.rmtree(shared, ignore_errors=True)
        if self._failed or any(child.returncode != 0 for child in self._children):
            return 1
        return 0

    def _pass_on(self, signum: int, _frame: FrameType | None) -> None:
        if signum != signal.SIGHUP:  # SIGHUP re-reads the live configuration file; the others stop
            self._stopping = True
        self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for child in self._children:
            if child.poll() is None:
                child.send_signal(signum)

    def _wait_for_all(self) -> None:
        kill_at: float | None = None
        while any(child.poll() is None for child in self._children):
            ended = next((child for child in self._children if child.returncode is not None), None)
            if ended is not None and not self._stopping:
                log.error(
                    "a serving process exited on its own; stopping the others",
                    extra={"pid": ended.pid, "exit_code": ended.returncode},
                )
                self._stopping = self._failed = True
                self._signal_all(signal.SIGTERM)
            if self._stopping and kill_at is None:
                kill_at = time.monotonic() + self._grace_seconds + _KILL_AFTER_GRACE_SECONDS
            if kill_at is not None and time.monotonic() > kill_at:
                self._signal_all(signal.SIGKILL)
            time.sleep(_POLL_SECONDS)
