"""Messages between agents: direct, to a type, to all; read with a cursor for at-least-once delivery."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from ai_agents.store.records import MessageRecord

MESSAGES_CHANNEL = "ai_agents_messages"
# A message's NOTIFY payload names whom it is for, so that each orchestrator wakes only the message streams it
# concerns (store/database.py), not every agent's: "agent:<agent id>", "type:<agent type>" or "all".
ALL_AGENTS = "all"


def wake_key_sql(row: str) -> str:
    """The payload of the message `row` (a table or CTE alias with the messages columns), in SQL."""
    return (
        f"CASE WHEN {row}.to_all THEN '{ALL_AGENTS}' "
        f"WHEN {row}.recipient_type IS NOT NULL THEN 'type:' || {row}.recipient_type "
        f"ELSE coalesce('agent:' || {row}.recipient_agent_id, '{ALL_AGENTS}') END"
    )


def stream_wake_keys(agent_id: str, agent_type: str) -> tuple[str, str, str]:
    """The payloads that concern an agent's message stream: its own, its type's, everyone's."""
    return f"agent:{agent_id}", f"type:{agent_type}", ALL_AGENTS


def is_wake_key(payload: str) -> bool:
    """Whether a payload names an audience; an older orchestrator's payload (a message id) does not."""
    return payload == ALL_AGENTS or payload.startswith(("agent:", "type:"))


# Message ids are handed out in commit order: every transaction that inserts messages takes this lock (held until
# it ends) before its ids. Otherwise ids are taken in one order and committed in another, and a reader whose
# cursor passed a committed id N would never see a message below N that committed after it: lost for good.
LOCK_MESSAGE_IDS = "SELECT pg_advisory_xact_lock(hashtextextended('ai-agents-message-ids', 0))"

_INSERT = f"""
WITH ins AS (
    INSERT INTO messages (sender, recipient_agent_id, recipient_type, to_all, topic, body)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb)
    RETURNING *
)
SELECT ins.*, pg_notify($7, {wake_key_sql("ins")}) FROM ins
"""


class MessageStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def insert(
        self,
        *,
        sender: str,
        recipient_agent_id: str | None,
        recipient_type: str | None,
        to_all: bool,
        topic: str,
        body: dict[str, Any],
    ) -> MessageRecord:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(LOCK_MESSAGE_IDS)
            row = await connection.fetchrow(
                _INSERT,
                sender,
                recipient_agent_id,
                recipient_type,
                to_all,
                topic,
                json.dumps(body),
                MESSAGES_CHANNEL,
            )
        return MessageRecord.from_row(row)

    async def after(self, *, agent_id: str, agent_type: str, after_id: int, limit: int = 100) -> list[MessageRecord]:
        rows = await self._pool.fetch(
            """
            SELECT * FROM messages
            WHERE message_id > $3 AND (recipient_agent_id = $1 OR recipient_type = $2 OR to_all)
            ORDER BY message_id LIMIT $4
            """,
            agent_id,
            agent_type,
            after_id,
            limit,
        )
        return [MessageRecord.from_row(r) for r in rows]

    async def newest_id(self) -> int:
        """The id of the newest message (0 when there is none): where a stream that starts "from now" begins."""
        newest: int = await self._pool.fetchval("SELECT coalesce(max(message_id), 0) FROM messages")
        return newest
