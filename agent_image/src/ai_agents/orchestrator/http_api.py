"""The HTTP JSON API on 8080 (curl, locust, dashboards): the same operations as gRPC, in JSON."""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

from aiohttp import web

from ai_agents import api_json
from ai_agents.errors import InvalidArgument
from ai_agents.observability.metrics import OrchestratorMetrics
from ai_agents.orchestrator import validation as v
from ai_agents.orchestrator.service import OrchestratorService
from ai_agents.serving.auth import TokenCheck
from ai_agents.serving.http_middleware import api_application
from ai_agents.store.records import AgentRecord, TaskRecord

_TASK_ID = r"{task_id:[^/:]+}"


def _json(body: dict[str, Any], *, status: int = 200) -> web.Response:
    # The same text the CLI prints for the same task or agent (ai_agents.api_json).
    return web.Response(text=api_json.dumps(body), status=status, content_type="application/json")


def task_json(task: TaskRecord) -> dict[str, Any]:
    return api_json.task_json(
        task_id=task.task_id,
        agent_type=task.agent_type,
        state=task.state,
        payload=task.payload,
        result=task.result,
        error=task.error,
        priority=task.priority,
        idempotency_key=task.idempotency_key,
        attempts=task.attempts,
        max_attempts=task.max_attempts,
        lease_owner=task.lease_owner,
        lease_expires_at=task.lease_expires_at,
        progress=task.progress,
        progress_message=task.progress_message,
        created_at=task.created_at,
        updated_at=task.updated_at,
        finished_at=task.finished_at,
        parent_task_id=task.parent_task_id,
        child_task_ids=task.child_task_ids,
    )


def agent_json(agent: AgentRecord) -> dict[str, Any]:
    return api_json.agent_json(
        agent_id=agent.agent_id,
        agent_type=agent.agent_type,
        state=agent.state,
        labels=agent.labels,
        capacity=agent.capacity,
        running=agent.running,
        address=agent.address,
        version=agent.version,
        registered_at=agent.registered_at,
        last_heartbeat_at=agent.last_heartbeat,
    )


def _not_a_number(literal: str) -> Any:
    # Python's json module accepts NaN and Infinity; JSON (RFC 8259), jsonb and other parsers do not.
    raise InvalidArgument(f"request body is not valid JSON: {literal} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise InvalidArgument(f"request body: the number {literal[:40]} overflows a double (limit about 1.8e308)")
    return value


def _bounded_int(literal: str) -> int:
    # Every integer a payload may hold (|n| <= 2**53) has 16 digits; far longer ones are refused before int()
    # spends quadratic time on them (Python itself refuses more than 4,300 digits with a ValueError).
    if len(literal) > 400:
        raise InvalidArgument(f"request body: an integer of {len(literal)} digits is out of range")
    return int(literal)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(
            await request.read() or b"null",
            parse_constant=_not_a_number,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    return body


def _int_query(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidArgument(f"{name}: {raw!r} is not an integer") from exc


_SUBMIT_FIELDS = {"agent_type", "payload", "idempotency_key", "priority", "max_attempts"}


class HttpApi:
    def __init__(self, service: OrchestratorService) -> None:
        self._s = service

    async def submit(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        unknown = set(body) - _SUBMIT_FIELDS
        if unknown:
            raise InvalidArgument(f"unknown field(s): {', '.join(sorted(unknown))}")
        key = body.get("idempotency_key")
        if key is not None and not isinstance(key, str):
            raise InvalidArgument("idempotency_key: must be a string")
        if not key and (header := request.headers.get("Idempotency-Key")):
            # aiohttp keeps undecodable header bytes as lone surrogates (surrogateescape).
            key = v.idempotency_key(header, field="Idempotency-Key header")
        agent_type = body.get("agent_type")
        if not isinstance(agent_type, str):
            raise InvalidArgument("agent_type: required string")
        task, created = await self._s.submit_task(
            agent_type=agent_type,
            payload=body.get("payload", {}),
            idempotency_key=key,
            priority=body.get("priority", 0),
            max_attempts=body.get("max_attempts", 0),
        )
        return _json(task_json(task), status=201 if created else 200)

    async def get(self, request: web.Request) -> web.Response:
        return _json(task_json(await self._s.get_task(request.match_info["task_id"])))

    async def cancel(self, request: web.Request) -> web.Response:
        return _json(task_json(await self._s.cancel_task(request.match_info["task_id"])))

    async def list_tasks(self, request: web.Request) -> web.Response:
        tasks, token = await self._s.list_tasks(
            agent_type=request.query.get("agent_type") or None,
            state=request.query.get("state") or None,
            page_size=_int_query(request, "page_size"),
            page_token=request.query.get("page_token") or None,
        )
        return _json(api_json.page_json("tasks", [task_json(t) for t in tasks], token))

    async def list_agents(self, request: web.Request) -> web.Response:
        agents, token = await self._s.list_agents(
            agent_type=request.query.get("agent_type") or None,
            state=request.query.get("state") or None,
            page_size=_int_query(request, "page_size"),
            page_token=request.query.get("page_token") or None,
        )
        return _json(api_json.page_json("agents", [agent_json(a) for a in agents], token))

    async def get_agent(self, request: web.Request) -> web.Response:
        return _json(agent_json(await self._s.get_agent(request.match_info["agent_id"])))

    async def queue(self, request: web.Request) -> web.Response:
        agent_type = request.query.get("agent_type", "")
        counts = await self._s.queue(agent_type)
        return _json({"agent_type": agent_type, **{state.value: n for state, n in counts.items()}})

    async def status(self, _request: web.Request) -> web.Response:
        counts, database_ok = await self._s.status()
        return web.json_response(
            {
                "version": self._s.version,
                "database_ok": database_ok,
                "types": {t.agent_type: {"tasks": t.tasks, "agents": t.agents} for t in counts},
            },
            status=200 if database_ok else 503,
        )


def build_http_app(
    service: OrchestratorService,
    metrics: OrchestratorMetrics,
    tokens: TokenCheck,
    *,
    max_body_bytes: int,
    body_timeout_seconds: float,
) -> web.Application:
    api = HttpApi(service)
    app = api_application(metrics, tokens, max_body_bytes=max_body_bytes, body_timeout_seconds=body_timeout_seconds)
    app.router.add_post("/v1/tasks", api.submit)
    app.router.add_get("/v1/tasks", api.list_tasks)
    app.router.add_get(f"/v1/tasks/{_TASK_ID}", api.get)
    app.router.add_post(f"/v1/tasks/{_TASK_ID}:cancel", api.cancel)
    app.router.add_get("/v1/agents", api.list_agents)
    app.router.add_get("/v1/agents/{agent_id}", api.get_agent)
    app.router.add_get("/v1/queue", api.queue)
    app.router.add_get("/v1/status", api.status)

    # The API's contract, shipped as package data and served as is (tests/runtime/test_openapi.py keeps it true).
    # Behind the API token like every route on this port: one rule, no exceptions to get wrong.
    openapi_document = resources.files("ai_agents.orchestrator").joinpath("openapi.json").read_bytes()

    async def openapi(_request: web.Request) -> web.Response:
        return web.Response(body=openapi_document, content_type="application/json")

    app.router.add_get("/v1/openapi.json", openapi)
    return app
