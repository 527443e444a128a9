"""Fixtures shared by every tier: the local fleet as a developer runs it (`ai-agents local up --detach`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fleet_cli import alive, run_cli


@contextlib.contextmanager
def local_fleet() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """`local up --detach`; `local down` at the end, checking nothing is left running."""
    state_dir = tempfile.mkdtemp(prefix="ai-agents-fleet-")
    env = {**os.environ, "AI_AGENTS_LOCAL_DIR": state_dir}
    env.pop("AI_AGENTS_ORCHESTRATOR_TARGET", None)
    up = run_cli(
        "local",
        "up",
        "--detach",
        "--orchestrators",
        "2",
        "--agents-per-type",
        "1",
        "--latency-ms",
        "5",
        env=env,
        timeout=180,
    )
    lines = [line for line in up.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"`local up --detach` must print exactly one JSON line, got: {up.stdout!r}"
    summary = json.loads(lines[0])
    try:
        yield summary, env
    finally:
        run_cli("local", "down", env=env, timeout=120)
        pids = [o["pid"] for o in summary["orchestrators"]] + [a["pid"] for a in summary["agents"]]
        pids.append(summary["supervisor_pid"])  # `local up --detach` leaves a supervisor running until `local down`
        deadline = time.monotonic() + 30
        running = pids
        while running and time.monotonic() < deadline:
            running = [p for p in pids if alive(p)]
            time.sleep(0.2)
        shutil.rmtree(state_dir, ignore_errors=True)
        assert not running, f"processes still running after `local down`: {running}"


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """One fleet for a module's tests that only read it (submit, list, scrape)."""
    with local_fleet() as started:
        yield started


@pytest.fixture
def own_fleet() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """A fleet of the test's own, for a test that changes it (kills a process): no later test sees the change."""
    with local_fleet() as started:
        yield started
