"""One task, one trace: the span tree of a task submitted over HTTP, by SubmitTask and in a SubmitTasks call.

A real orchestrator and a real agent run as processes exporting over OTLP to a receiver in this test. What
passing proves, for each task (docs/contracts.md, "Traces"):
- every span of the task is in one trace: the submit's server span (HTTP, SubmitTask, or the `submit task` span
  of a SubmitTasks call; each continues the caller's trace context when it sent one), its `store submit` span,
  the orchestrator's `lease task` span, the agent's `run task` span, the orchestrator's `complete task` span and
  its `store complete`;
- each has the parent the contract names: the trace goes submit -> lease -> run -> completion, across both
  processes, the agent's run continuing a context that travelled through PostgreSQL and the lease answer;
- the LeaseTasks call that delivered the task and the CompleteTasks call that acknowledged it (batches, so each
  in its own trace) are linked from and to the task's span, and are the agent's calls to the orchestrator; a
  SubmitTasks call that submitted it is linked from and to its `submit task` span the same way.
A completion that hands work on is a CompleteTask call in the task's trace: the chain test below.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import pytest
from ai_agents.client import OrchestratorClient
from ai_agents.v1 import common_pb2, tasks_pb2
from waits import assert_eventually_async

from ._fleet_support import AgentProcesses
from ._orchestrator_process import wait_ready
from ._otlp_support import TRACING_ENV, ExportedSpan, TraceReceiver, orchestrator_process, otlp_receiver

pytestmark = pytest.mark.timeout(120)

ORCHESTRATOR = "ai-agents-orchestrator"
AGENT = "ai-agents-agent-coding"
GRPC_SUBMIT = "/ai_agents.v1.TaskService/SubmitTask"
GRPC_SUBMIT_MANY = "/ai_agents.v1.TaskService/SubmitTasks"
GRPC_COMPLETE = "/ai_agents.v1.TaskService/CompleteTask"
GRPC_LEASE = "/ai_agents.v1.TaskService/LeaseTasks"
GRPC_COMPLETE_MANY = "/ai_agents.v1.TaskService/CompleteTasks"


def _one(spans: list[ExportedSpan], what: str, **match: str) -> ExportedSpan:
    found = [s for s in spans if all(getattr(s, key) == value for key, value in match.items())]
    assert len(found) == 1, f"{what}: {len(found)} spans match {match}\nthe trace: {_tree(spans)}"
    return found[0]


def _tree(spans: list[ExportedSpan]) -> str:
    return "\n".join(f"  {s.service} {s.kind} {s.name!r} {s.span_id} <- {s.parent_span_id or '-'}" for s in spans)


def _task_trace(receiver: TraceReceiver, task_id: str) -> list[ExportedSpan]:
    """Every span of the trace holding the task's `store submit` span."""
    about_task = [s for s in receiver.spans if s.attributes.get("ai_agents.task_id") == task_id]
    submit = _one(about_task, f"the store submit of {task_id}", name="store submit")
    return [s for s in receiver.spans if s.trace_id == submit.trace_id]


