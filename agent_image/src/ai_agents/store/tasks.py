"""The task queue: submit, lease with fencing tokens, complete, fail, release, cancel, expire."""

from __future__ import annotations

import base64
import builtins
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ai_agents.domain import TaskState
from ai_agents.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from ai_agents.group_commit import GroupCommit
from ai_agents.store.availability import is_database_unavailable
from ai_agents.store.follow_ups import Handoff, complete_and_hand_on
from ai_agents.store.paging import byte_bounded_page, has_more
from ai_agents.store.records import TaskRecord
from ai_agents.store.task_batches import TASKS_CHANNEL, Completion, NewTask, complete_tasks, insert_tasks
from ai_agents.store.tracing import store_span

# $1 task id, $2 lease token, $3 lease owner (NULL when agent identity is off: token only).
_FENCE = "task_id = $1 AND state = 'leased' AND lease_token = $2 AND ($3::text IS NULL OR lease_owner = $3)"
_CLEAR_LEASE = "lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = now()"

# What one row costs in a list page, as PostgreSQL can tell without shipping it: the JSON text of every
# variable-length field (to_json escapes strings as a JSON encoder does; a child id is 40 bytes with its quotes
# and separator), plus the fixed fields, keys and page envelope share of the HTTP rendering (about 600 bytes
# measured at their longest, the parent id included), rounded up.
_TASK_ROW_BYTES = """(
    octet_length(payload::text) + octet_length(coalesce(result::text, 'null'))
    + octet_length(to_json(error)::text) + octet_length(to_json(progress_message)::text)
    + octet_length(to_json(coalesce(idempotency_key, ''))::text)
    + octet_length(to_json(coalesce(lease_owner, ''))::text)
    + 40 * cardinality(child_task_ids)
    + 640
)"""


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    task_id: str
    agent_type: str
    # queued (redelivered) or dead_letter (out of attempts)
    new_state: TaskState


def encode_page_token(created_at: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{key}".encode()).decode()


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        created, key = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), str(uuid.UUID(key))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token is not a token this API returned") from exc


