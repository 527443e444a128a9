"""One place that turns "the database is down or restarting" into `Unavailable` (HTTP 503, gRPC UNAVAILABLE).

Every store method reaches PostgreSQL through the pool; when the server is unreachable, restarting or shutting
down, asyncpg raises connection errors that would otherwise surface as an internal error (500/INTERNAL). Clients
should instead retry, and the pool reconnects on its own once the server is back.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import asyncpg

from ai_agents.errors import Unavailable

log = logging.getLogger(__name__)

UNAVAILABLE_MESSAGE = "the database is unavailable (restarting or unreachable); retry later"

# Server-side: the connection broke (class 08), the server is starting, stopping or recovering from a crash
# (57P01-57P03), it has no connection slot left (53300), or it became a read-only standby during a failover.
_SERVER_STATES = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ReadOnlySQLTransactionError,
)
# asyncpg's InterfaceError also means programming errors; only these say the connection or pool is gone.
_CLOSED_MESSAGES = ("connection is closed", "pool is closing", "pool is closed")


def is_database_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached right now, rather than that the request was wrong."""
    if isinstance(exc, _SERVER_STATES):
        return True
    if isinstance(exc, OSError):  # refused, reset, unreachable, and TimeoutError (connect or command timeout)
        return True
    return isinstance(exc, asyncpg.InterfaceError) and any(m in str(exc) for m in _CLOSED_MESSAGES)


class OutageLog:
    """Logs database-unavailable errors at most once per `interval` seconds, with how many were suppressed.

    An outage under load fails thousands of requests in a second; one line per request would drown the logs.
    """

    def __init__(self, interval: float = 5.0) -> None:
        self._interval = interval
        self._last = float("-inf")
        self._suppressed = 0

    def record(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        log.warning(
            "database unavailable; answering UNAVAILABLE",
            extra={"error": repr(exc), "suppressed_since_last": self._suppressed},
        )
        self._last = now
        self._suppressed = 0


S = TypeVar("S")


class _UnavailableOnOutage:
    """Wraps a store; its coroutine methods raise Unavailable where asyncpg reports the database unreachable."""

    def __init__(self, store: object, outages: OutageLog) -> None:
        self._store = store
        self._outages = outages

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        method = cast("Callable[..., Awaitable[Any]]", attribute)
        outages = self._outages

        @functools.wraps(method)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except Exception as exc:
                if not is_database_unavailable(exc):
                    raise
                outages.record(exc)
                raise Unavailable(UNAVAILABLE_MESSAGE) from exc

        # Cached on the instance: later look-ups of this method skip __getattr__.
        setattr(self, name, guarded)
        return guarded


def unavailable_on_outage(store: S, outages: OutageLog) -> S:
    """`store` with every coroutine method mapping database outages to Unavailable (same interface, so typed S).

    A wrapper rather than a decorator on each method: store methods added later are covered without remembering.
    """
    return cast("S", _UnavailableOnOutage(store, outages))
