"""Messages between agents: direct, to a type, to all; read with a cursor for at-least-once delivery."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from ai_agents.store.records import MessageRecord

MESSAGES_CHANNEL = "ai_agents_messages"
# Message ids are handed out in commit order: every transaction that inserts messages takes this lock (held until
# it ends) before its ids. Otherwise ids are taken in one order and committed in another, and a reader whose
# cursor passed a committed id N would never see a message below N that committed after it: lost for good.
LOCK_MESSAGE_IDS = "SELECT pg_advisory_xact_lock(hashtextextended('ai-agents-message-ids', 0))"

_INSERT = """
WITH ins AS (
    INSERT INTO messages (sender, recipient_agent_id, recipient_type, to_all, topic, body)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb)
    RETURNING *
)
SELECT ins.*, pg_notify($7, ins.message_id::text) FROM ins
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
