"""The OpenAPI document of the HTTP API stays true: same routes as the app, real responses match its schemas."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from ai_agents.orchestrator.app import Orchestrator
from aiohttp import web
from jsonschema import Draft202012Validator

from ._api_support import connect
from ._fleet_support import OrchestratorFactory, as_agent, http_base
from ._openapi_support import DOCUMENT, document_routes, resolve, response_validator

TOKEN = "openapi-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The smallest body limit the settings allow, so a 413 is cheap to provoke.
MAX_BODY = 1024


def app_routes(orchestrator: Orchestrator) -> set[tuple[str, str]]:
    """(method, path template) of every route the running HTTP app registered."""
    assert orchestrator.http is not None
    # The live application, not a rebuilt one: what the orchestrator really serves.
    app: web.Application = orchestrator.http._runner.app
    routes = set()
    for route in app.router.routes():
        # aiohttp adds a HEAD twin to every GET; HEAD is not part of the API.
        if route.method == "HEAD":
            continue
        canonical = route.resource.canonical if route.resource is not None else ""
        # aiohttp writes a constrained variable as {name:regex}; OpenAPI names the variable only.
        for name in ("task_id", "agent_id"):
            canonical = canonical.replace(f"{{{name}:[^/:]+}}", f"{{{name}}}")
        routes.add((route.method, canonical))
    return routes


@pytest.fixture
async def secured(start_orchestrator: OrchestratorFactory) -> Orchestrator:
    return await start_orchestrator(api_token=TOKEN, max_message_bytes=MAX_BODY)


@pytest.fixture
async def http(secured: Orchestrator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=http_base(secured)) as session:
        yield session


def test_document_schemas_are_valid_json_schema() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    assert DOCUMENT["security"] == [{"bearerToken": []}]
    assert DOCUMENT["components"]["securitySchemes"]["bearerToken"] == {
        **DOCUMENT["components"]["securitySchemes"]["bearerToken"],
        "type": "http",
        "scheme": "bearer",
    }
    for schema in DOCUMENT["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    # Every $ref in the document points at something that exists.
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(DOCUMENT)
    assert refs
    for ref in refs:
        assert resolve({"$ref": ref}), ref


async def test_document_lists_exactly_the_routes_the_app_serves(secured: Orchestrator) -> None:
    served = app_routes(secured)
    documented = document_routes()
    assert served - documented == set(), "routes missing from openapi.json"
    assert documented - served == set(), "openapi.json documents routes the app does not serve"
    # A sanity floor: the comparison saw the real table, not two empty sets.
    assert ("POST", "/v1/tasks/{task_id}:cancel") in served


async def test_document_is_served_behind_the_token(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/openapi.json") as response:
        assert response.status == 401
        response_validator("/v1/openapi.json", "GET", 401).validate(await response.json())
    async with http.get("/v1/openapi.json", headers=AUTH) as response:
        assert response.status == 200 and response.content_type == "application/json"
        assert await response.json() == DOCUMENT


class Recorder:
    """Calls the API and validates every answer against the document; counts what it checked."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.checked: set[tuple[str, str, int]] = set()

    async def call(
        self,
        method: str,
        url: str,
        template: str,
        *,
        expect: int,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        async with self.http.request(method, url, headers=AUTH if headers is None else headers, **kwargs) as r:
            assert r.status == expect, await r.text()
            assert r.content_type == "application/json"
            body = await r.json()
        errors = sorted(response_validator(template, method, r.status).iter_errors(body), key=str)
        assert not errors, f"{method} {url} {r.status}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
        )
        self.checked.add((method, template, r.status))
        return body


