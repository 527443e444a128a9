"""The live configuration file in one process: which files are refused, and a ConfigMap volume's swap applied.

The fleet-level proof (real processes changing behaviour with the same PIDs) is test_live_config_fleet.py.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from ai_agents.config import AgentLive, AgentSettings, ChaosMonkeyLive, OrchestratorLive, OrchestratorSettings
from ai_agents.live import InvalidLiveConfig, LiveConfig, live_part, parse_live_document
from ai_agents.observability.metrics import CommonMetrics, new_registry
from live_config_files import ConfigMapVolume

pytestmark = pytest.mark.timeout(60)


def test_a_key_the_file_leaves_out_keeps_its_start_value() -> None:
    start = live_part(AgentSettings(agent_type="coding", simulate_failure_rate=0.25, concurrency=3), AgentLive)
    document = parse_live_document(
        "common: {log_level: debug}\n"
        "agents: {concurrency: 2, simulate_latency_ms: 10}\n"
        "agent_types: {coding: {concurrency: 9}}\n"
        "orchestrator: {lease_seconds: 12}\n"
    )
    coding = document.apply(start, "coding")
    testing = document.apply(start, "testing")
    assert (coding.concurrency, testing.concurrency) == (9, 2), "agent_types.<type> wins over agents"
    assert coding.simulate_failure_rate == 0.25, "not in the file: the environment's value stays"
    assert coding.log_level == "DEBUG"
    orchestrator = document.apply(live_part(OrchestratorSettings(), OrchestratorLive))
    assert (orchestrator.lease_seconds, orchestrator.log_level) == (12, "DEBUG")
    assert parse_live_document("").apply(start) == start, "an empty file changes nothing"


@pytest.mark.parametrize(
    "text",
    [
        "agents: {concurrency: 0}",  # out of range
        "agents: {concurency: 2}",  # a typo must not pass for a change that was applied
        "agents: {simulate_failure_rate: 1.5}",
        "common: {log_level: loud}",
        "orchestrator: {lease_seconds: soon}",
        "chaos_monkey: {chaos_interval_seconds: 0}",
        "agent_types: {reviewing: {concurrency: 2}}",
        "agnets: {concurrency: 2}",  # an unknown section
        "agents: [concurrency]",
        "- 1",
        "agents: {concurrency: [",  # not YAML
    ],
)
def test_a_file_that_does_not_validate_is_refused_whole(text: str) -> None:
    with pytest.raises(InvalidLiveConfig):
        parse_live_document(text)


def _samples(metrics: CommonMetrics) -> dict[str, float]:
    return {
        f"{s.name}{'{' + s.labels['result'] + '}' if s.labels else ''}": s.value
        for family in metrics.registry.collect()
        if family.name.startswith("ai_agents_config_")
        for s in family.samples
        if not s.name.endswith("_created")
    }


async def test_a_configmap_swap_is_applied_and_a_bad_one_refused_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume = ConfigMapVolume(tmp_path / "live")
    volume.write("chaos_monkey: {chaos_interval_seconds: 30}\n")
    metrics = CommonMetrics(new_registry(), "test")
    live = LiveConfig(ChaosMonkeyLive(), path=volume.path, metrics=metrics, poll_seconds=0.05)
    seen: list[float] = []
    live.subscribe(lambda _old, new: seen.append(new.chaos_interval_seconds))
    assert live.load() == "applied"
    assert live.current.chaos_interval_seconds == 30
    stop = asyncio.Event()
    watching = asyncio.create_task(live.watch(stop))
    try:
        volume.write("chaos_monkey: {chaos_interval_seconds: 5, chaos_dry_run: true}\n")
        await _until(lambda: live.generation == 2)
        assert (live.current.chaos_interval_seconds, live.current.chaos_dry_run) == (5, True)
        assert seen == [30, 5]

        caplog.set_level(logging.ERROR, logger="ai_agents.live.holder")
        volume.write("chaos_monkey: {chaos_interval_seconds: -1}\n")
        await _until(lambda: _samples(metrics)["ai_agents_config_reloads_total{refused}"] == 1)
        await asyncio.sleep(0.3)  # several more polls of the same bad bytes
        refusals = [r for r in caplog.records if "refused" in r.getMessage()]
        assert len(refusals) == 1, "a refused file is logged once, not at every poll"
        assert live.current.chaos_interval_seconds == 5, "the settings in force stay"
        assert _samples(metrics) == {
            "ai_agents_config_reloads_total{applied}": 2,
            "ai_agents_config_reloads_total{refused}": 1,
            "ai_agents_config_generation": 2,
        }

        volume.write("chaos_monkey: {chaos_interval_seconds: 7}\n")
        await _until(lambda: live.current.chaos_interval_seconds == 7)
        assert live.generation == 3
    finally:
        stop.set()
        await watching


async def test_a_reload_request_reads_at_once_and_a_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "live.yaml"
    path.write_text("agents: {concurrency: 2}\n")
    metrics = CommonMetrics(new_registry(), "test")
    start = live_part(AgentSettings(agent_type="testing"), AgentLive)
    # A poll too slow to matter here: only the request (SIGHUP's path) can make the change visible in time.
    live = LiveConfig(start, path=path, metrics=metrics, poll_seconds=3600, agent_type="testing")
    live.load()
    stop = asyncio.Event()
    watching = asyncio.create_task(live.watch(stop))
    try:
        path.write_text("agents: {concurrency: 5}\n")
        live.request_reload()
        await _until(lambda: live.current.concurrency == 5)
        path.unlink()
        live.request_reload()
        await _until(lambda: _samples(metrics)["ai_agents_config_reloads_total{refused}"] == 1)
        assert live.current.concurrency == 5
    finally:
        stop.set()
        await watching


async def _until(condition: object, timeout: float = 5.0) -> None:
    assert callable(condition)
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_without_a_file_the_watch_lasts_until_stopped() -> None:
    """The watch is a supervised loop: ending before shutdown would stop the process as a failure."""
    live = LiveConfig(AgentLive(), path=None, metrics=CommonMetrics(new_registry(), "test"))
    assert live.load() is None
    stop = asyncio.Event()
    watching = asyncio.create_task(live.watch(stop))
    await asyncio.sleep(0.1)
    assert not watching.done()
    live.request_reload()  # SIGHUP without a file: logged, nothing else
    stop.set()
    await asyncio.wait_for(watching, 1)
