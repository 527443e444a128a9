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

from ai_agents.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from ai_agents.store.records import TaskRecord

TASKS_CHANNEL = "ai_agents_tasks"

_CLEAR_LEASE = "lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = now()"


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    task_id: str
    agent_type: str
    # queued (redelivered) or dead_letter (out of attempts)
    new_state: str


def encode_page_token(created_at: datetime, key: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{key}".encode()).decode()


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        created, key = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), str(uuid.UUID(key))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token is not a token this API returned") from exc


class TaskStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def submit(
        self,
        *,
        agent_type: str,
        payload: dict[str, Any],
        idempotency_key: str | None,
        priority: int,
        max_attempts: int,
    ) -> tuple[TaskRecord, bool]:
        """Insert a queued task and wake waiting agents; with a known idempotency key return the original."""
        payload_json = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        row = await self._pool.fetchrow(
            """
            WITH ins AS (
                INSERT INTO tasks (task_id, agent_type, state, payload, idempotency_key, priority, max_attempts)
                VALUES ($1, $2, 'queued', $3::jsonb, $4, $5, $6)
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING *
            )
            SELECT ins.*, pg_notify($7, ins.agent_type) FROM ins
            """,
            uuid.uuid4(),
            agent_type,
            payload_json,
            idempotency_key,
            priority,
            max_attempts,
            TASKS_CHANNEL,
        )
        if row is not None:
            return TaskRecord.from_row(row), True
        # jsonb compares numbers by value: the stored 1e23 reads back as 100000000000000000000000, which no
        # longer equals the float 1e23 in Python, but PostgreSQL still finds the retry's payload equal.
        existing = await self._pool.fetchrow(
            "SELECT *, payload = $2::jsonb AS same_payload FROM tasks WHERE idempotency_key = $1",
            idempotency_key,
            payload_json,
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
        self, *, agent_type: str | None, state: str | None, page_size: int, page_token: str | None
    ) -> tuple[list[TaskRecord], str | None]:
        """Oldest first, keyset-paginated on (created_at, task_id) so pages stay stable under inserts."""
        after_created, after_id = decode_page_token(page_token) if page_token else (None, None)
        rows = await self._pool.fetch(
            """
            SELECT * FROM tasks
            WHERE ($1::text IS NULL OR agent_type = $1)
              AND ($2::text IS NULL OR state = $2)
              AND ($3::timestamptz IS NULL OR (created_at, task_id) > ($3, $4::uuid))
            ORDER BY created_at, task_id
            LIMIT $5
            """,
            agent_type,
            state,
            after_created,
            uuid.UUID(after_id) if after_id else None,
            page_size + 1,
        )
        tasks = [TaskRecord.from_row(r) for r in rows[:page_size]]
        more = len(rows) > page_size
        return tasks, encode_page_token(tasks[-1].created_at, tasks[-1].task_id) if more else None

    async def lease(
        self, *, agent_id: str, agent_type: str, max_tasks: int, lease_seconds: int
    ) -> builtins.list[TaskRecord]:
        """Lease up to max_tasks queued tasks; SKIP LOCKED lets many orchestrators lease concurrently."""
        rows = await self._pool.fetch(
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
        return [TaskRecord.from_row(r) for r in rows]

    async def _fenced_update(self, task_id: str, token: int, sql: str, *args: Any) -> TaskRecord:
        """Run an UPDATE guarded by `state = 'leased' AND lease_token = $2`; explain a refusal precisely."""
        row = await self._pool.fetchrow(sql, uuid.UUID(task_id), token, *args)
        if row is not None:
            return TaskRecord.from_row(row)
        current = await self.get(task_id)
        if current.state != "leased":
            raise FailedPrecondition(f"task {task_id} is {current.state}, not leased")
        raise FailedPrecondition(f"lease token {token} for task {task_id} is stale")

    async def complete(self, task_id: str, token: int, result: dict[str, Any]) -> TaskRecord:
        return await self._fenced_update(
            task_id,
            token,
            f"""
            UPDATE tasks SET state = 'succeeded', result = $3::jsonb, progress = 1, finished_at = now(), {_CLEAR_LEASE}
            WHERE task_id = $1 AND state = 'leased' AND lease_token = $2
            RETURNING *
            """,
            json.dumps(result, separators=(",", ":")),
        )

    async def fail(
        self, task_id: str, token: int, *, error: str, retryable: bool, backoff_seconds: float
    ) -> TaskRecord:
        """A retryable failure goes back to the queue after a backoff until max_attempts, then dead-letters."""
        return await self._fenced_update(
            task_id,
            token,
            f"""
            WITH updated AS (
                UPDATE tasks SET
                    state = CASE WHEN NOT $4 THEN 'failed'
                                 WHEN attempts >= max_attempts THEN 'dead_letter'
                                 ELSE 'queued' END,
                    error = $3,
                    available_at = now() + make_interval(secs => $5 * power(2, greatest(attempts - 1, 0))),
                    finished_at = CASE WHEN NOT $4 OR attempts >= max_attempts THEN now() END,
                    {_CLEAR_LEASE}
                WHERE task_id = $1 AND state = 'leased' AND lease_token = $2
                RETURNING *
            )
            SELECT updated.*, CASE WHEN state = 'queued' THEN pg_notify($6, agent_type) END FROM updated
            """,
            error,
            retryable,
            backoff_seconds,
            TASKS_CHANNEL,
        )

    async def release(self, task_id: str, token: int) -> TaskRecord:
        """Give a leased task back without counting the attempt (the agent is shutting down)."""
        return await self._fenced_update(
            task_id,
            token,
            f"""
            WITH updated AS (
                UPDATE tasks SET state = 'queued', attempts = greatest(attempts - 1, 0), available_at = now(),
                    {_CLEAR_LEASE}
                WHERE task_id = $1 AND state = 'leased' AND lease_token = $2
                RETURNING *
            )
            SELECT updated.*, pg_notify($3, agent_type) FROM updated
            """,
            TASKS_CHANNEL,
        )

    async def update_progress(
        self, task_id: str, token: int, *, progress: float, message: str, lease_seconds: int
    ) -> TaskRecord:
        return await self._fenced_update(
            task_id,
            token,
            """
            UPDATE tasks SET progress = $3, progress_message = $4,
                lease_expires_at = now() + make_interval(secs => $5), updated_at = now()
            WHERE task_id = $1 AND state = 'leased' AND lease_token = $2
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
            extended AS (
                UPDATE tasks t SET lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
                FROM held
                WHERE t.task_id = held.task_id AND t.lease_token = held.token
                  AND t.state = 'leased' AND t.lease_owner = $1
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
        return [ExpiredLease(str(r["task_id"]), r["agent_type"], r["state"]) for r in rows]

    async def active_counts(self) -> dict[tuple[str, str], int]:
        """Queued and leased tasks per (agent_type, state): cheap, index-only over two states."""
        rows = await self._pool.fetch(
            "SELECT agent_type, state, count(*) AS n FROM tasks WHERE state IN ('queued', 'leased') GROUP BY 1, 2"
        )
        return {(r["agent_type"], r["state"]): r["n"] for r in rows}

    async def all_counts(self) -> dict[tuple[str, str], int]:
        rows = await self._pool.fetch("SELECT agent_type, state, count(*) AS n FROM tasks GROUP BY 1, 2")
        return {(r["agent_type"], r["state"]): r["n"] for r in rows}
