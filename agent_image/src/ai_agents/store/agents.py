"""The agent registry: declared agents and running agent processes, with heartbeats."""

from __future__ import annotations

import builtins
import json
from collections.abc import Sequence

import asyncpg

from ai_agents.domain import AgentState
from ai_agents.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from ai_agents.group_commit import RUN_ALONE, Answer, GroupCommit
from ai_agents.store.availability import is_database_unavailable
from ai_agents.store.paging import byte_bounded_page, has_more
from ai_agents.store.records import AgentRecord

# An agent row's cost in a list page (see store/tasks.py): JSON text of its variable fields plus ~270 bytes of
# fixed fields and keys in the HTTP rendering, rounded up.
_AGENT_ROW_BYTES = """(
    octet_length(labels::text) + octet_length(to_json(agent_id)::text)
    + octet_length(to_json(address)::text) + octet_length(to_json(version)::text) + 384
)"""


def _effective_state(stale_param: str) -> str:
    # "stale" is derived, never stored: an agent that heartbeats again is simply active again.
    return (
        f"CASE WHEN state = 'active' AND last_heartbeat < now() - make_interval(secs => {stale_param}) "
        "THEN 'stale' ELSE state END"
    )


# Heartbeats of many agents in one statement (ai_agents/group_commit.py), rows locked in agent_id order so that two
# batches wait for each other instead of deadlocking. `idx` says which caller each updated row answers.
_HEARTBEATS = """
WITH beat AS (SELECT * FROM unnest($1::text[], $2::int[], $3::int[]) AS b(agent_id, running, idx)),
locked AS (
    SELECT a.agent_id FROM agents a JOIN beat b ON a.agent_id = b.agent_id ORDER BY a.agent_id FOR UPDATE OF a
)
UPDATE agents a SET last_heartbeat = now(), running = b.running
FROM beat b
WHERE a.agent_id = b.agent_id AND a.agent_id IN (SELECT agent_id FROM locked) AND a.state <> 'deregistered'
RETURNING b.idx
"""

# Heartbeats arrive spread out (each agent beats every few seconds), so without a wait most batches would hold one
# beat and each beat would cost a statement and a WAL flush. Waiting this long first groups them (at 1,000 beats/s,
# about ten per statement); it is a thousandth of a 10 s interval and far inside any lease.
HEARTBEAT_LINGER_SECONDS = 0.01