async def test_real_responses_match_the_document(http: aiohttp.ClientSession, secured: Orchestrator) -> None:
    api = Recorder(http)
    tasks, one_task = "/v1/tasks", "/v1/tasks/{task_id}"
    cancel = "/v1/tasks/{task_id}:cancel"
    agents, one_agent = "/v1/agents", "/v1/agents/{agent_id}"
    missing = str(uuid.uuid4())

    body = {"agent_type": "coding", "payload": {"n": 1, "s": "x", "l": [1, None]}, "idempotency_key": "k1"}
    first = await api.call("POST", tasks, tasks, expect=201, json=body)
    await api.call("POST", tasks, tasks, expect=200, json=body)
    await api.call("POST", tasks, tasks, expect=409, json={**body, "payload": {}})
    await api.call("POST", tasks, tasks, expect=400, json={"agent_type": "wizard"})
    await api.call("POST", tasks, tasks, expect=401, headers={}, json=body)
    await api.call("POST", tasks, tasks, expect=413, data=b"{" + b" " * MAX_BODY * 2 + b"}")
    for i in range(3):
        await api.call("POST", tasks, tasks, expect=201, json={"agent_type": "testing", "priority": i})

    page = await api.call("GET", f"{tasks}?page_size=2", tasks, expect=200)
    assert page["next_page_token"]
    await api.call("GET", f"{tasks}?page_size=2&page_token={page['next_page_token']}", tasks, expect=200)
    await api.call("GET", f"{tasks}?state=queued&agent_type=testing", tasks, expect=200)
    await api.call("GET", f"{tasks}?page_size=x", tasks, expect=400)
    await api.call("GET", tasks, tasks, expect=401, headers={})

    await api.call("GET", f"{tasks}/{first['task_id']}", one_task, expect=200)
    await api.call("GET", f"{tasks}/{missing}", one_task, expect=404)
    await api.call("GET", f"{tasks}/not-a-uuid", one_task, expect=400)
    await api.call("GET", f"{tasks}/{missing}", one_task, expect=401, headers={})

    await api.call("POST", f"{tasks}/{first['task_id']}:cancel", cancel, expect=200)
    await api.call("POST", f"{tasks}/{first['task_id']}:cancel", cancel, expect=409)
    await api.call("POST", f"{tasks}/{missing}:cancel", cancel, expect=404)
    await api.call("POST", f"{tasks}/nope:cancel", cancel, expect=400)
    await api.call("POST", f"{tasks}/{missing}:cancel", cancel, expect=401, headers={})

    # A real registered agent, so agent JSON is checked with labels, capacity and heartbeat filled in.
    async with await connect(secured, token=TOKEN) as client:
        await as_agent(client, "openapi-agent-1", "security").register_agent(
            agent_id="openapi-agent-1", agent_type="security", labels={"zone": "a"}, capacity=3, address="x:1"
        )
    listed = await api.call("GET", agents, agents, expect=200)
    assert [a["agent_id"] for a in listed["agents"]] == ["openapi-agent-1"]
    await api.call("GET", f"{agents}?state=active&agent_type=security&page_size=1", agents, expect=200)
    await api.call("GET", f"{agents}?state=asleep", agents, expect=400)
    await api.call("GET", agents, agents, expect=401, headers={})
    await api.call("GET", f"{agents}/openapi-agent-1", one_agent, expect=200)
    await api.call("GET", f"{agents}/nobody", one_agent, expect=404)
    await api.call("GET", f"{agents}/{'x' * 300}", one_agent, expect=400)
    await api.call("GET", f"{agents}/nobody", one_agent, expect=401, headers={})

    status = await api.call("GET", "/v1/status", "/v1/status", expect=200)
    assert status["types"]["coding"]["tasks"] == {"cancelled": 1}
    await api.call("GET", "/v1/status", "/v1/status", expect=401, headers={})

    # The queue KEDA reads: counted now, zeros included, one type per call.
    queue = await api.call("GET", "/v1/queue?agent_type=testing", "/v1/queue", expect=200)
    assert queue == {"agent_type": "testing", "queued": 3, "leased": 0}
    coding = await api.call("GET", "/v1/queue?agent_type=coding", "/v1/queue", expect=200)
    assert (coding["queued"], coding["leased"]) == (0, 0), "the cancelled task is not queued"
    await api.call("GET", "/v1/queue?agent_type=wizard", "/v1/queue", expect=400)
    await api.call("GET", "/v1/queue", "/v1/queue", expect=400)
    await api.call("GET", "/v1/queue?agent_type=testing", "/v1/queue", expect=401, headers={})
    await api.call("GET", "/v1/openapi.json", "/v1/openapi.json", expect=200)

    # Every documented operation was exercised with a success and a failure answer.
    assert {(m, p) for m, p, _ in api.checked} == document_routes()
