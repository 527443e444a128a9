"""The `simulate` handler: configurable latency and failure rate, type-shaped results (load and chaos work),
and chains of agent types handing work on (the follow-ups and messages of a real workflow)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from ai_agents.config import AgentLive
from ai_agents.handlers._base import HandlerError, HandlerResult, TaskContext
from ai_agents.handlers._inbox import ReceivedMessage
from ai_agents.handoff import FollowUp, OutgoingMessage

# How long a task awaiting a message waits by default (payload `simulate_await_seconds` overrides).
_AWAIT_SECONDS = 10.0
# The longest CPU burn a payload may ask for (`simulate_cpu_ms`): a task still ends, well inside its lease.
_MAX_CPU_MS = 120_000.0


class SimulateHandler:
    """Sleeps `latency_ms` (payload `simulate_latency_ms` overrides) and fails with `failure_rate`.
    Payload `simulate_cpu_ms` first keeps one CPU busy for that long (at most 120 s), in a worker thread so the
    agent's heartbeats go on: a CPU-bound task, the load the CPU trigger scales on.

    Results carry the fields that feed the type-specific scaling signals, so load tests exercise them:
    testing -> test_duration_seconds, security -> vulnerabilities_found, compliance -> compliance_violations.
    A payload may fix those values (e.g. {"vulnerabilities_found": 3}) for deterministic tests.

    Chains, from the payload (docs/contracts.md, "Chains"):
    - `simulate_chain`: agent types still to run, e.g. ["testing", "security", "documentation"]: the task hands
      on one follow-up to the first, whose payload is this one with that type taken off the list.
    - `simulate_send`: {agent type: [message, ...]}: messages the task of that type sends with its completion,
      each {"topic", "body", and one of "recipient_agent_id", "recipient_type", "to_all"}.
    - `simulate_await_topic`: {agent type: topic}: the task of that type waits (up to `simulate_await_seconds`)
      until its agent received a message of that topic (a follow-up: one its parent task sent), and reports it
      in `received_messages`.
    """

    def __init__(self, *, latency_ms: float, failure_rate: float, rng: random.Random | None = None) -> None:
        self._latency_ms = latency_ms
        self._failure_rate = failure_rate
        self._rng = rng or random.Random()

    def reconfigure(self, live: AgentLive) -> None:
        self._latency_ms = live.simulate_latency_ms
        self._failure_rate = live.simulate_failure_rate

    async def run(self, task: TaskContext) -> dict[str, Any] | HandlerResult:
        latency_ms = float(task.payload.get("simulate_latency_ms", self._latency_ms))
        failure_rate = float(task.payload.get("simulate_failure_rate", self._failure_rate))
        cpu_ms = min(max(float(task.payload.get("simulate_cpu_ms", 0)), 0.0), _MAX_CPU_MS)
        if cpu_ms > 0:
            await asyncio.to_thread(_burn_cpu, cpu_ms / 1000)
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
        if self._rng.random() < failure_rate:
            raise HandlerError("simulated failure", retryable=bool(task.payload.get("simulate_retryable", True)))
        result: dict[str, Any] = {"handler": "simulate", "latency_ms": latency_ms, "attempt": task.attempt}
        if task.agent_type == "testing":
            result["test_duration_seconds"] = float(
                task.payload.get("test_duration_seconds", round(self._rng.uniform(0.5, 30.0), 3))
            )
            result["tests_run"] = int(task.payload.get("tests_run", self._rng.randint(1, 500)))
        elif task.agent_type == "security":
            result["vulnerabilities_found"] = int(task.payload.get("vulnerabilities_found", self._rng.randint(0, 3)))
        elif task.agent_type == "compliance":
            result["compliance_violations"] = int(task.payload.get("compliance_violations", self._rng.randint(0, 2)))
        if topic := _for_my_type(task, "simulate_await_topic", str):
            message = await self._await_message(task, topic)
            result["received_messages"] = [_describe(message)]
        follow_ups = _next_in_chain(task)
        messages = _messages_to_send(task)
        if not follow_ups and not messages:
            return result
        if follow_ups:
            result["handed_on_to"] = follow_ups[0].agent_type
        return HandlerResult(result, follow_ups=follow_ups, messages=messages)

    async def _await_message(self, task: TaskContext, topic: str) -> ReceivedMessage:
        timeout = float(task.payload.get("simulate_await_seconds", _AWAIT_SECONDS))
        parent = task.parent_task_id

        def awaited(message: ReceivedMessage) -> bool:
            # A follow-up waits for what its own parent sent: the inbox is the agent's, shared by many chains.
            return message.topic == topic and (parent is None or message.sender_task_id == parent)

        message = await task.inbox.wait_for(awaited, timeout=timeout)
        if message is None:
            raise HandlerError(f"no message with topic {topic!r} arrived within {timeout:g}s", retryable=False)
        return message

    async def close(self) -> None:
        return None


def _for_my_type(task: TaskContext, key: str, kind: type) -> Any:
    """The payload's `key` entry for this task's agent type, if it is a `kind`; else None."""
    per_type = task.payload.get(key)
    value = per_type.get(task.agent_type) if isinstance(per_type, dict) else None
    return value if isinstance(value, kind) else None


def _next_in_chain(task: TaskContext) -> list[FollowUp]:
    chain = task.payload.get("simulate_chain")
    if chain is None or chain == []:
        return []
    if not isinstance(chain, list) or not all(isinstance(t, str) for t in chain):
        raise HandlerError("simulate_chain: must be a list of agent types", retryable=False)
    return [FollowUp(agent_type=chain[0], payload={**task.payload, "simulate_chain": chain[1:]})]


def _messages_to_send(task: TaskContext) -> list[OutgoingMessage]:
    specs = _for_my_type(task, "simulate_send", list) or []
    messages = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("topic", ""), str):
            raise HandlerError(f"simulate_send.{task.agent_type}[{index}]: must be a message object", retryable=False)
        body = spec.get("body", {})
        messages.append(
            OutgoingMessage(
                topic=spec.get("topic", ""),
                body=body if isinstance(body, dict) else {"value": body},
                recipient_agent_id=spec.get("recipient_agent_id") or None,
                recipient_type=spec.get("recipient_type") or None,
                to_all=bool(spec.get("to_all", False)),
            )
        )
    return messages


def _describe(message: ReceivedMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "sender": message.sender,
        "sender_task_id": message.sender_task_id,
        "topic": message.topic,
        "body": message.body,
    }


def _burn_cpu(seconds: float) -> None:
    """Busy until `seconds` of this thread's CPU time are spent (or four times that of wall time, if starved)."""
    cpu_end = time.thread_time() + seconds
    wall_end = time.monotonic() + 4 * seconds
    while time.thread_time() < cpu_end and time.monotonic() < wall_end:
        sum(i * i for i in range(1000))
