"""The local fleet's supervisor restarts a process that exits, after a back-off that doubles and resets."""

from __future__ import annotations

import logging
import subprocess
import time

import pytest
from ai_agents.local.supervisor import RestartBackoff, Supervisor

pytestmark = pytest.mark.timeout(60)


def test_restarts_after_a_doubling_back_off_that_resets_once_the_process_ran_long_enough(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ai_agents.local.supervisor")
    processes = {"sleeper": subprocess.Popen(["sleep", "60"])}
    restarted_at: list[float] = []

    def restart(name: str) -> int:
        processes[name] = subprocess.Popen(["sleep", "60"])
        restarted_at.append(time.monotonic())
        return len(restarted_at)

    backoff = RestartBackoff(initial=0.2, cap=0.8, reset_after=1.5)
    supervisor = Supervisor(
        ["sleeper"], exit_code=lambda name: processes[name].poll(), restart=restart, backoff=backoff
    )

    def kill_and_time_restart() -> float:
        before = len(restarted_at)
        processes["sleeper"].kill()
        processes["sleeper"].wait()
        killed_at = time.monotonic()
        deadline = killed_at + 5
        while len(restarted_at) == before and time.monotonic() < deadline:
            supervisor.poll()
            time.sleep(0.02)
        assert len(restarted_at) == before + 1, "the killed process was not restarted"
        return restarted_at[-1] - killed_at

    try:
        # Quick deaths: 0.2, 0.4, 0.8, then capped at 0.8 seconds (never earlier; generous slack for a busy machine).
        for expected in (0.2, 0.4, 0.8, 0.8):
            delay = kill_and_time_restart()
            assert expected - 0.05 <= delay < expected + 1.0, f"restart after {delay:.2f}s, expected {expected}s"
        # A process that ran longer than reset_after starts again from the initial delay. Running for a while
        # is the condition itself, so this one wait is a sleep.
        time.sleep(backoff.reset_after + 0.2)
        delay = kill_and_time_restart()
        # Without the reset the delay would be the cap (0.8 s) at least.
        assert delay < backoff.cap, f"back-off did not reset: {delay:.2f}s"
    finally:
        for process in processes.values():
            process.kill()
            process.wait()
    restarts = [r for r in caplog.records if r.getMessage() == "process restarted"]
    assert [getattr(r, "restarts", None) for r in restarts] == [1, 2, 3, 4, 5]
    assert all(getattr(r, "fleet_process", None) == "sleeper" for r in restarts)
    assert all(getattr(r, "previous_exit_code", None) == -9 for r in restarts)