def _check_task_trace(receiver: TraceReceiver, task_id: str, submit_name: str) -> ExportedSpan:
    """Assert the span tree of one task; returns its submit server span."""
    spans = _task_trace(receiver, task_id)
    assert {s.service for s in spans} == {ORCHESTRATOR, AGENT}, _tree(spans)

    submit = _one(spans, "the submit", service=ORCHESTRATOR, kind="SERVER", name=submit_name)
    store_submit = _one(spans, "the store insert", name="store submit", parent_span_id=submit.span_id)
    assert store_submit.kind == "CLIENT" and store_submit.attributes["db.system.name"] == "postgresql"

    lease = _one(spans, "the lease", service=ORCHESTRATOR, name="lease task", parent_span_id=submit.span_id)
    assert lease.kind == "PRODUCER" and lease.attributes["ai_agents.task_id"] == task_id

    run = _one(spans, "the run", service=AGENT, name="run task", parent_span_id=lease.span_id)
    assert run.kind == "CONSUMER"
    assert run.attributes["ai_agents.task_id"] == task_id and run.attributes["ai_agents.attempt"] == 1

    # A plain result: acknowledged in a CompleteTasks call, recorded in the task's trace under its run.
    complete = _one(spans, "the completion", service=ORCHESTRATOR, kind="SERVER", name="complete task")
    assert complete.parent_span_id == run.span_id, _tree(spans)
    assert complete.attributes["ai_agents.task_id"] == task_id
    _one(spans, "the store completion", name="store complete", parent_span_id=complete.span_id)
    assert not [s for s in spans if s.name in (GRPC_COMPLETE, GRPC_COMPLETE_MANY)], "a batch call in a task's trace"

    # The calls that delivered and acknowledged the task: each in its own trace (one call serves many tasks),
    # linked both ways.
    _check_batch_call(receiver, lease, GRPC_LEASE)
    _check_batch_call(receiver, complete, GRPC_COMPLETE_MANY)
    if submit_name == "submit task":
        assert not [s for s in spans if s.name == GRPC_SUBMIT_MANY], "a batch call in a task's trace"
        _check_batch_call(receiver, submit, GRPC_SUBMIT_MANY, caller=None)
    return submit


def _check_batch_call(
    receiver: TraceReceiver, task_span: ExportedSpan, method: str, caller: str | None = AGENT
) -> None:
    """The batch call linked from and to `task_span`, made by `caller` (None: by this untraced test)."""
    (linked,) = task_span.links
    call = _one(receiver.spans, f"the {method} server span", trace_id=linked[0], span_id=linked[1])
    assert (call.service, call.kind, call.name) == (ORCHESTRATOR, "SERVER", method)
    assert call.trace_id != task_span.trace_id
    assert (task_span.trace_id, task_span.span_id) in call.links
    if caller is None:
        assert call.parent_span_id == "", "an untraced caller: the call starts its own trace"
        return
    caller_call = _one(receiver.spans, f"the {caller}'s {method} call", span_id=call.parent_span_id)
    assert (caller_call.service, caller_call.kind, caller_call.name) == (caller, "CLIENT", method)


async def test_a_task_is_one_trace_from_submit_to_completion(dsn: str, agents: AgentProcesses, tmp_path: Path) -> None:
    orchestrator_log = tmp_path / "orchestrator.log"
    # The HTTP caller's own trace: the task's trace must continue it.
    caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    batch_caller_trace, batch_caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    async with otlp_receiver() as (endpoint, receiver):
        tracing = {**TRACING_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        async with orchestrator_process(dsn, orchestrator_log, **tracing) as ports:
            await wait_ready(ports["health"], orchestrator_log)
            agents.start("coding", f"ipv4:127.0.0.1:{ports['grpc']}", **tracing)
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"http://127.0.0.1:{ports['http']}/v1/tasks",
                    json={"agent_type": "coding", "payload": {"via": "http"}},
                    headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"},
                ) as response,
            ):
                assert response.status == 201, await response.text()
                over_http = (await response.json())["task_id"]
            async with await OrchestratorClient.connect(f"ipv4:127.0.0.1:{ports['grpc']}", timeout=10) as client:
                # A timeout of its own: a SubmitTask call. Without: a SubmitTasks call of one.
                over_grpc = (await client.submit_task("coding", {"via": "grpc"}, timeout=10)).task.task_id
                batched = (await client.submit_task("coding", {"via": "batch"})).task.task_id
                # A submission carrying its caller's trace context (as the client sends a traced caller's).
                (outcome,) = await client.submit_tasks(
                    [
                        tasks_pb2.TaskSubmission(
                            task=tasks_pb2.SubmitTaskRequest(agent_type=common_pb2.AGENT_TYPE_CODING),
                            traceparent=f"00-{batch_caller_trace}-{batch_caller_span}-01",
                        )
                    ]
                )
                assert outcome.code == 0, outcome.message
                batched_traced = outcome.response.task.task_id
                submitted = (over_http, over_grpc, batched, batched_traced)

                async def succeeded() -> None:
                    states = [(await client.get_task(t)).state for t in submitted]
                    assert states == [tasks_pb2.TASK_STATE_SUCCEEDED] * len(submitted), states

                await assert_eventually_async(
                    succeeded, timeout_sec=30, message="the agent did not complete every task"
                )
            # Before the orchestrator; in a thread, as the receiver needs this loop to take the exit-time export.
            await asyncio.to_thread(agents.stop_all)
        # Both processes flushed their spans as they exited.

        async def http_tree() -> None:
            submit = _check_task_trace(receiver, over_http, "POST /v1/tasks")
            assert (submit.trace_id, submit.parent_span_id) == (caller_trace, caller_span), "caller's trace lost"

        async def grpc_tree() -> None:
            submit = _check_task_trace(receiver, over_grpc, GRPC_SUBMIT)
            assert submit.parent_span_id == "", "an untraced gRPC caller: the submit starts the task's trace"

        async def batch_trees() -> None:
            submit = _check_task_trace(receiver, batched, "submit task")
            assert submit.parent_span_id == "", "an untraced caller: the submission starts the task's trace"
            submit = _check_task_trace(receiver, batched_traced, "submit task")
            assert (submit.trace_id, submit.parent_span_id) == (batch_caller_trace, batch_caller_span), "trace lost"

        await assert_eventually_async(http_tree, timeout_sec=10)
        await assert_eventually_async(grpc_tree, timeout_sec=10)
        await assert_eventually_async(batch_trees, timeout_sec=10)
        assert len({s.trace_id for s in receiver.spans if s.name == "run task"}) == 4, "one trace per task"


