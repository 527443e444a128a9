"""A completion that hands work on: the task succeeds, its follow-ups are queued and its messages sent, in one
statement (so one transaction), or none of it happens.

The lease's fence decides for all of it, exactly as for a plain completion: the task must be leased under this
token (and owner, when agent identity is on). A completion retried after its first attempt committed (the agent
died, or lost the answer), or sent with a token whose lease expired, finds the fence closed and creates nothing.
The unique index on (parent_task_id, follow_up_index) (sql/0003) would refuse a second copy of a follow-up even
if the fence were ever bypassed.

Follow-ups are ordinary queued tasks of their type (leased, retried, dead-lettered as any other), linked to
the completed task, which lists them in `child_task_ids`. They continue the trace of the completion call (one
chain, one trace; observability/task_trace.py), or the parent's own when that call was not traced.

A chain has a budget (sql/0004): its depth and its number of tasks. Without one a handler that hands on more than
one follow-up at each step (or loops between two types) grows its chain without end and floods every queue it
touches. A completion over budget is refused as INVALID_ARGUMENT and creates nothing; the agent then fails the task.
Completions of one chain take the chain's transaction-scoped advisory lock while they count, so concurrent steps
cannot together overrun the budget.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import asyncpg

from ai_agents.errors import InvalidArgument
from ai_agents.handoff import FollowUp, OutgoingMessage
from ai_agents.store.messages import LOCK_MESSAGE_IDS, MESSAGES_CHANNEL, wake_key_sql
from ai_agents.store.records import TaskRecord
from ai_agents.store.task_batches import TASKS_CHANNEL


@dataclass(frozen=True, slots=True)
class Handoff:
    """What a completion hands on, validated (orchestrator/validation.py): max_attempts already resolved."""

    follow_ups: tuple[FollowUp, ...] = ()
    messages: tuple[OutgoingMessage, ...] = ()
    # The completion call's W3C trace context, for the follow-ups to continue; None: the parent's.
    traceparent: str | None = None
    tracestate: str | None = None
    # The chain's budget: how deep a follow-up may sit (the first task is at 0) and how many tasks it may hold.
    max_chain_depth: int = 32
    max_chain_tasks: int = 1000

    def __bool__(self) -> bool:
        return bool(self.follow_ups or self.messages)


# $1-$3 are the fence of store/tasks.py (_FENCE). `prior` locks the row and keeps the lease owner, who is the
# messages' sender (the update clears it); the messages also name the task that sent them. A CTE with a side
# effect that nothing reads is never run, hence the scalar subqueries over `woken` and `announced` at the end.
_COMPLETE_AND_HAND_ON = f"""
WITH prior AS (
    SELECT task_id, lease_owner FROM tasks
    WHERE task_id = $1 AND state = 'leased' AND lease_token = $2 AND ($3::text IS NULL OR lease_owner = $3)
    FOR UPDATE
),
done AS (
    UPDATE tasks t SET state = 'succeeded', result = $4::jsonb, progress = 1, finished_at = now(),
        child_task_ids = $5::uuid[],
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = now()
    FROM prior WHERE t.task_id = prior.task_id
    RETURNING t.*, prior.lease_owner AS completed_by
),
children AS (
    INSERT INTO tasks (
        task_id, agent_type, state, payload, priority, max_attempts, parent_task_id, follow_up_index,
        root_task_id, chain_depth, traceparent, tracestate
    )
    SELECT f.task_id, f.agent_type, 'queued', f.payload::jsonb, f.priority, f.max_attempts, done.task_id,
        f.idx - 1, coalesce(done.root_task_id, done.task_id), done.chain_depth + 1,
        CASE WHEN $10::text IS NULL THEN done.traceparent ELSE $10 END,
        CASE WHEN $10::text IS NULL THEN done.tracestate ELSE $11 END
    FROM done, unnest($5::uuid[], $6::text[], $7::text[], $8::int[], $9::int[])
        WITH ORDINALITY AS f(task_id, agent_type, payload, priority, max_attempts, idx)
    RETURNING agent_type
),
woken AS (
    SELECT pg_notify($12, types.agent_type || ':' || types.n)
    FROM (SELECT agent_type, count(*) AS n FROM children GROUP BY agent_type) types
),
sent AS (
    INSERT INTO messages (sender, recipient_agent_id, recipient_type, to_all, topic, body, sender_task_id)
    SELECT coalesce(done.completed_by, ''), m.recipient_agent_id, m.recipient_type, m.to_all, m.topic, m.body::jsonb,
        done.task_id
    FROM done, unnest($13::text[], $14::text[], $15::bool[], $16::text[], $17::text[])
        WITH ORDINALITY AS m(recipient_agent_id, recipient_type, to_all, topic, body, idx)
    ORDER BY m.idx
    RETURNING recipient_agent_id, recipient_type, to_all
),
announced AS (
    -- One NOTIFY per set of recipients, naming them (store/messages.py).
    SELECT pg_notify($18, recipients.key)
    FROM (SELECT DISTINCT {wake_key_sql("sent")} AS key FROM sent) recipients
)
SELECT done.*, (SELECT count(*) FROM woken) AS types_notified, (SELECT count(*) FROM announced) AS announced
FROM done
"""


# Where the completing task sits in its chain, and whether the fence would let this completion through (when it
# would not, the completion is refused for that reason instead: the budget is not this caller's business).
_CHAIN_OF = """
SELECT coalesce(root_task_id, task_id) AS root, chain_depth,
    state = 'leased' AND lease_token = $2 AND ($3::text IS NULL OR lease_owner = $3) AS fenced_in
