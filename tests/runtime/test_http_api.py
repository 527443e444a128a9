"""HTTP JSON API conformance (port 8080): tasks, agents, status, and request metrics by route template."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.v1 import tasks_pb2

from ._api_support import metrics_port, sample, scrape
from ._fleet_support import as_agent, http_base


@pytest.fixture
async def http(orchestrator: Orchestrator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=http_base(orchestrator)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with http.request(method, path, json=json, headers=headers) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json()


async def test_submit_is_idempotent(http: aiohttp.ClientSession, client: OrchestratorClient) -> None:
    request = {
        "agent_type": "coding",
        "payload": {"repo": "x/y", "issue": 7},
        "idempotency_key": "idem-1",
        "priority": 3,
    }
    status, body = await call(
        http,
        "POST",
        "/v1/tasks",
        json=request,
    )
    assert status == 201
    assert uuid.UUID(body["task_id"])
    assert (body["state"], body["agent_type"], body["payload"]) == (
        "queued",
        "coding",
        {"repo": "x/y", "issue": 7},
    )
    assert (
        body["priority"],
        body["idempotency_key"],
        body["attempts"],
        body["max_attempts"],
    ) == (3, "idem-1", 0, 3)
    assert body["created_at"] and body["finished_at"] is None and body["result"] is None

    status, again = await call(
        http,
        "POST",
        "/v1/tasks",
        json=request,
    )
    assert status == 200 and again["task_id"] == body["task_id"]

    status, conflict = await call(
        http,
        "POST",
        "/v1/tasks",
        json={
            "agent_type": "coding",
            "payload": {"repo": "x/y", "issue": 8},
            "idempotency_key": "idem-1",
        },
    )
    assert status == 409
    assert conflict["error"]["code"] == "already_exists" and "idempotency_key" in conflict["error"]["message"]

    # The Idempotency-Key header works the same way.
    status, first = await call(
        http,
        "POST",
        "/v1/tasks",
        json={"agent_type": "testing"},
        headers={"Idempotency-Key": "hdr-1"},
    )
    assert status == 201 and first["idempotency_key"] == "hdr-1" and first["payload"] == {}
    status, second = await call(
        http,
        "POST",
        "/v1/tasks",
        json={"agent_type": "testing"},
        headers={"Idempotency-Key": "hdr-1"},
    )
    assert status == 200 and second["task_id"] == first["task_id"]

    # Without a key, each POST is a new task; HTTP and gRPC see the same queue.
    _, a = await call(http, "POST", "/v1/tasks", json={"agent_type": "coding"})
    _, b = await call(http, "POST", "/v1/tasks", json={"agent_type": "coding"})
    assert a["task_id"] != b["task_id"]
    assert (await client.get_task(body["task_id"])).state == tasks_pb2.TASK_STATE_QUEUED


async def test_get_and_cancel(http: aiohttp.ClientSession, client: OrchestratorClient) -> None:
    _, created = await call(http, "POST", "/v1/tasks", json={"agent_type": "security", "payload": {"a": 1}})
    task_id = created["task_id"]
    status, got = await call(http, "GET", f"/v1/tasks/{task_id}")
    assert status == 200 and got == created

    status, cancelled = await call(http, "POST", f"/v1/tasks/{task_id}:cancel")
    assert status == 200
    assert cancelled["task_id"] == task_id and cancelled["state"] == "cancelled" and cancelled["finished_at"]
    status, again = await call(http, "POST", f"/v1/tasks/{task_id}:cancel")
    assert status == 409 and again["error"]["code"] == "failed_precondition"
    _, after = await call(http, "GET", f"/v1/tasks/{task_id}")
    assert after["state"] == "cancelled"

    # A task completed over gRPC shows its result over HTTP.
    _, other = await call(http, "POST", "/v1/tasks", json={"agent_type": "security"})
    w1 = as_agent(client, "w-1", "security")
    await w1.register_agent(agent_id="w-1", agent_type="security", capacity=1)
    lease = (await w1.lease_tasks(agent_id="w-1", agent_type="security", max_tasks=1, wait_seconds=0))[0]
    await w1.complete_task(lease.task.task_id, lease.lease_token, {"vulnerabilities_found": 2})
    _, done = await call(http, "GET", f"/v1/tasks/{other['task_id']}")
    assert (done["state"], done["result"], done["attempts"]) == (
        "succeeded",
        {"vulnerabilities_found": 2},
        1,
    )


async def test_list_tasks_filters_and_pages(http: aiohttp.ClientSession) -> None:
    coding = []
    for i in range(5):
        coding.append(
            (
                await call(
                    http,
                    "POST",
                    "/v1/tasks",
                    json={"agent_type": "coding", "payload": {"i": i}},
                )
            )[1]
        )
    for i in range(2):
        await call(
            http,
            "POST",
            "/v1/tasks",
            json={"agent_type": "documentation", "payload": {"i": i}},
        )
    await call(http, "POST", f"/v1/tasks/{coding[0]['task_id']}:cancel")

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        query = f"/v1/tasks?agent_type=coding&page_size=2&page_token={token}"
        status, page = await call(http, "GET", query)
        assert status == 200
        pages += 1
        assert len(page["tasks"]) <= 2 and all(t["agent_type"] == "coding" for t in page["tasks"])
        seen += [t["task_id"] for t in page["tasks"]]
        token = page["next_page_token"]
        if not token:
            break
        assert pages < 10
    assert pages == 3 and seen == [t["task_id"] for t in coding]

    _, queued = await call(http, "GET", "/v1/tasks?agent_type=coding&state=queued")
    assert [t["task_id"] for t in queued["tasks"]] == [t["task_id"] for t in coding[1:]]
    _, cancelled = await call(http, "GET", "/v1/tasks?state=cancelled")
    assert [t["task_id"] for t in cancelled["tasks"]] == [coding[0]["task_id"]]
    _, docs = await call(http, "GET", "/v1/tasks?agent_type=documentation")
    assert len(docs["tasks"]) == 2 and docs["next_page_token"] == ""
    _, everything = await call(http, "GET", "/v1/tasks")
    assert len(everything["tasks"]) == 7


async def test_list_and_get_agents(http: aiohttp.ClientSession, client: OrchestratorClient) -> None:
    await as_agent(client, "cmp-1", "compliance").register_agent(
        agent_id="cmp-1",
        agent_type="compliance",
        capacity=2,
        address="a:1",
        version="v9",
    )
    await as_agent(client, "cmp-2", "compliance").register_agent(agent_id="cmp-2", agent_type="compliance", capacity=1)
    await as_agent(client, "dsc-1", "discovery").register_agent(
        agent_id="dsc-1", agent_type="discovery", capacity=1, labels={"k": "v"}
    )
    await client.update_agent("cmp-2", state="draining")

    status, body = await call(http, "GET", "/v1/agents?agent_type=compliance")
    assert status == 200
    assert [(a["agent_id"], a["state"]) for a in body["agents"]] == [
        ("cmp-1", "active"),
        ("cmp-2", "draining"),
    ]
    first = body["agents"][0]
    assert (
        first["agent_type"],
        first["capacity"],
        first["address"],
        first["version"],
    ) == ("compliance", 2, "a:1", "v9")
    assert first["registered_at"] and first["last_heartbeat_at"]
    _, discovery = await call(http, "GET", "/v1/agents?agent_type=discovery")
    assert [(a["agent_id"], a["labels"]) for a in discovery["agents"]] == [("dsc-1", {"k": "v"})]
    _, page = await call(http, "GET", "/v1/agents?page_size=2")
    assert len(page["agents"]) == 2 and page["next_page_token"]
    _, rest = await call(http, "GET", f"/v1/agents?page_size=2&page_token={page['next_page_token']}")
    assert [a["agent_id"] for a in page["agents"] + rest["agents"]] == [
        "cmp-1",
        "cmp-2",
        "dsc-1",
    ]
    status, one = await call(http, "GET", "/v1/agents/dsc-1")
    assert status == 200 and one["agent_id"] == "dsc-1"
    status, missing = await call(http, "GET", "/v1/agents/nobody")
    assert status == 404 and missing["error"]["code"] == "not_found"


async def test_status_counts(http: aiohttp.ClientSession, client: OrchestratorClient) -> None:
    for agent_type in ("coding", "coding", "testing"):
        await call(http, "POST", "/v1/tasks", json={"agent_type": agent_type})
    w1 = as_agent(client, "w-1", "coding")
    await w1.register_agent(agent_id="w-1", agent_type="coding", capacity=1)
    lease = (await w1.lease_tasks(agent_id="w-1", agent_type="coding", max_tasks=1, wait_seconds=0))[0]
    await w1.complete_task(lease.task.task_id, lease.lease_token, {})
    await as_agent(client, "t-1", "testing").register_agent(agent_id="t-1", agent_type="testing", capacity=1)

    status, body = await call(http, "GET", "/v1/status")
    assert status == 200
    assert body["database_ok"] is True and body["version"]
    assert set(body["types"]) == {
        "coding",
        "testing",
        "security",
        "compliance",
        "documentation",
        "discovery",
    }
    assert body["types"]["coding"]["tasks"] == {"queued": 1, "succeeded": 1}
    assert body["types"]["testing"] == {"tasks": {"queued": 1}, "agents": {"active": 1}}
    assert body["types"]["security"] == {"tasks": {}, "agents": {}}


async def test_request_metrics_by_route_template(http: aiohttp.ClientSession, orchestrator: Orchestrator) -> None:
    ids = []
    for i in range(3):
        status, body = await call(
            http,
            "POST",
            "/v1/tasks",
            json={"agent_type": "coding", "payload": {"i": i}},
        )
        assert status == 201
        ids.append(body["task_id"])
    for task_id in ids:
        assert (await call(http, "GET", f"/v1/tasks/{task_id}"))[0] == 200
    assert (await call(http, "GET", f"/v1/tasks/{uuid.uuid4()}"))[0] == 404
    assert (await call(http, "POST", f"/v1/tasks/{ids[0]}:cancel"))[0] == 200
    assert (await call(http, "GET", "/v1/tasks?agent_type=coding"))[0] == 200
    assert (await call(http, "GET", "/v1/no/such/route"))[0] == 404
    assert (await call(http, "GET", "/v1/another/missing/route"))[0] == 404

    samples = await scrape(metrics_port(orchestrator))
    name = "ai_agents_http_requests_total"

    def count(route: str, method: str, status: str) -> float:
        return sample(samples, name, route=route, method=method, status=status)

    assert count("/v1/tasks", "POST", "201") == 3
    assert count("/v1/tasks/{task_id}", "GET", "200") == 3
    assert count("/v1/tasks/{task_id}", "GET", "404") == 1
    assert count("/v1/tasks/{task_id}:cancel", "POST", "200") == 1
    assert count("/v1/tasks", "GET", "200") == 1
    routes = {dict(labels)["route"] for (sample_name, labels) in samples if sample_name == name}
    assert not any(task_id in route for route in routes for task_id in ids), "raw ids would explode cardinality"
    unmatched = {
        dict(labels)["route"]
        for (sample_name, labels) in samples
        if sample_name == name and dict(labels)["status"] == "404" and dict(labels)["method"] == "GET"
    }
    unmatched -= {"/v1/tasks/{task_id}"}
    assert len(unmatched) == 1 and "/v1/no/such/route" not in unmatched, unmatched
    assert (
        sum(
            v
            for (n, labels), v in samples.items()
            if n == "ai_agents_http_request_duration_seconds_count"
            and dict(labels).get("route") == "/v1/tasks/{task_id}"
        )
        == 4
    )
