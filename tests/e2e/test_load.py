"""Load: locust drives the HTTP API at a fixed rate for a fixed time; every acknowledged task ends final."""

from __future__ import annotations

import pytest
from _api import Ledger
from _load import LoadProfile, LoadRun
from waits import eventually

pytestmark = pytest.mark.cluster

PROFILE = LoadProfile(users=4, rate_per_user=5.0, run_time_sec=60, max_tasks=1500)


def test_load_error_rate_and_completion(release, tmp_path, e2e_note) -> None:
    with release.orchestrator_forward() as forward:
        result = (
            LoadRun(forward.url, PROFILE, tmp_path, token=release.token(), run_id=f"load-{release.namespace}")
            .start()
            .wait()
        )
        summary = result.summary
        e2e_note(f"load: {summary.line()} (target {PROFILE.target_rps:.0f} RPS for {PROFILE.run_time_sec}s)")
        assert summary.requests > 0, f"locust sent nothing:\n{result.output_tail}"
        assert summary.error_rate < 0.01, f"error rate {summary.error_rate:.2%} >= 1%: {summary.line()}"
        assert result.acknowledged, "no submission was acknowledged"

        from _api import OrchestratorApi

        api = OrchestratorApi(forward.url, release.token())
        ledger = Ledger(result.acknowledged)
        # Drain budget: what the fleet at its smallest can do, doubled (latency from the values, concurrency 2).
        drain_sec = max(120.0, 2 * len(result.acknowledged) * 0.5 / (2 * len(release.enabled_agent_types)))

        def read() -> dict[str, list[str]]:
            return ledger.check(api.list_tasks())

        problems = eventually(
            read,
            lambda p: not any(p.values()),
            timeout_sec=drain_sec,
            interval_sec=5,
            expectation=f"all {len(result.acknowledged)} acknowledged tasks in a final state",
            failed=lambda p: (
                f"lost or duplicated: {p['lost'][:5]} {p['duplicated'][:5]} {p['id_mismatch'][:5]}"
                if p["lost"] or p["duplicated"] or p["id_mismatch"]
                else None
            ),
        )
        assert not any(problems.values())
        states = Ledger.states([t for t in api.list_tasks() if t["task_id"] in set(result.acknowledged.values())])
        e2e_note(f"final states of {len(result.acknowledged)} acknowledged tasks: {dict(states)}")
