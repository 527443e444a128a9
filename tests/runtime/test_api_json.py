"""One JSON form of a task and an agent: the CLI prints exactly what the HTTP API answers, and the form's rules hold."""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import aiohttp
import pytest
from ai_agents import api_json
from ai_agents.client import OrchestratorClient
from ai_agents.orchestrator.app import Orchestrator
from fleet_cli import run_cli

from ._fleet_support import as_agent, grpc_target, http_base

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


# ---- the rules, value by value --------------------------------------------------------------------------


def test_timestamps_are_rfc3339_in_utc_with_microseconds_and_z() -> None:
    assert api_json.rfc3339(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05.000000Z"
    plus_two = timezone(timedelta(hours=2))
    assert api_json.rfc3339(datetime(2025, 1, 2, 5, 4, 5, 6, tzinfo=plus_two)) == "2025-01-02T03:04:05.000006Z"
    assert api_json.rfc3339(None) is None


@pytest.mark.parametrize(
    ("reported", "shown"), [(0.0, 0.0), (0.1, 0.1), (0.3, 0.3), (0.25, 0.25), (0.999, 0.999), (1 / 3, 0.33333334)]
)
def test_progress_is_the_shortest_decimal_of_its_single_precision_number(reported: float, shown: float) -> None:
    # What the proto field and the `real` column hold of it, e.g. 0.30000001192092896 for 0.3.
    stored = struct.unpack("<f", struct.pack("<f", reported))[0]
    assert api_json.single_precision(stored) == shown


def test_whole_numbers_are_integers_and_keys_are_sorted() -> None:
    shown = api_json.user_data({"b": [3.0, 2.5, True, -0.0], "a": {"z": 1e23, "y": 10**23, "x": 2.0**53}})
    assert json.dumps(shown) == ('{"a": {"x": 9007199254740992, "y": 1e+23, "z": 1e+23}, "b": [3, 2.5, true, -0.0]}')
    # A row stored before the door may hold an integer no double carries: shown as stored, not an error.
    assert api_json.user_data({"n": 10**309}) == {"n": 10**309}


# ---- the CLI and the HTTP API render the same objects identically ----------------------------------------


@pytest.fixture
async def http(orchestrator: Orchestrator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=http_base(orchestrator)) as session:
        yield session


async def http_text(http: aiohttp.ClientSession, path: str) -> str:
    async with http.get(path) as response:
        assert response.status == 200, await response.text()
        return await response.text()


async def cli_text(orchestrator: Orchestrator, *args: str) -> str:
    env = {**os.environ, "AI_AGENTS_ORCHESTRATOR_TARGET": grpc_target(orchestrator)}
    done = await asyncio.to_thread(run_cli, *args, env=env, timeout=60)
    assert done.stdout.endswith("\n")
    return done.stdout[:-1]


async def test_the_cli_prints_tasks_and_agents_exactly_as_the_http_api_answers(
    orchestrator: Orchestrator, client: OrchestratorClient, http: aiohttp.ClientSession
) -> None:
    # Leased with progress: a lease owner and expiry, no result, not finished; submitted over HTTP, keys unsorted.
    async with http.post(
        "/v1/tasks", json={"agent_type": "coding", "payload": {"b": 1, "a": [2, 2.5], "é": "ü"}}
    ) as response:
        leased_id = (await response.json())["task_id"]
    agent = as_agent(client, "json-1", "coding")
    await agent.register_agent(agent_id="json-1", agent_type="coding", capacity=2, labels={"zone": "b", "arch": "x"})
    (lease,) = await agent.lease_tasks(agent_id="json-1", agent_type="coding", max_tasks=1, wait_seconds=0)
    await agent.update_task_progress(leased_id, lease.lease_token, 0.3, "a third")
    # Finished over gRPC with whole numbers in its result (a Struct carries them as doubles).
    done_id = (await client.submit_task("coding", {"n": 1}, idempotency_key="json-done")).task.task_id
    (lease,) = await agent.lease_tasks(agent_id="json-1", agent_type="coding", max_tasks=1, wait_seconds=0)
    await agent.complete_task(done_id, lease.lease_token, {"count": 3, "ratio": 0.5, "nested": {"z": 1, "a": 2}})
    # Queued: nothing set yet.
    queued_id = (await client.submit_task("coding", {})).task.task_id

    for task_id in (leased_id, done_id, queued_id):
        shown = await http_text(http, f"/v1/tasks/{task_id}")
        assert await cli_text(orchestrator, "get", task_id) == shown, task_id
    page = await http_text(http, "/v1/tasks?agent_type=coding&page_size=2")
    assert await cli_text(orchestrator, "list", "--agent-type", "coding", "--page-size", "2") == page
    agents = json.loads(await http_text(http, "/v1/agents"))["agents"]
    assert await cli_text(orchestrator, "agents", "--json") == api_json.dumps(agents)

    leased = json.loads(await http_text(http, f"/v1/tasks/{leased_id}"))
    assert (leased["progress"], leased["payload"]) == (0.3, {"a": [2, 2.5], "b": 1, "é": "ü"})
    assert list(leased["payload"]) == ["a", "b", "é"], "keys sorted"
    assert leased["lease_owner"] == "json-1" and RFC3339_UTC.fullmatch(leased["lease_expires_at"])
    assert (leased["result"], leased["finished_at"], leased["idempotency_key"]) == (None, None, None)
    done = json.loads(await http_text(http, f"/v1/tasks/{done_id}"))
    assert done["result"] == {"count": 3, "nested": {"a": 2, "z": 1}, "ratio": 0.5}
    assert isinstance(done["result"]["count"], int) and isinstance(done["payload"]["n"], int)
    assert (done["lease_owner"], done["lease_expires_at"]) == (None, None)
    for name in ("created_at", "updated_at", "finished_at"):
        assert RFC3339_UTC.fullmatch(done[name]), (name, done[name])
    assert agents[0]["labels"] == {"arch": "x", "zone": "b"} and agents[0]["running"] == 0
    assert RFC3339_UTC.fullmatch(agents[0]["registered_at"])
