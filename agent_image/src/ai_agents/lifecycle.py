"""The lifecycle every long-running process shares: `run()` until `shutdown()`, sub-loops watched, signals wired.

`run()` returns only when shutdown is complete (or raises what made the process stop); `shutdown()` asks for
it, is idempotent, is safe before `run()` (which then returns at once) and from a signal handler.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from typing import Any

from ai_agents.gc_settings import settle_for_serving

log = logging.getLogger(__name__)


class LoopFailed(Exception):
    """A loop meant to run until shutdown ended before it: the process stops and exits with a failure status."""

    def __init__(self, loop: str, what: str) -> None:
        super().__init__(f"the {loop} loop {what}")
        self.loop = loop


class Lifecycle(ABC):
    """Base of the orchestrator, agent and chaos-monkey processes (and the agent's worker)."""

    def __init__(self) -> None:
        # Created outside a running loop is fine: an asyncio.Event binds to the loop on first wait.
        self._shutdown_requested = asyncio.Event()
        self._run_called = False

    @property
    def shutdown_requested(self) -> bool:
        return self._shutdown_requested.is_set()

    def shutdown(self) -> None:
        """Ask `run()` to stop; it returns once shutdown is complete. Idempotent, safe before `run()`."""
        if self._shutdown_requested.is_set():
            return
        self._shutdown_requested.set()
        self._on_shutdown()

    def on_reload_signal(self) -> None:  # noqa: B027 (an optional hook: processes with live settings override it)
        """SIGHUP: re-read the live configuration now (ai_agents.live); runs on the event loop."""

    def _on_shutdown(self) -> None:  # noqa: B027 (an optional hook: most processes need nothing here)
        """Interrupt whatever waits on more than the shutdown event (e.g. a long poll); runs once."""

    async def run(self) -> None:
        """Serve until `shutdown()`; return only when shutdown is complete. One call per object."""
        if self._run_called:
            raise RuntimeError(f"{type(self).__name__}.run() may be called only once")
        self._run_called = True
        if self._shutdown_requested.is_set():
            return
        await self._serve(self._shutdown_requested)

    @abstractmethod
    async def _serve(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then clean up; return (or raise) only when everything is stopped."""


async def watch_loops(stop: asyncio.Event, loops: Collection[asyncio.Task[Any]]) -> None:
    """Return once `stop` is set; raise LoopFailed as soon as one of `loops` ends before that.

    Like a TaskGroup, one loop's failure is never left unnoticed while the others go on; unlike one, the loops
    are not cancelled here, so the caller winds down in its own order (an agent keeps heartbeating while its
    running tasks finish).
    """
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({stopped, *loops}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    for loop in loops:
        if loop not in done:
            continue
        name = loop.get_name()
        if loop.cancelled():
            raise LoopFailed(name, "was cancelled")
        error = loop.exception()
        if error is not None:
            raise LoopFailed(name, f"failed: {error!r}") from error
        if not stop.is_set():
            raise LoopFailed(name, "ended before shutdown")


def run_until_signalled(process: Lifecycle) -> int:
    """The entry point of a process: SIGTERM and SIGINT call `shutdown()`; 0 after an orderly stop, 1 on failure."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, process.shutdown)
        # SIGHUP's default would end the process: here it means "re-read the live configuration file".
        loop.add_signal_handler(signal.SIGHUP, process.on_reload_signal)
        await process.run()

    settle_for_serving()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    except Exception:
        # One line (with the cause) for the log pipeline; Kubernetes or the local fleet's supervisor restarts us.
        log.critical("process stopped after a failure; exiting with status 1", exc_info=True)
        return 1
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (markedly less CPU per RPC), unless AI_AGENTS_EVENT_LOOP=asyncio asks for the default."""
    if os.environ.get("AI_AGENTS_EVENT_LOOP", "uvloop") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
