"""An agent's completions that finish together share CompleteTasks calls (agent/_completions.py).

A real orchestrator and real agent processes. What passing proves:
- tasks that finish together are acknowledged in fewer calls than tasks, every one of them committed;
- an orchestrator that does not serve CompleteTasks (an older one, mid rolling upgrade) still gets every
  completion, one CompleteTask call each, and the agent says once why.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.orchestrator.grpc_api import TaskServicer
from ai_agents.v1 import tasks_pb2
from waits import assert_eventually_async

from ._api_support import metrics_port, sample, scrape
from ._fleet_support import AgentProcesses, OrchestratorFactory, grpc_target

pytestmark = pytest.mark.timeout(120)

TASKS = 64
COMPLETE_ONE = "/ai_agents.v1.TaskService/CompleteTask"
COMPLETE_MANY = "/ai_agents.v1.TaskService/CompleteTasks"


async def _run_tasks(orchestrator: Orchestrator, agents: AgentProcesses) -> tuple[float, float]:
    """TASKS no-op tasks through one agent of concurrency 16: (CompleteTask calls, CompleteTasks calls) served."""
    target = grpc_target(orchestrator)
    async with await OrchestratorClient.connect(target, timeout=10) as client:
        task_ids = [(await client.submit_task("coding", {"n": n})).task.task_id for n in range(TASKS)]
        # Submitted before the agent starts: its leases take 16 at a time, and those finish together.
        agents.start("coding", target, AI_AGENTS_CONCURRENCY="16")

        async def all_succeeded() -> None:
            states = [(await client.get_task(task_id)).state for task_id in task_ids]
            assert states.count(tasks_pb2.TASK_STATE_SUCCEEDED) == TASKS, states

        await assert_eventually_async(all_succeeded, timeout_sec=60, message="the agent did not complete every task")
    served = await scrape(metrics_port(orchestrator))
    return (
        sample(served, "ai_agents_grpc_requests_total", method=COMPLETE_ONE, code="OK"),
        sample(served, "ai_agents_grpc_requests_total", method=COMPLETE_MANY, code="OK"),
    )


async def test_completions_that_finish_together_share_a_call(
    start_orchestrator: OrchestratorFactory, agents: AgentProcesses
) -> None:
    one, many = await _run_tasks(await start_orchestrator(), agents)
    assert one == 0, "a plain result needs no call of its own"
    # One call per completion would be TASKS; 16 finishing together wait at most for one call in flight.
    assert 1 <= many <= TASKS / 2, f"{many} CompleteTasks calls for {TASKS} tasks"


async def test_an_orchestrator_without_complete_tasks_gets_each_completion_alone(
    start_orchestrator: OrchestratorFactory, agents: AgentProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def not_served(self: TaskServicer, request: object, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        # What gRPC answers for a method the server never registered, as an orchestrator from before CompleteTasks.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

    monkeypatch.setattr(TaskServicer, "CompleteTasks", not_served)
    orchestrator = await start_orchestrator()
    one, many = await _run_tasks(orchestrator, agents)
    assert (one, many) == (TASKS, 0)
    (agent_id,) = agents.procs
    assert agents.log(agent_id).count("does not serve CompleteTasks") == 1, agents.log(agent_id)
