"""Resource allocations within per-type quotas."""

from __future__ import annotations

import uuid

import asyncpg

from ai_agents.errors import NotFound, ResourceExhausted
from ai_agents.store.records import AllocationRecord, ResourceUsageRecord


class ResourceStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def set_quota(self, agent_type: str, resource: str, quota: int) -> ResourceUsageRecord:
        await self._pool.execute(
            "INSERT INTO resource_quotas (agent_type, resource, quota) VALUES ($1, $2, $3) "
            "ON CONFLICT (agent_type, resource) DO UPDATE SET quota = excluded.quota",
            agent_type,
            resource,
            quota,
        )
        usage = await self.usage(agent_type)
        return next(u for u in usage if u.resource == resource)

    async def allocate(self, *, agent_id: str, agent_type: str, resource: str, amount: int) -> AllocationRecord:
        """Allocate within the quota; the quota row lock serializes concurrent allocations of one resource."""
        async with self._pool.acquire() as conn, conn.transaction():
            quota = await conn.fetchval(
                "SELECT quota FROM resource_quotas WHERE agent_type = $1 AND resource = $2 FOR UPDATE",
                agent_type,
                resource,
            )
            if quota is None:
                raise ResourceExhausted(f"no quota for resource {resource!r} and agent type {agent_type}")
            used = await conn.fetchval(
                "SELECT coalesce(sum(amount), 0)::bigint FROM resource_allocations "
                "WHERE agent_type = $1 AND resource = $2",
                agent_type,
                resource,
            )
            if used + amount > quota:
                raise ResourceExhausted(
                    f"allocating {amount} {resource} would exceed the {agent_type} quota ({used} of {quota} in use)"
                )
            row = await conn.fetchrow(
                "INSERT INTO resource_allocations (allocation_id, agent_id, agent_type, resource, amount) "
                "VALUES ($1, $2, $3, $4, $5) RETURNING *",
                uuid.uuid4(),
                agent_id,
                agent_type,
                resource,
                amount,
            )
        return AllocationRecord.from_row(row)

    async def release(self, allocation_id: str) -> None:
        found = await self._pool.fetchval(
            "DELETE FROM resource_allocations WHERE allocation_id = $1 RETURNING 1", uuid.UUID(allocation_id)
        )
        if found is None:
            raise NotFound(f"allocation {allocation_id} not found")

    async def usage(self, agent_type: str | None) -> list[ResourceUsageRecord]:
        rows = await self._pool.fetch(
            """
            SELECT q.agent_type, q.resource, q.quota,
                   coalesce((SELECT sum(a.amount) FROM resource_allocations a
                             WHERE a.agent_type = q.agent_type AND a.resource = q.resource), 0)::bigint AS allocated
            FROM resource_quotas q
            WHERE $1::text IS NULL OR q.agent_type = $1
            ORDER BY q.agent_type, q.resource
            """,
            agent_type,
        )
        return [ResourceUsageRecord(r["agent_type"], r["resource"], r["allocated"], r["quota"]) for r in rows]