def _about(spans: list[ExportedSpan], name: str, task_id: str) -> ExportedSpan:
    found = [s for s in spans if s.name == name and s.attributes.get("ai_agents.task_id") == task_id]
    assert len(found) == 1, f"{name} of {task_id}: {len(found)} spans\nthe trace: {_tree(spans)}"
    return found[0]


async def test_a_chain_is_one_trace_each_follow_up_under_the_completion_that_created_it(
    dsn: str, agents: AgentProcesses, tmp_path: Path
) -> None:
    orchestrator_log = tmp_path / "orchestrator.log"
    async with otlp_receiver() as (endpoint, receiver):
        tracing = {**TRACING_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        async with orchestrator_process(dsn, orchestrator_log, **tracing) as ports:
            await wait_ready(ports["health"], orchestrator_log)
            target = f"ipv4:127.0.0.1:{ports['grpc']}"
            agents.start("coding", target, **tracing)
            agents.start("testing", target, **tracing)
            async with await OrchestratorClient.connect(target, timeout=10) as client:
                root_id = (await client.submit_task("coding", {"simulate_chain": ["testing"]})).task.task_id

                async def chain_done() -> str:
                    children = list((await client.get_task(root_id)).child_task_ids)
                    assert len(children) == 1, f"follow-ups so far: {children}"
                    child_id = children[0]
                    assert (await client.get_task(child_id)).state == tasks_pb2.TASK_STATE_SUCCEEDED
                    return child_id

                child_id = await assert_eventually_async(chain_done, timeout_sec=30, message="the chain did not finish")
            await asyncio.to_thread(agents.stop_all)

        async def chain_tree() -> None:
            spans = _task_trace(receiver, root_id)
            assert {s.service for s in spans} == {ORCHESTRATOR, AGENT, "ai-agents-agent-testing"}, _tree(spans)
            coding_run = _about(spans, "run task", root_id)
            # The follow-up's lease continues the CompleteTask call that created it, in the root's trace.
            follow_up_lease = _about(spans, "lease task", child_id)
            completion = _one(spans, "the creating completion", span_id=follow_up_lease.parent_span_id)
            assert (completion.service, completion.kind, completion.name) == (ORCHESTRATOR, "SERVER", GRPC_COMPLETE)
            agent_call = _one(spans, "the coding agent's CompleteTask", span_id=completion.parent_span_id)
            assert agent_call.parent_span_id == coding_run.span_id, _tree(spans)
            testing_run = _about(spans, "run task", child_id)
            assert (testing_run.service, testing_run.parent_span_id) == (
                "ai-agents-agent-testing",
                follow_up_lease.span_id,
            )

        await assert_eventually_async(chain_tree, timeout_sec=10)
