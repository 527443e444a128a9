"""A client's submits made together share SubmitTasks calls (client/_batching.py), each answered as SubmitTask.

A real orchestrator and PostgreSQL; the client is the library's, with its defaults. What passing proves:
- concurrent `submit_task` calls go in fewer calls than tasks, and each caller gets its own task, committed;
- a payload too large to share a call, and a submit with a deadline of its own, go as SubmitTask calls;
- an orchestrator that does not serve SubmitTasks (an older one, mid rolling upgrade) still gets every submit,
  one SubmitTask call each, and the client says once why.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import grpc
import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.orchestrator.grpc_api import TaskServicer
from google.protobuf import json_format

from ._api_support import metrics_port, sample, scrape
from ._fleet_support import OrchestratorFactory, grpc_target

pytestmark = pytest.mark.timeout(120)

TASKS = 64
SUBMIT_ONE = "/ai_agents.v1.TaskService/SubmitTask"
SUBMIT_MANY = "/ai_agents.v1.TaskService/SubmitTasks"


async def _served(orchestrator: Orchestrator) -> tuple[float, float]:
    """(SubmitTask calls, SubmitTasks calls) the orchestrator answered OK."""
    served = await scrape(metrics_port(orchestrator))
    return (
        sample(served, "ai_agents_grpc_requests_total", method=SUBMIT_ONE, code="OK"),
        sample(served, "ai_agents_grpc_requests_total", method=SUBMIT_MANY, code="OK"),
    )


async def _submit_together(orchestrator: Orchestrator, dsn: str) -> None:
    """TASKS concurrent submits from one client: each caller gets its own task, and every task is committed."""
    async with await OrchestratorClient.connect(grpc_target(orchestrator), timeout=10) as client:
        responses = await asyncio.gather(*(client.submit_task("coding", {"n": n}) for n in range(TASKS)))
    assert [json_format.MessageToDict(r.task.payload) for r in responses] == [{"n": n} for n in range(TASKS)]
    assert all(r.created for r in responses)
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetch("SELECT task_id::text, payload->>'n' AS n FROM tasks")
    finally:
        await conn.close()
    assert {(r["task_id"], float(r["n"])) for r in stored} == {(r.task.task_id, n) for n, r in enumerate(responses)}


async def test_submits_made_together_share_a_call(start_orchestrator: OrchestratorFactory, dsn: str) -> None:
    orchestrator = await start_orchestrator()
    await _submit_together(orchestrator, dsn)
    one, many = await _served(orchestrator)
    assert one == 0, "no submit needed a call of its own"
    # A call per submit would be TASKS; submits made together wait at most for the one call in flight.
    assert 1 <= many <= TASKS / 2, f"{many} SubmitTasks calls for {TASKS} submits"


async def test_a_large_payload_or_a_deadline_of_its_own_goes_alone(start_orchestrator: OrchestratorFactory) -> None:
    orchestrator = await start_orchestrator()
    async with await OrchestratorClient.connect(grpc_target(orchestrator), timeout=10) as client:
        # 100 KB: within the payload limit (256 KiB), over a 64th of the 4 MiB message limit.
        large = await client.submit_task("coding", {"text": "x" * 100_000})
        timed = await client.submit_task("coding", {"small": True}, timeout=5)
    assert large.created and timed.created
    assert await _served(orchestrator) == (2, 0)


async def test_an_orchestrator_without_submit_tasks_gets_each_submit_alone(
    start_orchestrator: OrchestratorFactory,
    dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def not_served(self: TaskServicer, request: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        # What gRPC answers for a method the server never registered, as an orchestrator from before SubmitTasks.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

    monkeypatch.setattr(TaskServicer, "SubmitTasks", not_served)
    orchestrator = await start_orchestrator()
    with caplog.at_level(logging.WARNING, logger="ai_agents.client"):
        await _submit_together(orchestrator, dsn)
    assert await _served(orchestrator) == (TASKS, 0)
    assert [r.getMessage() for r in caplog.records].count(
        "the orchestrator does not serve SubmitTasks; sending each item alone"
    ) == 1, caplog.text