class AgentStore:
    def __init__(self, pool: asyncpg.Pool, *, stale_seconds: int, group_commit: bool = True) -> None:
        self._pool = pool
        self._stale = float(stale_seconds)
        self._heartbeats: GroupCommit[tuple[str, int], bool] | None = None
        if group_commit:
            self._heartbeats = GroupCommit(
                "heartbeat",
                self._heartbeat_batch,
                shared_error=is_database_unavailable,
                linger_seconds=HEARTBEAT_LINGER_SECONDS,
            )

    async def _heartbeat_batch(self, items: Sequence[tuple[str, int]]) -> list[Answer[bool]]:
        """True/False per (agent_id, running) as `heartbeat` answers; an id seen earlier in the batch runs alone."""
        first: dict[str, int] = {}
        for index, (agent_id, _) in enumerate(items):
            first.setdefault(agent_id, index)
        rows = await self._pool.fetch(
            _HEARTBEATS,
            list(first),
            [items[index][1] for index in first.values()],
            list(first.values()),
        )
        found = {row["idx"] for row in rows}
        return [index in found if first[agent_id] == index else RUN_ALONE for index, (agent_id, _) in enumerate(items)]

    def _select(self, where: str) -> str:
        return f"SELECT *, {_effective_state('$1')} AS effective_state FROM agents WHERE {where}"

    async def create(self, *, agent_id: str, agent_type: str, labels: dict[str, str], capacity: int) -> AgentRecord:
        row = await self._pool.fetchrow(
            f"""
            WITH ins AS (
                INSERT INTO agents (agent_id, agent_type, state, labels, capacity)
                VALUES ($2, $3, 'active', $4::jsonb, $5)
                ON CONFLICT (agent_id) DO NOTHING
                RETURNING *
            )
            SELECT *, {_effective_state("$1")} AS effective_state FROM ins
            """,
            self._stale,
            agent_id,
            agent_type,
            json.dumps(labels),
            capacity,
        )
        if row is None:
            raise AlreadyExists(f"agent {agent_id} already exists")
        return AgentRecord.from_row(row)

    async def register(
        self,
        *,
        agent_id: str,
        agent_type: str,
        labels: dict[str, str],
        capacity: int,
        address: str,
        version: str,
    ) -> AgentRecord:
        """Upsert: a restarted process with the same id simply becomes active again.

        An id keeps its type for good: registering it as another type is refused, so nobody turns a
        coding agent (and the tasks it holds) into a testing one.
        """
        row = await self._pool.fetchrow(
            f"""
            WITH up AS (
                INSERT INTO agents (agent_id, agent_type, state, labels, capacity, address, version)
                VALUES ($2, $3, 'active', $4::jsonb, $5, $6, $7)
                ON CONFLICT (agent_id) DO UPDATE SET
                    agent_type = excluded.agent_type, state = 'active', labels = excluded.labels,
                    capacity = excluded.capacity, address = excluded.address, version = excluded.version,
                    registered_at = now(), last_heartbeat = now(), running = 0
                WHERE agents.agent_type = excluded.agent_type
                RETURNING *
            )
            SELECT *, {_effective_state("$1")} AS effective_state FROM up
            """,
            self._stale,
            agent_id,
            agent_type,
            json.dumps(labels),
            capacity,
            address,
            version,
        )
        if row is None:
            raise AlreadyExists(f"agent {agent_id} is registered as another agent type; use another agent_id")
        return AgentRecord.from_row(row)

    async def check_may_lease(self, agent_id: str, agent_type: str) -> None:
        """Refuse leasing to an id that is not registered (or was deregistered), or is registered as another type."""
        row = await self._pool.fetchrow("SELECT agent_type, state FROM agents WHERE agent_id = $1", agent_id)
        if row is None or row["state"] == AgentState.DEREGISTERED:
            raise FailedPrecondition(f"agent {agent_id} is not registered; call RegisterAgent first")
        if row["agent_type"] != agent_type:
            raise PermissionDenied(f"agent {agent_id} is registered as {row['agent_type']}, not {agent_type}")

    async def get(self, agent_id: str) -> AgentRecord:
        row = await self._pool.fetchrow(self._select("agent_id = $2"), self._stale, agent_id)
        if row is None:
            raise NotFound(f"agent {agent_id} not found")
        return AgentRecord.from_row(row)

    async def list(
        self,
        *,
        agent_type: str | None,
        state: AgentState | None,
        page_size: int,
        after: str | None,
        max_bytes: int,
    ) -> tuple[list[AgentRecord], str | None]:
        """By agent id; a page ends at `page_size` rows or before `max_bytes` (at least one row), as tasks do."""
        rows = await self._pool.fetch(
            byte_bounded_page(
                f"""
                SELECT * FROM ({self._select("($2::text IS NULL OR agent_type = $2)")}) a
                WHERE ($3::text IS NULL OR effective_state = $3)
                  AND ($4::text IS NULL OR agent_id > $4)
                  AND (effective_state <> 'deregistered' OR $3 = 'deregistered')
                ORDER BY agent_id LIMIT $5
                """,
                order_by="agent_id",
                row_bytes=_AGENT_ROW_BYTES,
                budget_param="$6",
            ),
            self._stale,
            agent_type,
            state,
            after,
            page_size + 1,
            max_bytes,
        )
        agents = [AgentRecord.from_row(r) for r in rows[:page_size]]
        return agents, agents[-1].agent_id if has_more(rows, len(agents)) else None

    async def update(
        self, agent_id: str, *, labels: dict[str, str] | None, capacity: int | None, state: AgentState | None
    ) -> AgentRecord:
        row = await self._pool.fetchrow(
            f"""
            WITH up AS (
                UPDATE agents SET
                    labels = coalesce($3::jsonb, labels),
                    capacity = coalesce($4, capacity),
                    state = coalesce($5, state)
                WHERE agent_id = $2
                RETURNING *
            )
            SELECT *, {_effective_state("$1")} AS effective_state FROM up
            """,
            self._stale,
            agent_id,
            json.dumps(labels) if labels is not None else None,
            capacity,
            state,
        )
        if row is None:
            raise NotFound(f"agent {agent_id} not found")
        return AgentRecord.from_row(row)

    async def delete(self, agent_id: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM resource_allocations WHERE agent_id = $1", agent_id)
            if await conn.fetchval("DELETE FROM agents WHERE agent_id = $1 RETURNING 1", agent_id) is None:
                raise NotFound(f"agent {agent_id} not found")

    async def deregister(self, agent_id: str) -> None:
        """Mark deregistered and free its resource allocations; its leases expire or were released."""
        async with self._pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                "UPDATE agents SET state = 'deregistered', running = 0 WHERE agent_id = $1 RETURNING 1",
                agent_id,
            )
            if found is None:
                raise NotFound(f"agent {agent_id} not found")
            await conn.execute("DELETE FROM resource_allocations WHERE agent_id = $1", agent_id)

    async def heartbeat(self, agent_id: str, running: int) -> bool:
        """Record a heartbeat; False when the agent is unknown or deregistered (it must register again)."""
        if self._heartbeats is not None:
            answer = await self._heartbeats((agent_id, running))
            if isinstance(answer, bool):
                return answer
        found = await self._pool.fetchval(
            "UPDATE agents SET last_heartbeat = now(), running = $2 "
            "WHERE agent_id = $1 AND state <> 'deregistered' RETURNING 1",
            agent_id,
            running,
        )
        return found is not None

    async def sweep(self, older_than_seconds: int) -> builtins.list[str]:
        """Deregister agents silent for far longer than the stale threshold, freeing their allocations."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE agents SET state = 'deregistered', running = 0 "
                "WHERE state <> 'deregistered' AND last_heartbeat < now() - make_interval(secs => $1) "
                "RETURNING agent_id",
                float(older_than_seconds),
            )
            ids = [r["agent_id"] for r in rows]
            if ids:
                await conn.execute("DELETE FROM resource_allocations WHERE agent_id = ANY($1::text[])", ids)
        return ids

    async def counts(self) -> dict[tuple[str, AgentState], int]:
        rows = await self._pool.fetch(
            f"SELECT agent_type, {_effective_state('$1')} AS s, count(*) AS n FROM agents "
            "WHERE state <> 'deregistered' GROUP BY 1, 2",
            self._stale,
        )
        return {(r["agent_type"], AgentState(r["s"])): r["n"] for r in rows}
