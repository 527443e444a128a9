"""Lease long-polls wake on notifications: all waiters, or only as many as new tasks; none is lost or stranded."""

from __future__ import annotations

import asyncio

from ai_agents.store.database import Wakeups


async def _waiting(wakeups: Wakeups, n: int, timeout: float = 5.0) -> list[asyncio.Task[bool]]:
    seen = wakeups.generation("coding")
    waiters = [asyncio.create_task(wakeups.wait("coding", seen, timeout)) for _ in range(n)]
    await asyncio.sleep(0)  # all of them waiting
    return waiters


async def test_a_counted_notification_wakes_that_many_waiters_oldest_first() -> None:
    wakeups = Wakeups()
    waiters = await _waiting(wakeups, 5)
    wakeups.notify("coding", 2)
    done, _ = await asyncio.wait(waiters, timeout=0.5)
    assert done == set(waiters[:2])
    wakeups.notify("coding")  # uncounted (a release, an expiry): everyone
    assert await asyncio.gather(*waiters) == [True] * 5


async def test_a_notification_just_before_the_wait_is_not_lost() -> None:
    wakeups = Wakeups()
    seen = wakeups.generation("coding")
    wakeups.notify("coding", 1)  # between an empty lease and the wait: nobody was waiting yet
    assert await wakeups.wait("coding", seen, 0.01) is True


async def test_timed_out_and_cancelled_waiters_are_skipped_and_do_not_pile_up() -> None:
    wakeups = Wakeups()
    for _ in range(5):  # an idle fleet's long polls time out again and again
        assert await asyncio.gather(*await _waiting(wakeups, 20, timeout=0.001)) == [False] * 20
    cancelled, live = await _waiting(wakeups, 3), await _waiting(wakeups, 1)
    for waiter in cancelled:
        waiter.cancel()
    await asyncio.sleep(0)
    wakeups.notify("coding", 1)  # goes to the live waiter, not to a cancelled or timed-out one
    assert await live[0] is True
    assert len(wakeups._waiters["coding"]) <= 2 * wakeups._live["coding"] + 16