class TaskStore:
    def __init__(self, pool: asyncpg.Pool, *, group_commit: bool = True) -> None:
        self._pool = pool
        # Concurrent submits and completions share statements (ai_agents/group_commit.py). The single statements
        # below remain for group_commit=False and for items a batch sends back to run alone.
        self._submits: GroupCommit[NewTask, TaskRecord | None] | None = None
        self._completions: GroupCommit[Completion, TaskRecord | None] | None = None
        if group_commit:
            self._submits = GroupCommit(
                "submit", lambda items: insert_tasks(pool, items), shared_error=is_database_unavailable
            )
            self._completions = GroupCommit(
                "complete", lambda items: complete_tasks(pool, items), shared_error=is_database_unavailable
            )

    async def submit(
        self,
        *,
        agent_type: str,
        payload: dict[str, Any],
        idempotency_key: str | None,
        priority: int,
        max_attempts: int,
        traceparent: str | None = None,
        tracestate: str | None = None,
        payload_json: str | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Insert a queued task and wake waiting agents; with a known idempotency key return the original.

        Returns only after the row is committed (group commit or not): an acknowledged task is never lost.
        `traceparent`/`tracestate`: the submit's trace context, stored for the task's lease to continue.
        `payload_json`: the payload already encoded as below (validation.encoded_payload), to skip encoding it again.
        """
        if payload_json is None:
            payload_json = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        new = NewTask(
            uuid.uuid4(), agent_type, payload_json, idempotency_key, priority, max_attempts, traceparent, tracestate
        )
        with store_span("submit", "INSERT", group_commit=self._submits is not None) as span:
            task, created = await self._insert(new)
            span.set_attributes({"ai_agents.task_id": task.task_id, "ai_agents.created": created})
            return task, created

    async def _insert(self, new: NewTask) -> tuple[TaskRecord, bool]:
        if self._submits is not None:
            answer = await self._submits(new)
            if isinstance(answer, TaskRecord):
                return answer, True
            if answer is None:
                return await self._existing(new)
            # RUN_ALONE: the single statement below
        row = await self._pool.fetchrow(
            """
            WITH ins AS (
                INSERT INTO tasks (
                    task_id, agent_type, state, payload, idempotency_key, priority, max_attempts,
                    traceparent, tracestate
                )
                VALUES ($1, $2, 'queued', $3::jsonb, $4, $5, $6, $8, $9)
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING *
            )
            SELECT ins.*, pg_notify($7, ins.agent_type || ':1') FROM ins
            """,
            new.task_id,
            new.agent_type,
            new.payload_json,
            new.idempotency_key,
            new.priority,
            new.max_attempts,
            TASKS_CHANNEL,
            new.traceparent,
            new.tracestate,
        )
        if row is not None:
            return TaskRecord.from_row(row), True
        return await self._existing(new)

    async def _existing(self, new: NewTask) -> tuple[TaskRecord, bool]:
        """The task an idempotency key already names, if this request matches the one that created it."""
        idempotency_key, agent_type = new.idempotency_key, new.agent_type
        # jsonb compares numbers by value: the stored 1e23 reads back as 100000000000000000000000, which no
        # longer equals the float 1e23 in Python, but PostgreSQL still finds the retry's payload equal.
        existing = await self._pool.fetchrow(
            "SELECT *, payload = $2::jsonb AS same_payload FROM tasks WHERE idempotency_key = $1",
            idempotency_key,
            new.payload_json,
        )
        if existing is None:  # deleted between the two statements: not possible today, but never return None
            raise FailedPrecondition("idempotency key conflict; retry the request")
        task = TaskRecord.from_row(existing)
        if task.agent_type != agent_type or not existing["same_payload"]:
            raise AlreadyExists(
                f"idempotency_key {idempotency_key!r} was already used for a different request (task {task.task_id})"
            )
        return task, False

    async def get(self, task_id: str) -> TaskRecord:
        row = await self._pool.fetchrow("SELECT * FROM tasks WHERE task_id = $1", uuid.UUID(task_id))
        if row is None:
            raise NotFound(f"task {task_id} not found")
        return TaskRecord.from_row(row)

    async def list(
        self,
        *,
        agent_type: str | None,
        state: TaskState | None,
        page_size: int,
        page_token: str | None,
        max_bytes: int,
    ) -> tuple[list[TaskRecord], str | None]:
        """Oldest first, keyset-paginated on (created_at, task_id) so pages stay stable under inserts.

        A page ends at `page_size` rows or before its rows' size passes `max_bytes`, whichever comes first, but
        holds at least one row. PostgreSQL sums the sizes over the page window, so rows past the budget are never
        sent to this process; the page token points after the last row returned, so no row is skipped.
        """
        after_created, after_id = decode_page_token(page_token) if page_token else (None, None)
        rows = await self._pool.fetch(
            byte_bounded_page(
                """
                SELECT * FROM tasks
                WHERE ($1::text IS NULL OR agent_type = $1)
                  AND ($2::text IS NULL OR state = $2)
                  AND ($3::timestamptz IS NULL OR (created_at, task_id) > ($3, $4::uuid))
                ORDER BY created_at, task_id
                LIMIT $5
                """,
                order_by="created_at, task_id",
                row_bytes=_TASK_ROW_BYTES,
                budget_param="$6",
            ),
            agent_type,
            state,
            after_created,
            uuid.UUID(after_id) if after_id else None,
            page_size + 1,
            max_bytes,
        )
        tasks = [TaskRecord.from_row(r) for r in rows[:page_size]]
        more = has_more(rows, len(tasks))
        return tasks, encode_page_token(tasks[-1].created_at, tasks[-1].task_id) if more else None

    async def lease(
        self, *, agent_id: str, agent_type: str, max_tasks: int, lease_seconds: int
    ) -> builtins.list[TaskRecord]:
        """Lease up to max_tasks queued tasks; SKIP LOCKED lets many orchestrators lease concurrently."""
        with store_span("lease", "UPDATE", agent_type=agent_type, agent_id=agent_id) as span:
            rows = await self._lease_rows(agent_id, agent_type, max_tasks, lease_seconds)
            span.set_attribute("ai_agents.leased", len(rows))
        return [TaskRecord.from_row(r) for r in rows]

    async def _lease_rows(
        self, agent_id: str, agent_type: str, max_tasks: int, lease_seconds: int
    ) -> builtins.list[asyncpg.Record]:
        rows: builtins.list[asyncpg.Record] = await self._pool.fetch(
            """
            WITH candidates AS (
                SELECT task_id FROM tasks
                WHERE state = 'queued' AND agent_type = $1 AND available_at <= now()
                ORDER BY priority DESC, created_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED
            )
            UPDATE tasks t SET
                state = 'leased', attempts = t.attempts + 1, lease_owner = $3,
                lease_token = nextval('lease_tokens'),
                lease_expires_at = now() + make_interval(secs => $4),
                leased_at = now(), first_leased_at = coalesce(t.first_leased_at, now()), updated_at = now()
            FROM candidates WHERE t.task_id = candidates.task_id
            RETURNING t.*
            """,
            agent_type,
            max_tasks,
            agent_id,
            float(lease_seconds),
        )
        return rows

    async def _fenced_update(self, task_id: str, token: int, owner: str | None, sql: str, *args: Any) -> TaskRecord:
        """Run an UPDATE guarded by `_FENCE` (state, token and, given an owner, the lease owner); explain a refusal.

        The owner is checked in the same statement as the token: a token guessed from the global sequence is
        useless to anyone but the lease holder, and the refusal is the same whether the token or the owner is wrong.
        """
        row = await self._pool.fetchrow(sql, uuid.UUID(task_id), token, owner, *args)
        if row is not None:
            return TaskRecord.from_row(row)
        raise await self._refusal(task_id, token)

    async def _refusal(self, task_id: str, token: int) -> FailedPrecondition:
        """Why a fenced update touched nothing: the task moved on, or the token (or owner) is not the lease's."""
        current = await self.get(task_id)
        if current.state != TaskState.LEASED:
            return FailedPrecondition(f"task {task_id} is {current.state}, not leased")
        return FailedPrecondition(f"lease token {token} for task {task_id} is stale or not held by this agent")

    async def complete(
        self,
        task_id: str,
        token: int,
        result: dict[str, Any],
        *,
        owner: str | None = None,
        handoff: Handoff | None = None,
    ) -> TaskRecord:
        """Complete a leased task; with a `handoff`, queue its follow-ups and send its messages in the same
        transaction (store/follow_ups.py): all of it happens once, for the current lease only."""
        if handoff:
            with store_span("complete", "UPDATE", task_id=task_id, follow_ups=len(handoff.follow_ups)):
                result_json = json.dumps(result, separators=(",", ":"))
                done = await complete_and_hand_on(self._pool, task_id, token, owner, result_json, handoff)
                if done is None:
                    raise await self._refusal(task_id, token)
                return done
        with store_span("complete", "UPDATE", task_id=task_id, group_commit=self._completions is not None):
            return await self._complete(task_id, token, result, owner)

    async def _complete(self, task_id: str, token: int, result: dict[str, Any], owner: str | None) -> TaskRecord:
        result_json = json.dumps(result, separators=(",", ":"))
        if self._completions is not None:
            answer = await self._completions(Completion(uuid.UUID(task_id), token, owner, result_json))
            if isinstance(answer, TaskRecord):
                return answer
            if answer is None:
                raise await self._refusal(task_id, token)
            # RUN_ALONE: the single statement below
        return await self._fenced_update(
            task_id,
            token,
            owner,
            f"""
            UPDATE tasks SET state = 'succeeded', result = $4::jsonb, progress = 1, finished_at = now(), {_CLEAR_LEASE}
            WHERE {_FENCE}
            RETURNING *
            """,
            result_json,
        )

    async def fail(
        self,
        task_id: str,
        token: int,
        *,
        error: str,
        retryable: bool,
        backoff_seconds: float,
        owner: str | None = None,
    ) -> TaskRecord:
        """A retryable failure goes back to the queue after a backoff until max_attempts, then dead-letters."""
        with store_span("fail", "UPDATE", task_id=task_id, retryable=retryable):
            return await self._fail(task_id, token, error, retryable, backoff_seconds, owner)

    async def _fail(
        self, task_id: str, token: int, error: str, retryable: bool, backoff_seconds: float, owner: str | None
    ) -> TaskRecord:
        return await self._fenced_update(
            task_id,
            token,
            owner,
            f"""
            WITH updated AS (
                UPDATE tasks SET
                    state = CASE WHEN NOT $5 THEN 'failed'
                                 WHEN attempts >= max_attempts THEN 'dead_letter'
                                 ELSE 'queued' END,
                    error = $4,
                    available_at = now() + make_interval(secs => $6 * power(2, greatest(attempts - 1, 0))),
                    finished_at = CASE WHEN NOT $5 OR attempts >= max_attempts THEN now() END,
                    {_CLEAR_LEASE}
                WHERE {_FENCE}
                RETURNING *
            )
            SELECT updated.*, CASE WHEN state = 'queued' THEN pg_notify($7, agent_type) END FROM updated
            """,
            error,
            retryable,
            backoff_seconds,
            TASKS_CHANNEL,
        )

    async def release(self, task_id: str, token: int, *, owner: str | None = None) -> TaskRecord:
        """Give a leased task back without counting the attempt (the agent is shutting down)."""
        return await self._fenced_update(
            task_id,
            token,
            owner,
            f"""
            WITH updated AS (
                UPDATE tasks SET state = 'queued', attempts = greatest(attempts - 1, 0), available_at = now(),
                    {_CLEAR_LEASE}
                WHERE {_FENCE}
                RETURNING *
            )
            SELECT updated.*, pg_notify($4, agent_type) FROM updated
            """,
            TASKS_CHANNEL,
        )

    async def update_progress(
        self,
        task_id: str,
        token: int,
        *,
        progress: float,
        message: str,
        lease_seconds: int,
        owner: str | None = None,
    ) -> TaskRecord:
        return await self._fenced_update(
            task_id,
            token,
            owner,
            f"""
            UPDATE tasks SET progress = $4, progress_message = $5,
                lease_expires_at = now() + make_interval(secs => $6), updated_at = now()
            WHERE {_FENCE}
            RETURNING *
            """,
            progress,
            message,
            float(lease_seconds),
        )

    async def cancel(self, task_id: str) -> TaskRecord:
        """Cancel a queued or leased task; a leased one's agent learns it at its next heartbeat."""
        row = await self._pool.fetchrow(
            f"""
            UPDATE tasks SET state = 'cancelled', finished_at = now(), {_CLEAR_LEASE}
            WHERE task_id = $1 AND state IN ('queued', 'leased')
            RETURNING *
            """,
            uuid.UUID(task_id),
        )
        if row is not None:
            return TaskRecord.from_row(row)
        current = await self.get(task_id)
        raise FailedPrecondition(f"task {task_id} is already {current.state}")

    async def extend_leases(
        self, agent_id: str, leases: Sequence[tuple[str, int]], lease_seconds: int
    ) -> builtins.list[str]:
        """Extend the leases the agent still holds; return the task ids whose lease it has lost."""
        if not leases:
            return []
        ids = [uuid.UUID(task_id) for task_id, _ in leases]
        tokens = [token for _, token in leases]
        rows = await self._pool.fetch(
            """
            WITH held AS (SELECT * FROM unnest($2::uuid[], $3::bigint[]) AS h(task_id, token)),
            -- task_id order, as batched completions lock (store/task_batches.py): no deadlock between them
            locked AS (
                SELECT t.task_id FROM tasks t JOIN held ON t.task_id = held.task_id
                ORDER BY t.task_id FOR UPDATE OF t
            ),
            extended AS (
                UPDATE tasks t SET lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
                FROM held
                WHERE t.task_id = held.task_id AND t.task_id IN (SELECT task_id FROM locked)
                  AND t.lease_token = held.token AND t.state = 'leased' AND t.lease_owner = $1
                RETURNING t.task_id
            )
            SELECT held.task_id FROM held WHERE held.task_id NOT IN (SELECT task_id FROM extended)
            """,
            agent_id,
            ids,
            tokens,
            float(lease_seconds),
        )
        return [str(r["task_id"]) for r in rows]

    async def expire_leases(self, limit: int = 1000) -> builtins.list[ExpiredLease]:
        """Return expired leases to the queue (or dead-letter them when out of attempts)."""
        rows = await self._pool.fetch(
            f"""
            WITH expired AS (
                SELECT task_id FROM tasks
                WHERE state = 'leased' AND lease_expires_at < now()
                LIMIT $1
                FOR UPDATE SKIP LOCKED
            ),
            updated AS (
                UPDATE tasks t SET
                    state = CASE WHEN t.attempts >= t.max_attempts THEN 'dead_letter' ELSE 'queued' END,
                    error = 'lease expired',
                    available_at = now(),
                    finished_at = CASE WHEN t.attempts >= t.max_attempts THEN now() END,
                    {_CLEAR_LEASE}
                FROM expired WHERE t.task_id = expired.task_id
                RETURNING t.task_id, t.agent_type, t.state
            )
            SELECT updated.*, CASE WHEN state = 'queued' THEN pg_notify($2, agent_type) END FROM updated
            """,
            limit,
            TASKS_CHANNEL,
        )
        return [ExpiredLease(str(r["task_id"]), r["agent_type"], TaskState(r["state"])) for r in rows]

    async def active_counts(self) -> dict[tuple[str, TaskState], int]:
        """Queued and leased tasks per (agent_type, state): cheap, index-only over two states."""
        rows = await self._pool.fetch(
            "SELECT agent_type, state, count(*) AS n FROM tasks WHERE state IN ('queued', 'leased') GROUP BY 1, 2"
        )
        return {(r["agent_type"], TaskState(r["state"])): r["n"] for r in rows}

    async def all_counts(self) -> dict[tuple[str, TaskState], int]:
        rows = await self._pool.fetch("SELECT agent_type, state, count(*) AS n FROM tasks GROUP BY 1, 2")
        return {(r["agent_type"], TaskState(r["state"])): r["n"] for r in rows}
