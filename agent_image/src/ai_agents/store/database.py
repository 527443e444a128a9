"""Connection pool, migrations at start-up, and LISTEN/NOTIFY wake-ups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import asyncpg

from ai_agents.store.agents import AgentStore
from ai_agents.store.availability import OutageLog, is_database_unavailable, unavailable_on_outage
from ai_agents.store.messages import ALL_AGENTS, MESSAGES_CHANNEL, MessageStore, is_wake_key
from ai_agents.store.migrations import migrate
from ai_agents.store.resources import ResourceStore
from ai_agents.store.task_batches import TASKS_CHANNEL
from ai_agents.store.tasks import TaskStore

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_SECONDS = 10.0


class Wakeups:
    """Per-key generation counters and waiters, oldest first: a notification wakes all of them or the first n.

    A notification that arrives between a waiter's empty lease and its wait is not lost, because the waiter
    compares against the generation it read before leasing. `notify` is synchronous and creates no task.

    Why n: a batch of 3 new tasks need not wake 1,000 idle agents' long polls, each of which would run a lease
    query and find nothing (a thundering herd that costs more than the tasks). A waiter left asleep is no worse
    off than before the batch: it still re-checks the queue when its timeout (at most a few seconds) passes.
    """

    def __init__(self) -> None:
        self._generation: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, deque[asyncio.Future[None]]] = defaultdict(deque)
        # Waiters per key still waiting: timed-out ones stay in the deque until it is compacted.
        self._live: dict[str, int] = defaultdict(int)

    def generation(self, key: str) -> int:
        """The key's generation; reading it marks the key as watched (see notify)."""
        return self._generation[key]

    def notify(self, key: str, count: int | None = None) -> None:
        """Move the generation of key and wake its waiters: all of them, or the `count` that waited longest.

        A key nobody has read is left alone: whoever reads it later queries the database after this
        notification's commit and sees its rows. So notifications for agents streaming from another orchestrator
        create nothing here.
        """
        if key not in self._generation:
            return
        self._generation[key] += 1
        waiters = self._waiters.get(key)
        woken = 0
        while waiters and (count is None or woken < count):
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken += 1

    def forget(self, key: str) -> None:
        """Drop a key nobody waits on (an agent's message stream that ended), so the keys of agents long gone do
        not pile up. A reader caught between `generation` and `wait` then sees a changed generation: one early
        re-read, nothing missed."""
        if not self._live.get(key):
            self._generation.pop(key, None)
            self._waiters.pop(key, None)
            self._live.pop(key, None)

    async def wait(self, key: str, seen: int, timeout: float) -> bool:
        """Wait until the generation of key differs from seen and this waiter is woken; False on timeout."""
        return await self.wait_any({key: seen}, timeout)

    async def wait_any(self, seen: Mapping[str, int], timeout: float) -> bool:
        """Wait until any key's generation differs from what was seen of it and this waiter is woken (by a
        notification of any of the keys); False on timeout."""
        if any(self._generation[key] != generation for key, generation in seen.items()):
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in seen:
            self._waiters[key].append(waiter)
            self._live[key] += 1
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        finally:
            for key in seen:
                self._live[key] -= 1
                # Timed-out (and woken-by-another-key) waiters are left behind (removing each from the middle
                # costs O(n)); drop them in one pass once they outnumber the live ones, so an idle fleet's long
                # polls never pile up.
                current = self._waiters[key]
                if len(current) > 2 * self._live[key] + 16:
                    self._waiters[key] = deque(w for w in current if not w.done())
        return True


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Release a pooled connection without asyncpg's default reset query.

    The default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` after every use: a
    second round trip per statement. Pooled connections here never hold session state (no SET, session advisory
    locks, cursors or LISTEN: the listener has its own connection), and asyncpg still rolls back a transaction
    left open before it calls this.
    """


@dataclass
class Stores:
    tasks: TaskStore
    agents: AgentStore
    messages: MessageStore
    resources: ResourceStore


class Database:
    """Owns the pool and a dedicated LISTEN connection that turns notifications into wake-ups."""

    def __init__(
        self, dsn: str, *, min_size: int, max_size: int, agent_stale_seconds: int, group_commit: bool = True
    ) -> None:
        self._dsn = dsn
        self._group_commit = group_commit
        self._min_size = min_size
        self._max_size = max_size
        self._stale = agent_stale_seconds
        self._pool: asyncpg.Pool | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self.task_wakeups = Wakeups()
        self.message_wakeups = Wakeups()
        self.listening = asyncio.Event()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database not started")
        return self._pool

    async def start(self, *, connect_timeout: float = 60.0) -> Stores:
        """Connect (retrying while the database comes up, e.g. a StatefulSet started with us), then migrate."""
        self._pool = await self._create_pool(connect_timeout)
        async with self._pool.acquire() as conn:
            applied = await migrate(conn)
        if applied:
            log.info("migrations applied", extra={"migrations": applied})
        self._listener_task = asyncio.create_task(self._listen_forever(), name="db-listener")
        # While PostgreSQL is down or restarting every store call answers Unavailable (503 / UNAVAILABLE);
        # the pool replaces broken connections on later acquires, so service resumes when the server is back.
        outages = OutageLog()
        return Stores(
            tasks=unavailable_on_outage(TaskStore(self._pool, group_commit=self._group_commit), outages),
            agents=unavailable_on_outage(
                AgentStore(self._pool, stale_seconds=self._stale, group_commit=self._group_commit), outages
            ),
            messages=unavailable_on_outage(MessageStore(self._pool), outages),
            resources=unavailable_on_outage(ResourceStore(self._pool), outages),
        )

    async def _create_pool(self, timeout: float) -> asyncpg.Pool:
        deadline = time.monotonic() + timeout
        delay = 0.5
        while True:
            try:
                pool: asyncpg.Pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    command_timeout=30,
                    # Bounds a (re)connect to a server that does not answer, so requests fail fast with 503.
                    timeout=_CONNECT_TIMEOUT_SECONDS,
                    reset=_keep_session,
                )
                return pool
            # InvalidCatalogName: the server is up but its database not created yet (a throwaway server
            # creates it just after it starts listening; with fsync on that takes a moment).
            except (
                OSError,
                asyncpg.CannotConnectNowError,
                asyncpg.PostgresConnectionError,
                asyncpg.InvalidCatalogNameError,
            ) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("database not reachable yet; retrying", extra={"error": repr(exc), "in_seconds": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        if self._listener_task is not None:
            self._listener_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener_task
        if self._pool is not None:
            await self._pool.close()

    async def ping(self) -> bool:
        try:
            return bool(await self.pool.fetchval("SELECT 1", timeout=2))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False

    def _on_notification(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        if channel != TASKS_CHANNEL:
            # "agent:<id>", "type:<type>" or "all" wakes the streams of those recipients (store/messages.py);
            # anything else (an older orchestrator's message id) wakes every stream.
            self.message_wakeups.notify(payload if is_wake_key(payload) else ALL_AGENTS)
            return
        # "<agent type>:<n>" from a batch of n new tasks wakes n waiters; a bare "<agent type>" (a task
        # released, failed back to the queue, expired; or an older orchestrator) wakes every waiter of the type.
        agent_type, _, count = payload.partition(":")
        self.task_wakeups.notify(agent_type, int(count) if count.isdigit() else None)

    @contextlib.asynccontextmanager
    async def _listening_connection(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(self._dsn, timeout=_CONNECT_TIMEOUT_SECONDS)
        try:
            await conn.add_listener(TASKS_CHANNEL, self._on_notification)
            await conn.add_listener(MESSAGES_CHANNEL, self._on_notification)
            yield conn
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    @staticmethod
    async def _until_closed(conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await lost.wait()

    async def _listen_forever(self) -> None:
        """Keep a LISTEN connection open; waiters time out and re-poll, so a gap only delays wake-ups."""
        while True:
            try:
                async with self._listening_connection() as conn:
                    self.listening.set()
                    await self._until_closed(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # An outage is expected and logged in one line; anything else with its traceback.
                log.warning(
                    "LISTEN connection lost; reconnecting",
                    exc_info=not is_database_unavailable(exc),
                    extra={"error": repr(exc)},
                )
            self.listening.clear()
            await asyncio.sleep(1)
