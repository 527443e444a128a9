"""Long-lived calls (streams) that a stopping server ends at once instead of holding its shutdown for the grace.

grpc.aio's `stop(grace)` refuses new calls and waits up to the grace for open ones. An agent keeps its heartbeat
and message streams open for as long as it runs, so without this every orchestrator stop (a rolling update, a
scale-in) would wait out the whole grace period. A stream handler runs inside `ending_at_stop()`; `end_all()`,
called once the server refuses new calls, ends each as an orderly end of stream (status OK), and the agent opens
its next stream elsewhere. Nothing acknowledged is lost: a beat or message the stream had not answered yet is
sent again (the heartbeat as a unary call, messages from the agent's cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any


class LongCalls:
    def __init__(self) -> None:
        self._open: set[asyncio.Task[Any]] = set()
        self.stopping = False

    @contextlib.contextmanager
    def ending_at_stop(self) -> Iterator[None]:
        """Around a stream handler's body: the call ends quietly when `end_all()` cancels it."""
        task = asyncio.current_task()
        if task is None or self.stopping:
            yield  # not in a task (never under grpc.aio), or opened after the stop began: nothing to end
            return
        self._open.add(task)
        try:
            yield
        except asyncio.CancelledError:
            # Ours (the stop's) only when no other cancellation is pending: then the call ends as finished.
            if not self.stopping or task.uncancel() > 0:
                raise
        finally:
            self._open.discard(task)

    def end_all(self) -> int:
        """End every open long call; the number ended. Calls opened from now on run to their own end."""
        self.stopping = True
        tasks, self._open = self._open, set()
        for task in tasks:
            task.cancel()
        return len(tasks)
