"""What the bench's PostgreSQL really runs with, read back from the server rather than from our own flags.

The figures are only worth comparing with a deployment (and with a peer queue) when commits are as durable as
the chart's: a task acknowledged is on disk. A postgresql.conf, an environment variable or a later change of
`LocalPostgres` could weaken that silently, so the bench asks the server and refuses to report otherwise.
"""

from __future__ import annotations

import asyncpg

# Each must be `on`: fsync flushes the WAL at all, synchronous_commit waits for that flush before a COMMIT
# returns, full_page_writes keeps a torn page after a machine crash recoverable.
REQUIRED_ON = ("fsync", "synchronous_commit", "full_page_writes")
# Reported beside them because they change what a commit costs: how the WAL is flushed, and whether PostgreSQL
# itself waits to group concurrent commits into one flush.
ALSO_REPORTED = ("wal_sync_method", "commit_delay", "commit_siblings", "wal_level", "shared_buffers")


class NotDurable(RuntimeError):
    pass


async def observed_settings(dsn: str) -> dict[str, str]:
    """The server's current values (pg_settings, in its own units) of the settings above."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[])",
            [*REQUIRED_ON, *ALSO_REPORTED],
        )
    finally:
        await conn.close()
    return {r["name"]: r["setting"] + (f" ({r['unit']})" if r["unit"] else "") for r in rows}


def require_durable(settings: dict[str, str]) -> None:
    """Raise NotDurable unless every setting in REQUIRED_ON reads `on`."""
    weak = {name: settings.get(name, "unknown") for name in REQUIRED_ON if settings.get(name) != "on"}
    if weak:
        raise NotDurable(f"the bench's PostgreSQL is not durable ({weak}); figures would not match a deployment")


def describe(settings: dict[str, str]) -> str:
    """One line for the report's title: the three durability settings as the server reported them."""
    return " ".join(f"{name}={settings.get(name, '?')}" for name in REQUIRED_ON)
