"""The orchestrator's operations: validate, call the store, record metrics. Both APIs call only this."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ai_agents import __version__
from ai_agents.config import OrchestratorLive, OrchestratorSettings
from ai_agents.domain import AGENT_TYPES, AgentState, TaskState
from ai_agents.errors import FailedPrecondition, InvalidArgument, NotFound
from ai_agents.handoff import FollowUp, OutgoingMessage
from ai_agents.live import LiveConfig
from ai_agents.observability.metrics import OrchestratorMetrics
from ai_agents.observability.task_trace import current_trace_context
from ai_agents.orchestrator import validation as v
from ai_agents.orchestrator.lease_trace import lease_started, with_lease_spans
from ai_agents.store.database import Database, Stores
from ai_agents.store.follow_ups import Handoff
from ai_agents.store.messages import stream_wake_keys
from ai_agents.store.records import (
    AgentRecord,
    AllocationRecord,
    MessageRecord,
    ResourceUsageRecord,
    TaskRecord,
    TypeCounts,
)

log = logging.getLogger(__name__)


def _task_fields(task: TaskRecord, owner: str | None) -> dict[str, Any]:
    """What a line about a task outcome says: which task, which agent reported it, and where the task is now."""
    return {
        "task_id": task.task_id,
        "agent_type": task.agent_type,
        "agent_id": owner or task.lease_owner,
        "state": task.state,
    }


# An empty queue is re-checked at least this often, so delayed retries are picked up without a wake-up.
_LEASE_RECHECK_SECONDS = 2.0
_MAX_LEASE_BATCH = 100
_MAX_LEASE_WAIT = 60


class OrchestratorService:
    def __init__(
        self,
        *,
        settings: OrchestratorSettings,
        live: LiveConfig[OrchestratorLive],
        database: Database,
        stores: Stores,
        metrics: OrchestratorMetrics,
    ) -> None:
        self._settings = settings
        # Limits, leases and retries are read per request from here, so a live change applies to the next one.
        self._live = live
        self._db = database
        self._stores = stores
        self._metrics = metrics

    def _json_object(self, value: Any, field: str) -> dict[str, Any]:
        return self._encoded_json_object(value, field)[0]

    def _encoded_json_object(self, value: Any, field: str) -> tuple[dict[str, Any], str]:
        live = self._live.current  # one snapshot: both limits from the same file
        return v.encoded_payload(
            value,
            max_bytes=live.max_payload_bytes,
            max_depth=live.max_payload_depth,
            field=field,
        )

    # ---- tasks -------------------------------------------------------------------------------------------

    async def submit_task(
        self,
        *,
        agent_type: str,
        payload: Any,
        idempotency_key: str | None,
        priority: int = 0,
        max_attempts: int = 0,
    ) -> tuple[TaskRecord, bool]:
        # The submit's span (HTTP or gRPC server span) is where this task's trace starts: stored with the task,
        # so that its lease and run join it (observability/task_trace.py). Never a reason to refuse a submit.
        traceparent, tracestate = current_trace_context()
        checked_type = v.agent_type(agent_type)
        checked, encoded = self._encoded_json_object(payload, "payload")
        task, created = await self._stores.tasks.submit(
            agent_type=checked_type,
            payload=checked,
            payload_json=encoded,
            idempotency_key=v.idempotency_key(idempotency_key),
            priority=v.int_in_range(priority, field="priority", low=v.MIN_PRIORITY, high=v.MAX_PRIORITY),
            max_attempts=(
                v.int_in_range(max_attempts, field="max_attempts", low=1, high=v.MAX_ATTEMPTS)
                if max_attempts
                else self._live.current.default_max_attempts
            ),
            traceparent=traceparent,
            tracestate=tracestate,
        )
        if created:
            self._metrics.tasks_submitted.labels(task.agent_type).inc()
            # Debug: a line per task at the default level would double the log volume under load.
            log.debug("task submitted", extra={"task_id": task.task_id, "agent_type": task.agent_type})
        return task, created

    async def get_task(self, task_id: str) -> TaskRecord:
        return await self._stores.tasks.get(v.task_id(task_id))

    async def list_tasks(
        self, *, agent_type: str | None, state: str | None, page_size: int | None, page_token: str | None
    ) -> tuple[list[TaskRecord], str | None]:
        return await self._stores.tasks.list(
            agent_type=v.optional_agent_type(agent_type),
            state=v.task_state(state),
            page_size=v.page_size(page_size),
            page_token=v.page_token(page_token),
            max_bytes=self._list_page_bytes(),
        )

    def _list_page_bytes(self) -> int:
        # A quarter of the message limit: protobuf may encode a page up to ~3.7x its JSON size (see config.py).
        return min(self._live.current.list_page_max_bytes, self._settings.max_message_bytes // 4)

    async def cancel_task(self, task_id: str) -> TaskRecord:
        task = await self._stores.tasks.cancel(v.task_id(task_id))
        self._metrics.tasks_completed.labels(task.agent_type, TaskState.CANCELLED).inc()
        return task

    async def lease_tasks(
        self, *, agent_id: str, agent_type: str, max_tasks: int, wait_seconds: float
    ) -> list[TaskRecord]:
        """Lease at once if work is queued; otherwise wait for a NOTIFY (or a recheck) until wait_seconds.

        Each task returned carries the trace context of its `lease task` span (orchestrator/lease_trace.py).
        """
        agent_id = v.agent_id(agent_id)
        agent_type = v.agent_type(agent_type)
        max_tasks = v.int_in_range(max_tasks or 1, field="max_tasks", low=1, high=_MAX_LEASE_BATCH)
        wait = float(v.int_in_range(int(wait_seconds), field="wait_seconds", low=0, high=_MAX_LEASE_WAIT))
        # Only a registered agent of this type leases: an unknown id would hold tasks no registry entry accounts for.
        await self._stores.agents.check_may_lease(agent_id, agent_type)
        deadline = time.monotonic() + wait
        while True:
            seen = self._db.task_wakeups.generation(agent_type)
            started = lease_started()
            tasks = await self._stores.tasks.lease(
                agent_id=agent_id,
                agent_type=agent_type,
                max_tasks=max_tasks,
                lease_seconds=self._live.current.lease_seconds,
            )
            remaining = deadline - time.monotonic()
            if tasks or remaining <= 0:
                break
            await self._db.task_wakeups.wait(agent_type, seen, min(remaining, _LEASE_RECHECK_SECONDS))
        for task in tasks:
            if task.attempts == 1 and task.first_leased_at is not None:
                self._metrics.queue_wait.labels(agent_type).observe(
                    max((task.first_leased_at - task.created_at).total_seconds(), 0.0)
                )
        deliverable = []
        for task in tasks:
            # Rows stored before the door checked depth and numbers may be poison: fail them alone.
            problem = v.stored_value_problem(task.payload, field="payload")
            if problem is None:
                deliverable.append(task)
            else:
                await self.fail_undeliverable(task, problem)
        return with_lease_spans(deliverable, agent_id=agent_id, started_ns=started)

    async def fail_undeliverable(self, task: TaskRecord, reason: str) -> None:
        """Fail a just-leased task that no agent could decode, non-retryably, instead of handing it out."""
        log.warning("failing an undeliverable task", extra={"task_id": task.task_id, "reason": reason})
        try:
            failed = await self._stores.tasks.fail(
                task.task_id,
                task.lease_token or 0,
                error=f"undeliverable: {reason}"[: v.ERROR.max_chars],
                retryable=False,
                backoff_seconds=0,
            )
        except FailedPrecondition:
            return  # cancelled in the meantime: nothing left to fail
        except Exception:
            # Never strand the rest of the batch: this lease expires and the task is checked again next time.
            log.exception("could not fail an undeliverable task", extra={"task_id": task.task_id})
            return
        self._observe_finished(failed)

    async def return_unsent(self, task: TaskRecord) -> None:
        """Give a just-leased task that did not fit in the lease response back to the queue, attempt uncounted."""
        try:
            await self._stores.tasks.release(task.task_id, task.lease_token or 0, owner=task.lease_owner)
        except FailedPrecondition:
            return  # cancelled in the meantime
        except Exception:
            # Never strand the rest of the batch: this lease expires and the task is redelivered later.
            log.exception("could not return an unsent lease", extra={"task_id": task.task_id})

    def _observe_finished(self, task: TaskRecord) -> None:
        self._metrics.tasks_completed.labels(task.agent_type, task.state).inc()
        if task.leased_at is not None and task.finished_at is not None:
            self._metrics.task_duration.labels(task.agent_type).observe(
                max((task.finished_at - task.leased_at).total_seconds(), 0.0)
            )

    def _observe_signals(self, task: TaskRecord) -> None:
        """Feed the type-specific scaling signals from a task's result."""
        result = task.result or {}
        if (duration := result.get("test_duration_seconds")) is not None:
            self._metrics.test_duration.labels(task.agent_type).observe(float(duration))
        if (found := result.get("vulnerabilities_found")) is not None:
            self._metrics.vulnerabilities.labels(task.agent_type).inc(float(found))
        if (violations := result.get("compliance_violations")) is not None:
            self._metrics.compliance_violations.labels(task.agent_type).inc(float(violations))

    async def complete_task(
        self,
        task_id: str,
        lease_token: int,
        result: Any,
        *,
        owner: str | None = None,
        follow_ups: Sequence[FollowUp] = (),
        messages: Sequence[OutgoingMessage] = (),
    ) -> TaskRecord:
        """Complete a leased task; its follow-ups and messages are created in the same transaction, or not at all."""
        live = self._live.current  # one snapshot: every limit from the same file
        task_id = v.task_id(task_id)
        checked_result = v.result(result, max_bytes=live.max_payload_bytes, max_depth=live.max_payload_depth)
        handoff = None
        if follow_ups or messages:
            # The follow-ups continue the trace of this call (the CompleteTask server span): one chain, one trace.
            traceparent, tracestate = current_trace_context()
            handoff = Handoff(
                follow_ups=v.follow_ups(
                    follow_ups,
                    max_bytes=live.max_payload_bytes,
                    max_depth=live.max_payload_depth,
                    default_max_attempts=live.default_max_attempts,
                ),
                messages=v.completion_messages(
                    messages, max_bytes=live.max_payload_bytes, max_depth=live.max_payload_depth
                ),
                traceparent=traceparent,
                tracestate=tracestate,
                max_chain_depth=live.max_chain_depth,
                max_chain_tasks=live.max_chain_tasks,
            )
            await self._check_recipients(handoff.messages)
        task = await self._stores.tasks.complete(task_id, lease_token, checked_result, owner=owner, handoff=handoff)
        self._observe_finished(task)
        self._observe_signals(task)
        if handoff is not None:
            for follow_up in handoff.follow_ups:
                self._metrics.tasks_submitted.labels(follow_up.agent_type).inc()
        log.debug("task completed", extra={**_task_fields(task, owner), "follow_ups": len(task.child_task_ids)})
        return task

    async def _check_recipients(self, messages: Sequence[OutgoingMessage]) -> None:
        """A direct message goes to a known agent, as SendMessage requires; refused naming the field otherwise."""
        for index, message in enumerate(messages):
            if message.recipient_agent_id is None:
                continue
            try:
                await self._stores.agents.get(message.recipient_agent_id)
            except NotFound:
                raise InvalidArgument(
                    f"messages[{index}].recipient_agent_id: no agent {message.recipient_agent_id!r} is registered"
                ) from None

    async def fail_task(
        self, task_id: str, lease_token: int, *, error: str, retryable: bool, owner: str | None = None
    ) -> TaskRecord:
        task = await self._stores.tasks.fail(
            v.task_id(task_id),
            lease_token,
            error=v.text(error, v.ERROR),
            retryable=retryable,
            backoff_seconds=self._live.current.retry_backoff_seconds,
            owner=owner,
        )
        if task.state == TaskState.QUEUED:
            self._metrics.redeliveries.labels(task.agent_type).inc()
        else:
            self._observe_finished(task)
        log.info("task attempt failed", extra={**_task_fields(task, owner), "error": task.error})
        return task

    async def release_task(self, task_id: str, lease_token: int, *, owner: str | None = None) -> TaskRecord:
        return await self._stores.tasks.release(v.task_id(task_id), lease_token, owner=owner)

    async def update_task_progress(
        self, task_id: str, lease_token: int, *, progress: float, message: str, owner: str | None = None
    ) -> TaskRecord:
        return await self._stores.tasks.update_progress(
            v.task_id(task_id),
            lease_token,
            progress=v.progress(progress),
            message=v.text(message, v.PROGRESS_MESSAGE),
            lease_seconds=self._live.current.lease_seconds,
            owner=owner,
        )

    # ---- agents ------------------------------------------------------------------------------------------

    async def create_agent(self, *, agent_id: str, agent_type: str, labels: Any, capacity: int) -> AgentRecord:
        return await self._stores.agents.create(
            agent_id=v.agent_id(agent_id) if agent_id else f"{agent_type}-{uuid.uuid4().hex[:12]}",
            agent_type=v.agent_type(agent_type),
            labels=v.labels(labels),
            capacity=v.int_in_range(capacity or 1, field="capacity", low=1, high=10_000),
        )

    async def register_agent(
        self, *, agent_id: str, agent_type: str, labels: Any, capacity: int, address: str, version: str
    ) -> AgentRecord:
        return await self._stores.agents.register(
            agent_id=v.agent_id(agent_id),
            agent_type=v.agent_type(agent_type),
            labels=v.labels(labels),
            capacity=v.int_in_range(capacity or 1, field="capacity", low=1, high=10_000),
            address=v.text(address, v.ADDRESS),
            version=v.text(version, v.VERSION),
        )

    async def get_agent(self, agent_id: str) -> AgentRecord:
        return await self._stores.agents.get(v.agent_id(agent_id))

    async def list_agents(
        self, *, agent_type: str | None, state: str | None, page_size: int | None, page_token: str | None
    ) -> tuple[list[AgentRecord], str | None]:
        return await self._stores.agents.list(
            agent_type=v.optional_agent_type(agent_type),
            state=v.agent_state(state),
            page_size=v.page_size(page_size),
            after=v.page_token(page_token),
            max_bytes=self._list_page_bytes(),
        )

    async def update_agent(
        self, agent_id: str, *, labels: Any | None, capacity: int | None, state: str | None
    ) -> AgentRecord:
        settable = (AgentState.ACTIVE, AgentState.DRAINING)
        if state is not None and state not in settable:
            raise InvalidArgument("state: only 'active' or 'draining' can be set")
        return await self._stores.agents.update(
            v.agent_id(agent_id),
            labels=v.labels(labels) if labels is not None else None,
            capacity=v.int_in_range(capacity, field="capacity", low=1, high=10_000) if capacity else None,
            state=AgentState(state) if state is not None else None,
        )

    async def delete_agent(self, agent_id: str) -> None:
        await self._stores.agents.delete(v.agent_id(agent_id))

    async def deregister_agent(self, agent_id: str) -> None:
        await self._stores.agents.deregister(v.agent_id(agent_id))

    async def heartbeat(
        self, agent_id: str, *, leases: Sequence[tuple[str, int]], running: int
    ) -> tuple[list[str], bool]:
        """Returns (revoked task ids, whether the agent must register again)."""
        agent_id = v.agent_id(agent_id)
        known = await self._stores.agents.heartbeat(agent_id, max(running, 0))
        revoked = await self._stores.tasks.extend_leases(
            agent_id, [(v.task_id(t), token) for t, token in leases], self._live.current.lease_seconds
        )
        return revoked, not known

    # ---- messaging ---------------------------------------------------------------------------------------

    async def send_message(self, *, sender: str, recipient_agent_id: str, topic: str, body: Any) -> MessageRecord:
        recipient = await self._stores.agents.get(v.agent_id(recipient_agent_id, field="recipient_agent_id"))
        return await self._stores.messages.insert(
            sender=v.text(sender, v.SENDER),
            recipient_agent_id=recipient.agent_id,
            recipient_type=None,
            to_all=False,
            topic=v.text(topic, v.TOPIC),
            body=self._json_object(body, "body"),
        )

    async def broadcast_message(self, *, sender: str, agent_type: str | None, topic: str, body: Any) -> MessageRecord:
        return await self._stores.messages.insert(
            sender=v.text(sender, v.SENDER),
            recipient_agent_id=None,
            recipient_type=v.optional_agent_type(agent_type),
            to_all=not agent_type,
            topic=v.text(topic, v.TOPIC),
            body=self._json_object(body, "body"),
        )

    async def newest_message_id(self, agent_id: str) -> int:
        """Where a stream for `agent_id` that starts from now begins (the agent must be known, as for any stream)."""
        await self._stores.agents.get(v.agent_id(agent_id))
        return await self._stores.messages.newest_id()

    async def receive_messages(self, *, agent_id: str, after_message_id: int) -> AsyncIterator[MessageRecord]:
        """Yield messages for the agent after the cursor, then new ones as NOTIFY announces them."""
        agent = await self._stores.agents.get(v.agent_id(agent_id))
        cursor = max(after_message_id, 0)
        wakeups = self._db.message_wakeups
        # Woken by messages for this agent, its type or everyone; not by every other agent's messages.
        keys = stream_wake_keys(agent.agent_id, agent.agent_type)
        try:
            while True:
                seen = {key: wakeups.generation(key) for key in keys}
                batch = await self._stores.messages.after(
                    agent_id=agent.agent_id, agent_type=agent.agent_type, after_id=cursor
                )
                for message in batch:
                    cursor = message.message_id
                    yield message
                if not batch:
                    await wakeups.wait_any(seen, 5.0)
        finally:
            wakeups.forget(keys[0])  # the agent's own key; its type's and everyone's are few

    # ---- resources ---------------------------------------------------------------------------------------

    async def allocate_resource(self, *, agent_id: str, resource: str, amount: int) -> AllocationRecord:
        agent = await self._stores.agents.get(v.agent_id(agent_id))
        return await self._stores.resources.allocate(
            agent_id=agent.agent_id,
            agent_type=agent.agent_type,
            resource=v.resource_name(resource),
            amount=v.int_in_range(amount, field="amount", low=1, high=2**62),
        )

    async def release_resource(self, allocation_id: str) -> None:
        await self._stores.resources.release(v.allocation_id(allocation_id))

    async def resource_usage(self, agent_type: str | None) -> list[ResourceUsageRecord]:
        return await self._stores.resources.usage(v.optional_agent_type(agent_type))

    async def set_resource_quota(self, *, agent_type: str, resource: str, quota: int) -> ResourceUsageRecord:
        return await self._stores.resources.set_quota(
            v.agent_type(agent_type),
            v.resource_name(resource),
            v.int_in_range(quota, field="quota", low=0, high=2**62),
        )

    # ---- monitoring --------------------------------------------------------------------------------------

    @property
    def heartbeat_interval_seconds(self) -> int:
        return self._live.current.heartbeat_interval_seconds

    @property
    def max_message_bytes(self) -> int:
        return self._settings.max_message_bytes

    @property
    def lease_seconds(self) -> int:
        return self._live.current.lease_seconds

    @property
    def version(self) -> str:
        return __version__

    async def queue(self, agent_type: str) -> dict[TaskState, int]:
        """Queued and leased tasks of one agent type, read from the database on every call (KEDA's queue trigger)."""
        agent_type = v.agent_type(agent_type)
        # The same index-only count that feeds the queue gauge (tasks_state_type), fresh on every call.
        counts = await self._stores.tasks.active_counts()
        return {state: counts.get((agent_type, state), 0) for state in (TaskState.QUEUED, TaskState.LEASED)}

    async def status(self) -> tuple[list[TypeCounts], bool]:
        database_ok = await self._db.ping()
        if not database_ok:
            return [], False
        tasks, agents = await asyncio.gather(self._stores.tasks.all_counts(), self._stores.agents.counts())
        return [
            TypeCounts(
                agent_type=t,
                tasks={state: n for (typ, state), n in tasks.items() if typ == t},
                agents={state: n for (typ, state), n in agents.items() if typ == t},
            )
            for t in AGENT_TYPES
        ], True
