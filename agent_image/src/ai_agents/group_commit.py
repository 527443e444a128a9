"""Group commit: concurrent callers' items become one request, each caller still answered with its own outcome.

The store's use: with durable commits every statement waits for its own flush of the WAL, and every round trip
costs a write and a read on both ends. Under load many submits (or completions, or heartbeats) are waiting at the
same moment; sending them as one multi-row statement costs about what one of them did, and each caller is still
answered with its own row, only after the statement (and so its commit) returned. The client's use
(client/_batching.py): an agent's completions that finish together go to the orchestrator in one CompleteTasks
call instead of a call each, and submits made together in one SubmitTasks call.

By default no timer: a batch starts on the event loop's next turn and takes everything queued by then; while
`max_in_flight` batches are running, new items wait and form the next one. An idle orchestrator therefore
sends a batch of one at once, and a busy one batches as much as the database's latency lets pile up.
`linger_seconds` makes a batch wait that long for company first: for items that arrive spread out in time
(heartbeats: many agents, each beating every few seconds) and whose callers can wait a few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeAlias, TypeVar

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741 - an item, as a caller hands it in
R = TypeVar("R")  # the caller's answer


class RunAlone:
    """A batch answer meaning "run your own statement": the batch failed as a whole, or could not speak for this
    item. Running alone gives the caller exactly the outcome (or the error) the single statement gives."""


RUN_ALONE = RunAlone()

# What a batch runner returns per item, in the items' order.
Answer: TypeAlias = R | RunAlone


class GroupCommit(Generic[I, R]):
    """`await group(item)` returns the answer `run_batch` gave for that item, or RUN_ALONE.

    `run_batch(items)` runs one request for all items and returns one answer per item, in order. If it raises an
    error `shared_error` accepts (the store: a database outage), that is every caller's error, as it would have
    been alone; nothing is retried in a way that could run an item twice. Any other error (one bad row, a
    deadlock) sends every caller to run alone.
    A caller cancelled before its batch starts is left out of it, as a single statement never sent would be.
    With `linger_seconds`, a batch takes its items that long after the first of them arrived.
    """

    def __init__(
        self,
        name: str,
        run_batch: Callable[[Sequence[I]], Awaitable[Sequence[Answer[R]]]],
        *,
        shared_error: Callable[[Exception], bool],
        max_batch: int = 256,
        max_in_flight: int = 2,
        linger_seconds: float = 0.0,
    ) -> None:
        self._name = name
        self._run_batch = run_batch
        self._shared_error = shared_error
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._linger_seconds = linger_seconds
        self._pending: list[tuple[I, asyncio.Future[Answer[R]]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Batches sent and items in them, for tests and the bench (how much grouping load produces).
        self.batches = 0
        self.items = 0

    async def __call__(self, item: I) -> Answer[R]:
        future: asyncio.Future[Answer[R]] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._start_batches()
        return await future

    def _start_batches(self) -> None:
        while self._pending and self._in_flight < self._max_in_flight:
            self._in_flight += 1
            # A batch serves many callers' traces, so it runs in none of them (not in that of whoever started it):
            # an empty context, so its log lines carry no caller's trace id.
            task = asyncio.get_running_loop().create_task(
                self._flush(), name=f"group-commit-{self._name}", context=contextvars.Context()
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        try:
            if self._linger_seconds:
                await asyncio.sleep(self._linger_seconds)
            # Items queued up to now (this task starts on the loop's next turn, or lingered) form the batch.
            taken, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            live = [(item, future) for item, future in taken if not future.done()]
            if live:
                await self._run([item for item, _ in live], [future for _, future in live])
        finally:
            self._in_flight -= 1
            self._start_batches()

    async def _run(self, items: list[I], futures: list[asyncio.Future[Answer[R]]]) -> None:
        self.batches += 1
        self.items += len(items)
        try:
            answers = await self._run_batch(items)
        except Exception as exc:
            if self._shared_error(exc) or len(items) == 1:
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
                return
            log.info("group commit %s: batch of %d failed; each item runs alone", self._name, len(items), exc_info=exc)
            answers = [RUN_ALONE] * len(items)
        except BaseException as exc:  # cancelled (shutdown): the callers must not wait forever
            for future in futures:
                if not future.done():
                    future.cancel()
            raise exc
        for future, answer in zip(futures, answers, strict=True):
            if not future.done():
                future.set_result(answer)
