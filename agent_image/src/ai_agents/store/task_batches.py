"""The multi-row statements behind group commit (ai_agents/group_commit.py) of submits and completions.

Each takes the items of one batch and returns one answer per item, in order:
- the caller's own row (its insert, its completion);
- None when the statement did not touch the caller's row for a reason the caller explains itself exactly as
  the single statement's caller does (an idempotency key already used; a stale token, a task no longer leased);
- RUN_ALONE when this batch cannot speak for the item (a task id twice in one batch): the caller then runs the
  single statement after the batch, so the outcome is the one it would have had in sequence.

Rows are locked in task_id order before they are updated: two batches (or a batch and a heartbeat extending the
same agent's leases) then wait for each other instead of deadlocking.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from ai_agents.group_commit import RUN_ALONE, Answer
from ai_agents.store.records import TaskRecord

TASKS_CHANNEL = "ai_agents_tasks"


@dataclass(frozen=True, slots=True)
class NewTask:
    task_id: uuid.UUID
    agent_type: str
    payload_json: str
    idempotency_key: str | None
    priority: int
    max_attempts: int
    # The submit's W3C trace context (observability/task_trace.py); None when the submit was not traced.
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    task_id: uuid.UUID
    token: int
    owner: str | None
    result_json: str


# One NOTIFY per agent type in the batch, not per task: NOTIFY takes a global lock at commit. Its payload
# "<type>:<n>" lets each orchestrator wake only n of its waiting long polls (store/database.py Wakeups). The
# scalar subquery makes PostgreSQL run the notifying CTE (an unreferenced CTE without side effects in its plan is
# never run).
_INSERT = """
WITH ins AS (
    INSERT INTO tasks (
        task_id, agent_type, state, payload, idempotency_key, priority, max_attempts, traceparent, tracestate
    )
    SELECT n.task_id, n.agent_type, 'queued', n.payload::jsonb, n.idempotency_key, n.priority, n.max_attempts,
        n.traceparent, n.tracestate
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $8::text[], $9::text[])
        AS n(task_id, agent_type, payload, idempotency_key, priority, max_attempts, traceparent, tracestate)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING *
),
woken AS (
    SELECT pg_notify($7, types.agent_type || ':' || types.n)
    FROM (SELECT agent_type, count(*) AS n FROM ins GROUP BY agent_type) types
)
SELECT ins.*, (SELECT count(*) FROM woken) AS types_notified FROM ins
"""

# The fence of the single `complete` (store/tasks.py _FENCE) per row: leased, same token, same owner if given.
_COMPLETE = """
WITH done AS (
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::int[])
        AS d(task_id, token, owner, result, idx)
),
locked AS (
    SELECT t.task_id FROM tasks t JOIN done d ON t.task_id = d.task_id ORDER BY t.task_id FOR UPDATE OF t
)
UPDATE tasks t SET state = 'succeeded', result = d.result::jsonb, progress = 1, finished_at = now(),
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = now()
FROM done d
WHERE t.task_id = d.task_id AND t.task_id IN (SELECT task_id FROM locked)
  AND t.state = 'leased' AND t.lease_token = d.token AND (d.owner IS NULL OR t.lease_owner = d.owner)
RETURNING t.*, d.idx
"""


async def insert_tasks(pool: asyncpg.Pool, items: Sequence[NewTask]) -> list[Answer[TaskRecord | None]]:
    """Insert every task; None for one whose idempotency key was taken (by an older task or one in this batch)."""
    rows = await pool.fetch(
        _INSERT,
        [i.task_id for i in items],
        [i.agent_type for i in items],
        [i.payload_json for i in items],
        [i.idempotency_key for i in items],
        [i.priority for i in items],
        [i.max_attempts for i in items],
        TASKS_CHANNEL,
        [i.traceparent for i in items],
        [i.tracestate for i in items],
    )
    inserted = {row["task_id"]: TaskRecord.from_row(row) for row in rows}
    return [inserted.get(i.task_id) for i in items]


async def complete_tasks(pool: asyncpg.Pool, items: Sequence[Completion]) -> list[Answer[TaskRecord | None]]:
    """Complete every fenced task; None where the fence refused; RUN_ALONE for a task id seen earlier in the batch."""
    first: dict[uuid.UUID, int] = {}
    for index, item in enumerate(items):
        first.setdefault(item.task_id, index)
    batch = [(index, items[index]) for index in first.values()]
    rows = await pool.fetch(
        _COMPLETE,
        [item.task_id for _, item in batch],
        [item.token for _, item in batch],
        [item.owner for _, item in batch],
        [item.result_json for _, item in batch],
        [index for index, _ in batch],
    )
    completed = {row["idx"]: TaskRecord.from_row(row) for row in rows}
    return [completed.get(index) if first[item.task_id] == index else RUN_ALONE for index, item in enumerate(items)]
