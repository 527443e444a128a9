"""Deadline polling that keeps evidence, for every tier: `eventually`, `consistently`, `assert_eventually` and its
async form `assert_eventually_async`.

A failed read is not an observation: polling goes on and the last error is reported at the deadline together
with the last value that was seen. Every wait has an explicit budget in seconds and a message stating what was
expected. Time is measured on the monotonic clock; nothing counts iterations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger("tests.wait")

T = TypeVar("T")

_MISSING: Any = object()


class WaitTimeout(AssertionError):
    """The condition did not hold within the budget; carries the last observation and the last error."""

    def __init__(
        self, expectation: str, *, timeout_sec: float, last: Any, last_error: BaseException | None, attempts: int
    ) -> None:
        self.expectation = expectation
        self.timeout_sec = timeout_sec
        self.last = None if last is _MISSING else last
        self.observed = last is not _MISSING
        self.last_error = last_error
        self.attempts = attempts
        seen = repr(self.last) if self.observed else "nothing (no read succeeded)"
        message = f"timed out after {timeout_sec:.0f}s waiting for: {expectation}; last observation: {seen}"
        if last_error is not None:
            message += f"; last error: {type(last_error).__name__}: {last_error}"
        super().__init__(message)


class WaitAborted(AssertionError):
    """A failure predicate said the condition can no longer hold; the wait ended before its deadline."""


@dataclass
class Clock:
    """Monotonic time and sleeping, injectable so that the helpers can be tested without waiting."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Poll(Generic[T]):
    """One polling run: what was read, when, and the last failure to read."""

    last: Any = _MISSING
    last_error: BaseException | None = None
    attempts: int = 0
    history: list[tuple[float, Any]] = field(default_factory=list)


def eventually(
    read: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout_sec: float,
    expectation: str,
    interval_sec: float = 2.0,
    failed: Callable[[T], str | None] | None = None,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    clock: Clock | None = None,
) -> T:
    """Poll `read()` until `done(value)`; return that value.

    A read that raises one of `retry_on` is not an observation: the error is kept and polling continues.
    `failed(value)` may return a reason that ends the wait early (WaitAborted). At the deadline WaitTimeout
    reports the last value read and the last error.
    """
    if timeout_sec <= 0:
        raise ValueError("timeout_sec must be positive")
    clock = clock or Clock()
    deadline = clock.now() + timeout_sec
    poll: Poll[T] = Poll()
    while True:
        poll.attempts += 1
        try:
            value = read()
        except retry_on as exc:  # a failed read is not an observation
            poll.last_error = exc
            log.info("wait %r: read failed: %s: %s", expectation, type(exc).__name__, exc)
        else:
            poll.last = value
            poll.history.append((clock.now(), value))
            log.info("wait %r: observed %r", expectation, value)
            if done(value):
                return value
            if failed is not None and (reason := failed(value)):
                raise WaitAborted(f"gave up waiting for: {expectation}: {reason}; observed {value!r}")
        remaining = deadline - clock.now()
        if remaining <= 0:
            raise WaitTimeout(
                expectation, timeout_sec=timeout_sec, last=poll.last, last_error=poll.last_error, attempts=poll.attempts
            )
        clock.sleep(min(interval_sec, remaining))


def consistently(
    read: Callable[[], T],
    holds: Callable[[T], bool],
    *,
    duration_sec: float,
    expectation: str,
    interval_sec: float = 2.0,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    clock: Clock | None = None,
) -> list[T]:
    """Check `holds(read())` for the whole `duration_sec`; fail on the first value that breaks it.

    Failed reads are kept as evidence but do not count as observations; if no read at all succeeded the
    check fails, because nothing was proven.
    """
    clock = clock or Clock()
    deadline = clock.now() + duration_sec
    seen: list[T] = []
    last_error: BaseException | None = None
    while True:
        try:
            value = read()
        except retry_on as exc:
            last_error = exc
            log.info("consistently %r: read failed: %s", expectation, exc)
        else:
            seen.append(value)
            if not holds(value):
                raise AssertionError(f"expected throughout {duration_sec:.0f}s: {expectation}; broken by {value!r}")
        remaining = deadline - clock.now()
        if remaining <= 0:
            break
        clock.sleep(min(interval_sec, remaining))
    if not seen:
        raise WaitTimeout(expectation, timeout_sec=duration_sec, last=_MISSING, last_error=last_error, attempts=0)
    return seen


def assert_eventually(
    check: Callable[[], T], *, timeout_sec: float, interval_sec: float = 2.0, clock: Clock | None = None
) -> T:
    """Retry `check()` only on AssertionError until it passes; re-raise the last failure at the deadline."""
    clock = clock or Clock()
    deadline = clock.now() + timeout_sec
    while True:
        try:
            return check()
        except AssertionError:
            if clock.now() >= deadline:
                raise
        clock.sleep(max(0.0, min(interval_sec, deadline - clock.now())))


async def assert_eventually_async(
    check: Callable[[], Awaitable[T]], *, timeout_sec: float = 20.0, interval_sec: float = 0.1, message: str = ""
) -> T:
    """`assert_eventually` for a coroutine: retry `await check()` only on AssertionError until it passes; at the
    deadline raise `message` if given, else the last failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_sec
    while True:
        try:
            return await check()
        except AssertionError:
            if loop.time() >= deadline:
                if message:
                    raise AssertionError(message) from None
                raise
        await asyncio.sleep(interval_sec)
