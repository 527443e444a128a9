"""The worker loop of one agent process.

Lifecycle (ai_agents.lifecycle): `run()` registers, then leases and runs tasks with bounded concurrency until
`shutdown()`; it returns only after running tasks finished (or, past the grace period, were released back to
the queue) and the agent deregistered. `shutdown()` is idempotent and safe before `run()`.

The heartbeat and lease loops are watched together: if one fails (e.g. registering again is refused), the
worker stops as on shutdown and `run()` raises, so the process exits with a failure status and is restarted,
instead of leasing on while no heartbeat extends its tasks' leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from ai_agents import __version__
from ai_agents import convert as c
from ai_agents.agent._completions import CompletionBatcher
from ai_agents.agent._messages import MessageLoop
from ai_agents.client import (
    LeaseBatch,
    OrchestratorClient,
    UndecodableLease,
    UndecodableResponse,
    completion_request,
)
from ai_agents.config import AgentLive, AgentSettings
from ai_agents.errors import Unavailable
from ai_agents.handlers import Handler, HandlerError, HandlerResult, Inbox, TaskContext
from ai_agents.lifecycle import Lifecycle, LoopFailed, watch_loops
from ai_agents.live import LiveConfig
from ai_agents.observability.logs import bound_log_fields
from ai_agents.observability.metrics import AgentMetrics
from ai_agents.observability.task_trace import parent_context
from ai_agents.observability.tracing import tracer_installed
from ai_agents.v1 import tasks_pb2

log = logging.getLogger(__name__)
# A no-op tracer unless an entry point installed a provider (OTEL_EXPORTER_OTLP_ENDPOINT set).
_tracer = trace.get_tracer(__name__)

_MAX_BACKOFF = 5.0
# The orchestrator refuses U+0000 and lone surrogates in an error text; its length limit it applies itself
# (orchestrator/validation.py cuts the text). This bound only keeps a runaway text (a handler quoting a whole
# response) far below any gRPC message limit, so that reporting a failure never fails on its own size.
_UNSENDABLE_CHAR = re.compile("[\x00\ud800-\udfff]")
_ERROR_SENT_CHARS = 64 * 1024
# Headroom under max_message_bytes for gRPC's framing of a CompleteTask request.
_REQUEST_SLACK_BYTES = 1024
# The outcomes ai_agents_agent_tasks counts.
_OUTCOMES = ("succeeded", "failed", "released")


def _sendable(error: str) -> str:
    """An error text the orchestrator accepts, so that reporting a failure never fails on its own text."""
    return _UNSENDABLE_CHAR.sub("\ufffd", error)[:_ERROR_SENT_CHARS]


def _describe(error: BaseException) -> str:
    """One line for a log message: a gRPC error's code and details, else the exception's repr."""
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return repr(error)


class _Backoff:
    def __init__(self, initial: float = 0.1) -> None:
        self._initial = initial
        self._next = initial

    def reset(self) -> None:
        self._next = self._initial

    async def sleep(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self._next)
        self._next = min(self._next * 2, _MAX_BACKOFF)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, Unavailable):  # includes an open circuit breaker
        return True
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        # LeaseTasks from an agent the registry no longer lists (swept after a long silence): the heartbeat
        # loop registers it again, then leasing resumes. Outcome reports handle this code before asking here.
        grpc.StatusCode.FAILED_PRECONDITION,
    )


class AgentWorker(Lifecycle):
    def __init__(
        self,
        *,
        settings: AgentSettings,
        live: LiveConfig[AgentLive],
        client: OrchestratorClient,
        handler: Handler,
        metrics: AgentMetrics,
    ) -> None:
        super().__init__()
        self._s = settings
        # Concurrency and the lease long-poll are read from here at each lease, so a change applies to the next.
        self._live = live
        self._client = client
        self._handler = handler
        self._metrics = metrics
        # Every lease held, from its lease until its outcome was answered (or it was released).
        self._running: dict[str, tuple[int, asyncio.Task[None]]] = {}
        # Tasks whose handler has not returned yet: what `concurrency` limits.
        self._busy: set[str] = set()
        self._slot_freed = asyncio.Event()
        # The orchestrator's values replace these at registration and with every heartbeat answer.
        self._heartbeat_interval = float(live.current.heartbeat_interval_seconds)
        self._lease_seconds = 30.0
        self._lease_call: asyncio.Task[LeaseBatch] | None = None
        # Fed by the message loop once registered; every task's handler reads it (TaskContext.inbox).
        self.inbox = Inbox()
        self._messages = MessageLoop(client, settings.agent_id, self.inbox)
        # One long-lived stream for heartbeats; a beat it cannot carry goes as a unary call (client/_heartbeats.py).
        self._heartbeats = client.heartbeat_stream()
        self._completions = CompletionBatcher(
            client, max_request_bytes=settings.max_message_bytes - _REQUEST_SLACK_BYTES, shared_error=_transient
        )
        self.registered = asyncio.Event()
        live.subscribe(self._on_live_change)
        for method in ("RegisterAgent", "Heartbeat", "LeaseTasks", "CompleteTask", "FailTask", "ReceiveMessages"):
            # Zero series for the calls this loop repeats, so dashboards show 0 rather than no data.
            metrics.client_retries.labels(method)
        # The series a task touches, looked up once: a labels() call per task was a measurable part of its cost.
        agent_type = settings.agent_type
        self._running_gauge = metrics.tasks_running.labels(agent_type)
        self._handler_seconds = metrics.handler_duration.labels(agent_type)
        self._outcomes = {outcome: metrics.tasks.labels(agent_type, outcome) for outcome in _OUTCOMES}

    @property
    def agent_id(self) -> str:
        return self._s.agent_id

    @property
    def running(self) -> int:
        return len(self._running)

    def info(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "agent_type": self._s.agent_type,
            "handler": self._s.handler,
            "concurrency": self._live.current.concurrency,
            "running": sorted(self._running),
            "registered": self.registered.is_set(),
            "stopping": self._shutdown_requested.is_set(),
            "messages": {
                "stream_open": self._messages.open,
                "cursor": self.inbox.cursor,
                "received": self.inbox.received,
            },
            "heartbeats": {
                "stream_open": self._heartbeats.open,
                "streamed": self._heartbeats.streamed,
                "unary": self._heartbeats.unary,
            },
            "version": __version__,
        }

    def _on_live_change(self, old: AgentLive, new: AgentLive) -> None:
        if new.concurrency != old.concurrency:
            # Wake a lease loop waiting for a free slot: more may be free now. (Fewer: running tasks finish;
            # no new lease is taken until the count is under the new limit.)
            self._slot_freed.set()

    def _on_shutdown(self) -> None:
        """Stop leasing; run() then drains and returns."""
        if self._lease_call is not None:
            # The lease long-poll is cancelled: a task leased in that instant is redelivered after its lease expires.
            self._lease_call.cancel()

    # ---- registration and heartbeats ---------------------------------------------------------------------

    async def _register(self) -> bool:
        backoff = _Backoff()
        while not self._shutdown_requested.is_set():
            try:
                response = await self._client.register_agent(
                    agent_id=self.agent_id,
                    agent_type=self._s.agent_type,
                    capacity=self._live.current.concurrency,
                    address=self._s.agent_address,
                    version=__version__,
                )
            except Exception as exc:
                if not _transient(exc):
                    raise
                self._client.record_retry("RegisterAgent")
                log.warning("register failed; retrying", extra={"error": repr(exc)})
                await backoff.sleep(self._shutdown_requested)
                continue
            self._heartbeat_interval = float(response.heartbeat_interval_seconds or self._heartbeat_interval)
            self._lease_seconds = float(response.lease_seconds or self._lease_seconds)
            self.registered.set()
            log.info("registered", extra={"agent_id": self.agent_id, "agent_type": self._s.agent_type})
            return True
        return False

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            leases = [(task_id, token) for task_id, (token, _) in self._running.items()]
            try:
                response = await self._heartbeats.beat(self.agent_id, leases, len(leases))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._client.record_retry("Heartbeat")
                log.warning("heartbeat failed", extra={"error": repr(exc)})
                continue
            # Live on the orchestrator: follow its current values (0 from an older one: keep ours).
            self._heartbeat_interval = float(response.heartbeat_interval_seconds or self._heartbeat_interval)
            self._lease_seconds = float(response.lease_seconds or self._lease_seconds)
            for task_id in response.revoked_task_ids:
                entry = self._running.get(task_id)
                if entry is not None:
                    log.info("lease revoked; abandoning task", extra={"task_id": task_id})
                    entry[1].cancel()
            if response.reregister and not self._shutdown_requested.is_set():
                self.registered.clear()
                await self._register()

    # ---- leasing and running -----------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        backoff = _Backoff()
        while not self._shutdown_requested.is_set():
            live = self._live.current
            # Slots are handlers running; leases whose outcome is still being reported count only past as many
            # again, so an orchestrator slow to answer outcomes cannot make an agent hoard tasks.
            free = min(live.concurrency - len(self._busy), 2 * live.concurrency - len(self._running))
            if free <= 0:
                self._slot_freed.clear()
                stop_wait = asyncio.ensure_future(self._shutdown_requested.wait())
                slot_wait = asyncio.ensure_future(self._slot_freed.wait())
                await asyncio.wait({stop_wait, slot_wait}, return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()
                slot_wait.cancel()
                continue
            self._lease_call = asyncio.ensure_future(
                self._client.lease_task_batch(
                    agent_id=self.agent_id,
                    agent_type=self._s.agent_type,
                    max_tasks=free,
                    wait_seconds=live.lease_wait_seconds,
                )
            )
            try:
                batch = await self._lease_call
            except asyncio.CancelledError:
                if self._shutdown_requested.is_set():
                    break
                raise
            except Exception as exc:
                # Never fatal: one bad response (or a refusal) must not take the agent, and with it every
                # later task of its type, down. Transient or not, wait and lease again.
                if not _transient(exc):
                    log.error("lease failed; backing off", extra={"error": repr(exc)})
                self._client.record_retry("LeaseTasks")
                await backoff.sleep(self._shutdown_requested)
                continue
            finally:
                self._lease_call = None
            backoff.reset()
            for undecodable in batch.undecodable:
                await self._fail_undecodable(undecodable)
            for lease in batch.leases:
                if self._shutdown_requested.is_set():
                    # Leased just as we began to stop: hand it straight back.
                    await self._release(lease.task.task_id, lease.lease_token)
                    continue
                task_id = lease.task.task_id
                task = asyncio.create_task(self._run_task(lease), name=f"task-{task_id}")
                self._running[task_id] = (lease.lease_token, task)
                self._busy.add(task_id)
                # Also when cancelled before it ever ran (a drain), which skips the task's own bookkeeping.
                task.add_done_callback(functools.partial(self._handler_gone, task_id))

    def _handler_gone(self, task_id: str, _task: asyncio.Task[None]) -> None:
        self._busy.discard(task_id)

    async def _fail_undecodable(self, lease: UndecodableLease) -> None:
        """A task this agent cannot even parse fails alone, non-retryably (no other agent could parse it either)."""
        log.error(
            "lease could not be decoded; failing the task", extra={"task_id": lease.task_id, "reason": lease.reason}
        )
        self._outcomes["failed"].inc()
        if not lease.task_id:
            return  # nothing to name: the lease expires and the orchestrator's own check fails the task
        error = _sendable(f"the agent could not decode the task: {lease.reason}")
        await self._fail(lease.task_id, lease.lease_token, error, retryable=False)

    async def _run_task(self, lease: tasks_pb2.TaskLease) -> None:
        # One span per run: the handler's lines and the outcome call (whose trace the orchestrator continues)
        # share its trace id, and every line logged meanwhile names the task. The span is a child of the
        # orchestrator's span leasing the task, itself in the trace of the task's submit: one task, one trace
        # (observability/task_trace.py). A lease without a trace context starts a trace of its own.
        task_id = lease.task.task_id
        with bound_log_fields(task_id=task_id):
            if not tracer_installed():
                # No span to record: starting a no-op one was a measurable part of a task's cost.
                log.debug("task started", extra={"attempt": lease.task.attempts})
                await self._run_leased(lease)
                return
            attributes: dict[str, AttributeValue] = {
                # The messaging conventions' "process" of a message (the task) taken from a queue (its agent type).
                "messaging.operation.type": "process",
                "messaging.destination.name": self._s.agent_type,
                "messaging.message.id": task_id,
                "ai_agents.task_id": task_id,
                "ai_agents.agent_type": self._s.agent_type,
                "ai_agents.agent_id": self.agent_id,
                "ai_agents.attempt": lease.task.attempts,
            }
            parent = parent_context(lease.traceparent, lease.tracestate)
            with _tracer.start_as_current_span(
                "run task", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
            ):
                log.debug("task started", extra={"attempt": lease.task.attempts})
                await self._run_leased(lease)

    async def _run_leased(self, lease: tasks_pb2.TaskLease) -> None:
        task_id, token = lease.task.task_id, lease.lease_token
        agent_type = self._s.agent_type
        self._running_gauge.inc()

        async def report_progress(progress: float, message: str) -> None:
            await self._client.update_task_progress(task_id, token, progress, message)

        context = TaskContext(
            task_id=task_id,
            agent_type=agent_type,
            payload=c.struct_to_dict(lease.task.payload),
            attempt=lease.task.attempts,
            report_progress=report_progress,
            inbox=self.inbox,
            parent_task_id=lease.task.parent_task_id or None,
        )
        started = time.perf_counter()
        busy = True

        def handler_done() -> None:
            # The slot is free once the handler returns: the next lease need not wait for this outcome's answer.
            nonlocal busy
            if busy:
                busy = False
                self._busy.discard(task_id)
                self._handler_seconds.observe(time.perf_counter() - started)
                self._running_gauge.dec()
                self._slot_freed.set()

        try:
            try:
                outcome = await self._handler.run(context)
            except HandlerError as exc:
                handler_done()
                log.warning("handler failed the task", extra={"error": str(exc), "retryable": exc.retryable})
                self._outcomes["failed"].inc()
                await self._fail(task_id, token, _sendable(str(exc)), retryable=exc.retryable)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                handler_done()
                log.exception("handler crashed", extra={"task_id": task_id})
                self._outcomes["failed"].inc()
                await self._fail(task_id, token, _sendable(f"handler error: {exc!r}"), retryable=True)
            else:
                handler_done()
                if not isinstance(outcome, HandlerResult):
                    outcome = HandlerResult(outcome)
                await self._complete(task_id, token, outcome)
        finally:
            handler_done()
            # The lease is held (heartbeats extend it, a drain waits for it) until its outcome was answered.
            self._running.pop(task_id, None)
            self._slot_freed.set()

    async def _complete(self, task_id: str, token: int, outcome: HandlerResult) -> None:
        """Report success with what the handler hands on (follow-ups and messages, created with the completion);
        a result that cannot be sent or is refused fails the task instead, non-retryably."""
        hands_on = bool(outcome.follow_ups or outcome.messages)
        plain: tasks_pb2.TaskCompletion | None = None  # a completion that may share a CompleteTasks call
        refusal: str | None = None
        try:
            if hands_on:
                request = completion_request(
                    task_id, token, outcome.result, follow_ups=outcome.follow_ups, messages=outcome.messages
                )
                size = request.ByteSize()
            else:
                plain = tasks_pb2.TaskCompletion(
                    task_id=task_id, lease_token=token, result=c.dict_to_struct(outcome.result)
                )
                size = plain.ByteSize()
        except Exception as exc:  # anything protobuf refuses: an int past a double's range, a lone surrogate, ...
            refusal = f"the handler's result cannot be encoded: {type(exc).__name__}: {exc}"
        else:
            if size > self._s.max_message_bytes - _REQUEST_SLACK_BYTES:
                # Sent anyway, it would be refused as RESOURCE_EXHAUSTED, retried, and the task redelivered to fail
                # the same way until its attempts ran out (16 follow-ups of the largest payload reach the limit).
                refusal = f"the completion encodes to {size} bytes, over the {self._s.max_message_bytes}-byte limit"
        if refusal is None:
            send: Callable[[], Awaitable[object]]
            if plain is not None and self._completions.takes(plain):
                batched = plain
                send = lambda: self._completions.complete(batched)  # noqa: E731 - sent again on each retry
            else:
                send = lambda: self._client.complete_task(  # noqa: E731
                    task_id, token, outcome.result, follow_ups=outcome.follow_ups, messages=outcome.messages
                )
            # Retried on transient errors: a retry after a completion that did commit is refused (the task is no
            # longer leased) and creates nothing, so the follow-ups exist exactly once.
            refused = await self._report("CompleteTask", task_id, send)
            if refused is None:
                log.debug("task succeeded")
                self._outcomes["succeeded"].inc()
                return
            refusal = f"the orchestrator refused the handler's result: {refused}"
        log.error("result not accepted; failing the task", extra={"task_id": task_id, "reason": refusal})
        self._outcomes["failed"].inc()
        await self._fail(task_id, token, _sendable(refusal), retryable=False)

    async def _fail(self, task_id: str, token: int, error: str, *, retryable: bool) -> None:
        await self._report(
            "FailTask", task_id, lambda: self._client.fail_task(task_id, token, error, retryable=retryable)
        )

    async def _report(self, name: str, task_id: str, send: Callable[[], Awaitable[object]]) -> str | None:
        """Deliver an outcome, retrying transient failures while the lease can still be valid.

        Returns the orchestrator's message if it refused the outcome as INVALID_ARGUMENT, else None.
        """
        backoff = _Backoff()
        deadline = time.monotonic() + self._lease_seconds
        while True:
            try:
                await send()
                return None
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    # Cancelled, or the lease expired and the task went to another agent: not ours to report.
                    log.info("outcome refused", extra={"task_id": task_id, "reason": exc.details()})
                    return None
                if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    log.error("outcome refused as invalid", extra={"task_id": task_id, "reason": exc.details()})
                    return str(exc.details())
                if not _transient(exc) or time.monotonic() > deadline:
                    log.error(
                        "outcome lost; the lease will expire and the task be redelivered",
                        extra={"task_id": task_id, "error": repr(exc)},
                    )
                    return None
            except UndecodableResponse:
                return None  # delivered; only the answer could not be read
            except Unavailable as exc:
                if time.monotonic() > deadline:
                    log.error("outcome lost", extra={"task_id": task_id, "error": repr(exc)})
                    return None
            self._client.record_retry(name)
            await backoff.sleep(asyncio.Event())

    async def _release(self, task_id: str, token: int) -> None:
        try:
            await self._client.release_task(task_id, token, timeout=5)
        except Exception as exc:
            # Not fatal: the lease expires and the task is redelivered, only later.
            log.warning("release failed", extra={"task_id": task_id, "error": repr(exc)})
            return
        self._outcomes["released"].inc()

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def _serve(self, stop: asyncio.Event) -> None:
        if not await self._register():
            return
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
        messages = asyncio.create_task(self._messages.run(), name="messages")
        leasing = asyncio.create_task(self._lease_loop(), name="lease")
        try:
            await watch_loops(stop, (heartbeat, messages, leasing))
        except LoopFailed as failure:
            # Exit rather than recover in place: the loop that failed did so on an error retrying cannot fix
            # (transient ones are retried inside the loops), and a restart (Kubernetes, the local fleet's
            # supervisor) starts clean, visibly counted, as when the first registration is refused.
            log.error(
                "agent %s loop failed: %s; stopping as on shutdown (running tasks released), then exiting",
                failure.loop,
                _describe(failure.__cause__) if failure.__cause__ else str(failure),
                extra={"agent_id": self.agent_id, "loop": failure.loop},
            )
            raise
        finally:
            self.shutdown()  # stop leasing (a no-op after a requested shutdown)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await leasing  # its failure, if any, was reported above
            # The heartbeat loop keeps running while the drain lasts: it extends the running tasks' leases.
            await self._drain()
            for loop in (heartbeat, messages):
                loop.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await loop
            with contextlib.suppress(Exception):
                await self._heartbeats.close()
            await self._deregister()

    async def _drain(self) -> None:
        """Let running tasks finish within the grace period; release the rest to the queue."""
        tasks = [task for _, task in self._running.values()]
        if tasks:
            log.info("draining", extra={"running": len(tasks)})
            await asyncio.wait(tasks, timeout=self._s.shutdown_grace_seconds)
        leftover = dict(self._running)
        for task_id, (token, task) in leftover.items():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._release(task_id, token)

    async def _deregister(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.deregister_agent(self.agent_id)
            log.info("deregistered", extra={"agent_id": self.agent_id})
        self.registered.clear()