FROM tasks WHERE task_id = $1
"""
# One lock per chain, for the rest of the transaction; the prefix keeps it apart from other advisory locks.
_LOCK_CHAIN = "SELECT pg_advisory_xact_lock(hashtextextended('ai-agents-chain:' || $1::uuid::text, 0))"
_CHAIN_SIZE = "SELECT 1 + count(*) FROM tasks WHERE root_task_id = $1"


async def _check_chain_budget(
    connection: asyncpg.Connection, task_id: uuid.UUID, token: int, owner: str | None, handoff: Handoff
) -> None:
    """Raise InvalidArgument when the follow-ups would take the chain past its depth or size."""
    chain = await connection.fetchrow(_CHAIN_OF, task_id, token, owner)
    if chain is None or not chain["fenced_in"]:
        return  # the completion itself is refused (NotFound or FailedPrecondition)
    depth = chain["chain_depth"] + 1
    if depth > handoff.max_chain_depth:
        raise InvalidArgument(
            f"follow_ups: they would sit {depth} steps after the first task of chain {chain['root']}, "
            f"over the limit of {handoff.max_chain_depth} (max_chain_depth)"
        )
    await connection.execute(_LOCK_CHAIN, chain["root"])
    size = await connection.fetchval(_CHAIN_SIZE, chain["root"]) + len(handoff.follow_ups)
    if size > handoff.max_chain_tasks:
        raise InvalidArgument(
            f"follow_ups: chain {chain['root']} would hold {size} tasks, over the limit of {handoff.max_chain_tasks} "
            "(max_chain_tasks)"
        )


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


async def complete_and_hand_on(
    pool: asyncpg.Pool, task_id: str, token: int, owner: str | None, result_json: str, handoff: Handoff
) -> TaskRecord | None:
    """Complete the fenced task with its follow-ups and messages; None when the fence refused (nothing created)."""
    child_ids = [uuid.uuid4() for _ in handoff.follow_ups]
    follow_ups, messages = handoff.follow_ups, handoff.messages
    async with pool.acquire() as connection, connection.transaction():
        if follow_ups:
            await _check_chain_budget(connection, uuid.UUID(task_id), token, owner, handoff)
        if messages:
            await connection.execute(LOCK_MESSAGE_IDS)  # after the chain's lock, always in this order
        row = await connection.fetchrow(
            _COMPLETE_AND_HAND_ON,
            uuid.UUID(task_id),
            token,
            owner,
            result_json,
            child_ids,
            [f.agent_type for f in follow_ups],
            [_json(f.payload) for f in follow_ups],
            [f.priority for f in follow_ups],
            [f.max_attempts for f in follow_ups],
            handoff.traceparent,
            handoff.tracestate,
            TASKS_CHANNEL,
            [m.recipient_agent_id for m in messages],
            [m.recipient_type for m in messages],
            [m.to_all for m in messages],
            [m.topic for m in messages],
            [_json(m.body) for m in messages],
            MESSAGES_CHANNEL,
        )
    return TaskRecord.from_row(row) if row is not None else None
