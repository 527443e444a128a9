"""Handlers (llm against a local OpenAI-compatible double, simulate) and the gRPC client (targets, retries, breaker)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from ai_agents.client import (
    ChannelOptions,
    CircuitBreaker,
    CircuitOpenError,
    OrchestratorClient,
    create_channel,
    resolve_target,
    service_config,
)
from ai_agents.client._breaker import BreakerState
from ai_agents.config import AgentSettings
from ai_agents.domain import AGENT_TYPES
from ai_agents.handlers import HandlerError, TaskContext, build_handler
from ai_agents.handlers._llm import LlmHandler
from ai_agents.handlers._simulate import SimulateHandler
from ai_agents.local.ports import free_port
from ai_agents.observability.metrics import CommonMetrics, new_registry
from ai_agents.orchestrator.app import Orchestrator
from aiohttp import web
from waits import assert_eventually_async

from ._api_support import rpc_error
from ._fleet_support import OrchestratorFactory

# ---- a local stand-in for the external LLM endpoint ---------------------------------------------------------


@dataclass
class LlmDouble:
    """POST /v1/chat/completions: records each request and answers with the next scripted response."""

    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[tuple[int, str]] = field(default_factory=list)
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": json.loads(raw)})
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script:
            status, text = self.script.pop(0)
            return web.Response(status=status, text=text, content_type="application/json")
        body = json.loads(raw)
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"] + "-served",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "echo: " + body["messages"][-1]["content"]},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
            }
        )


@pytest.fixture
async def llm() -> AsyncIterator[LlmDouble]:
    double = LlmDouble()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", double.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    double.base_url = f"http://127.0.0.1:{port}/v1"
    yield double
    await runner.cleanup()


def ctx(agent_type: str, payload: dict[str, Any], attempt: int = 1) -> TaskContext:
    async def progress(_value: float, _message: str) -> None:
        return None

    return TaskContext(
        task_id="00000000-0000-0000-0000-000000000001",
        agent_type=agent_type,
        payload=payload,
        attempt=attempt,
        report_progress=progress,
    )


def llm_handler(
    double: LlmDouble, *, api_key: str | None = "sk-test", timeout: float = 5.0, base_url: str | None = None
) -> LlmHandler:
    return LlmHandler(
        base_url=base_url or double.base_url,
        model="small-model",
        api_key=api_key,
        timeout_seconds=timeout,
        max_tokens=77,
    )


async def test_llm_request_shape_and_result(llm: LlmDouble) -> None:
    handler = llm_handler(llm, base_url=llm.base_url + "/")
    try:
        result = await handler.run(ctx("security", {"prompt": "audit login.py"}))
        assert result == {
            "handler": "llm",
            "model": "small-model-served",
            "content": "echo: audit login.py",
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
        }
        sent = llm.requests[-1]
        assert sent["path"] == "/v1/chat/completions"
        assert sent["headers"]["Authorization"] == "Bearer sk-test"
        body = sent["body"]
        assert body["model"] == "small-model" and body["max_tokens"] == 77
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert body["messages"][1]["content"] == "audit login.py"

        systems = {}
        for agent_type in AGENT_TYPES:
            await handler.run(ctx(agent_type, {"prompt": "x"}))
            systems[agent_type] = llm.requests[-1]["body"]["messages"][0]["content"]
            assert agent_type in systems[agent_type].lower(), "each type's prompt speaks of that type"
        assert len(set(systems.values())) == len(AGENT_TYPES), "one system prompt per agent type"

        # Without a prompt the whole payload is the user message; the payload may override model and system.
        await handler.run(ctx("coding", {"model": "big-model", "system_prompt": "Be terse.", "files": ["a.py"]}))
        body = llm.requests[-1]["body"]
        assert body["model"] == "big-model"
        assert body["messages"][0] == {"role": "system", "content": "Be terse."}
        assert json.loads(body["messages"][1]["content"]) == {
            "model": "big-model",
            "system_prompt": "Be terse.",
            "files": ["a.py"],
        }
    finally:
        await handler.close()


async def test_llm_without_api_key_sends_no_authorization(llm: LlmDouble) -> None:
    handler = llm_handler(llm, api_key=None)
    try:
        await handler.run(ctx("coding", {"prompt": "hi"}))
        assert "Authorization" not in llm.requests[-1]["headers"]
    finally:
        await handler.close()


@pytest.mark.parametrize(
    ("status", "text", "retryable"),
    [
        (429, '{"error": "slow down"}', True),
        (500, '{"error": "boom"}', True),
        (503, "unavailable", True),
        (400, '{"error": "bad request"}', False),
        (401, '{"error": "bad key"}', False),
        (200, "this is not json {", True),
        (200, '{"choices": []}', False),
    ],
    ids=["429", "500", "503", "400", "401", "garbage-json", "no-choices"],
)
async def test_llm_error_classification(llm: LlmDouble, status: int, text: str, retryable: bool) -> None:
    llm.script.append((status, text))
    handler = llm_handler(llm)
    try:
        with pytest.raises(HandlerError) as info:
            await handler.run(ctx("testing", {"prompt": "p"}))
        assert info.value.retryable is retryable
        if status != 200:
            assert str(status) in str(info.value)
    finally:
        await handler.close()


async def test_llm_unreachable_and_timeout_are_retryable(llm: LlmDouble) -> None:
    dead = llm_handler(llm, base_url=f"http://127.0.0.1:{free_port()}/v1")
    try:
        with pytest.raises(HandlerError) as info:
            await dead.run(ctx("coding", {"prompt": "p"}))
        assert info.value.retryable
    finally:
        await dead.close()
    llm.delay = 1.0
    slow = llm_handler(llm, timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(HandlerError) as info:
            await slow.run(ctx("coding", {"prompt": "p"}))
        assert info.value.retryable and time.monotonic() - started < 1.5
    finally:
        await slow.close()


async def test_build_handler_by_name(llm: LlmDouble) -> None:
    settings = AgentSettings(
        agent_type="coding",
        handler="llm",
        llm_base_url=llm.base_url,
        llm_model="m-1",
        llm_api_key="k-1",
        llm_max_tokens=5,
    )
    handler = build_handler(settings)
    try:
        assert isinstance(handler, LlmHandler)
        await handler.run(ctx("coding", {"prompt": "p"}))
        sent = llm.requests[-1]
        assert sent["body"]["model"] == "m-1" and sent["body"]["max_tokens"] == 5
        assert sent["headers"]["Authorization"] == "Bearer k-1"
    finally:
        await handler.close()
    simulate = build_handler(AgentSettings(agent_type="coding", simulate_latency_ms=0))
    assert isinstance(simulate, SimulateHandler)


# ---- simulate ----------------------------------------------------------------------------------------------


async def test_simulate_latency_is_honoured() -> None:
    handler = SimulateHandler(latency_ms=200, failure_rate=0.0)
    started = time.monotonic()
    result = await handler.run(ctx("coding", {}, attempt=2))
    elapsed = time.monotonic() - started
    assert 0.19 <= elapsed < 2.0
    assert result == {"handler": "simulate", "latency_ms": 200.0, "attempt": 2}
    started = time.monotonic()
    await handler.run(ctx("coding", {"simulate_latency_ms": 0}))
    assert time.monotonic() - started < 0.1, "the payload overrides the configured latency"


async def test_simulate_cpu_burns_cpu_without_blocking_the_event_loop() -> None:
    handler = SimulateHandler(latency_ms=0, failure_rate=0.0)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    cpu_before, started = time.process_time(), time.monotonic()
    await handler.run(ctx("discovery", {"simulate_cpu_ms": 300}))
    cpu_spent, elapsed = time.process_time() - cpu_before, time.monotonic() - started
    ticker.cancel()
    assert cpu_spent >= 0.25, f"only {cpu_spent:.3f}s of CPU: the burn did not run"
    assert ticks >= elapsed / 0.01 / 4, f"{ticks} ticks in {elapsed:.2f}s: the burn held the event loop"
    started = time.process_time()
    await handler.run(ctx("discovery", {"simulate_cpu_ms": -5}))
    assert time.process_time() - started < 0.05, "a negative burn is none"


async def test_simulate_failure_rate() -> None:
    always = SimulateHandler(latency_ms=0, failure_rate=1.0, rng=random.Random(1))
    for _ in range(50):
        with pytest.raises(HandlerError) as info:
            await always.run(ctx("coding", {}))
        assert info.value.retryable
    with pytest.raises(HandlerError) as info:
        await always.run(ctx("coding", {"simulate_retryable": False}))
    assert not info.value.retryable
    never = SimulateHandler(latency_ms=0, failure_rate=0.0, rng=random.Random(2))
    for _ in range(50):
        await never.run(ctx("coding", {}))
    # The payload may raise the rate for one task.
    with pytest.raises(HandlerError):
        await never.run(ctx("coding", {"simulate_failure_rate": 1.0}))


async def test_simulate_type_specific_results() -> None:
    handler = SimulateHandler(latency_ms=0, failure_rate=0.0, rng=random.Random(3))
    for _ in range(20):
        testing = await handler.run(ctx("testing", {}))
        assert isinstance(testing["test_duration_seconds"], float) and 0.5 <= testing["test_duration_seconds"] <= 30
        assert isinstance(testing["tests_run"], int) and 1 <= testing["tests_run"] <= 500
        security = await handler.run(ctx("security", {}))
        assert isinstance(security["vulnerabilities_found"], int) and 0 <= security["vulnerabilities_found"] <= 3
        compliance = await handler.run(ctx("compliance", {}))
        assert isinstance(compliance["compliance_violations"], int) and 0 <= compliance["compliance_violations"] <= 2
    signals = {"test_duration_seconds", "tests_run", "vulnerabilities_found", "compliance_violations"}
    for agent_type in ("coding", "documentation", "discovery"):
        assert not signals & set(await handler.run(ctx(agent_type, {})))
    fixed = await handler.run(ctx("security", {"vulnerabilities_found": 4}))
    assert fixed["vulnerabilities_found"] == 4
    fixed = await handler.run(ctx("testing", {"test_duration_seconds": 1.5, "tests_run": 9}))
    assert (fixed["test_duration_seconds"], fixed["tests_run"]) == (1.5, 9)


# ---- client: targets and service config --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "environ", "expected"),
    [
        ("orch:9090", {}, "dns:///orch:9090"),
        ("r-orchestrator-headless.ns.svc:9090", {}, "dns:///r-orchestrator-headless.ns.svc:9090"),
        ("dns:///orch:9090", {}, "dns:///orch:9090"),
        ("orch:9090", {"GRPC_XDS_BOOTSTRAP": "/etc/xds.json"}, "xds:///orch:9090"),
        ("dns:///orch:9090", {"GRPC_XDS_BOOTSTRAP": "/etc/xds.json"}, "xds:///orch:9090"),
        ("dns:///orch:9090", {"GRPC_XDS_BOOTSTRAP_CONFIG": "{}"}, "xds:///orch:9090"),
        ("dns:///orch:9090", {"GRPC_XDS_BOOTSTRAP": ""}, "dns:///orch:9090"),
        ("ipv4:127.0.0.1:1,127.0.0.1:2", {}, "ipv4:127.0.0.1:1,127.0.0.1:2"),
        ("ipv4:127.0.0.1:1,127.0.0.1:2", {"GRPC_XDS_BOOTSTRAP": "/x"}, "ipv4:127.0.0.1:1,127.0.0.1:2"),
        ("unix:/tmp/orch.sock", {"GRPC_XDS_BOOTSTRAP": "/x"}, "unix:/tmp/orch.sock"),
        ("xds:///orch:9090", {}, "xds:///orch:9090"),
    ],
)
def test_resolve_target(target: str, environ: dict[str, str], expected: str) -> None:
    assert resolve_target(target, environ=environ) == expected


def test_the_retry_policy_covers_every_service_of_the_api() -> None:
    """Static, and kept for one reason: a service added to the protos must not silently go without retries.

    That the policy retries UNAVAILABLE (five attempts) and nothing else is observed on a real orchestrator in
    test_retries_observed.py.
    """
    from ai_agents.v1 import agents_pb2, messaging_pb2, monitoring_pb2, resources_pb2, tasks_pb2

    api = {
        service.full_name
        for module in (agents_pb2, messaging_pb2, monitoring_pb2, resources_pb2, tasks_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
    }
    [method] = service_config(ChannelOptions())["methodConfig"]
    assert all(set(n) == {"service"} for n in method["name"]), "whole services, every method"
    assert {n["service"] for n in method["name"]} == api


# ---- client: circuit breaker state machine -----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state_of(breaker: CircuitBreaker) -> BreakerState:
    # A function call, so the type checker does not narrow the property between assertions.
    return breaker.state


def test_circuit_breaker_state_machine() -> None:
    clock = FakeClock()
    changes: list[BreakerState] = []
    breaker = CircuitBreaker("t", failure_threshold=3, reset_timeout=10.0, clock=clock, on_state_change=changes.append)
    U = grpc.StatusCode.UNAVAILABLE

    # Non-tripping answers reset the count of consecutive failures.
    for code in (U, U, grpc.StatusCode.NOT_FOUND, U, grpc.StatusCode.DEADLINE_EXCEEDED):
        breaker.before_call()
        breaker.record(code)
    assert state_of(breaker) is BreakerState.CLOSED and changes == []
    breaker.before_call()
    breaker.record(grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert state_of(breaker) is BreakerState.OPEN and changes == [BreakerState.OPEN]

    # Open: rejects without calling, until the reset timeout.
    with pytest.raises(CircuitOpenError) as info:
        breaker.before_call()
    assert info.value.grpc_code == grpc.StatusCode.UNAVAILABLE
    clock.now += 9.9
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    # Half-open: exactly one probe at a time.
    clock.now += 0.1
    assert state_of(breaker) is BreakerState.HALF_OPEN
    breaker.before_call()
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    # A failed probe re-opens at once (one failure, not the threshold), for a full reset timeout.
    breaker.record(U)
    assert state_of(breaker) is BreakerState.OPEN
    clock.now += 9.9
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    clock.now += 0.1
    breaker.before_call()
    # A successful probe closes, and the count starts again from zero.
    breaker.record(grpc.StatusCode.OK)
    assert state_of(breaker) is BreakerState.CLOSED
    assert changes == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]
    for _ in range(2):
        breaker.before_call()
        breaker.record(U)
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.before_call()
    breaker.record(U)
    assert state_of(breaker) is BreakerState.OPEN


def test_circuit_breaker_application_errors_do_not_trip() -> None:
    breaker = CircuitBreaker("t", failure_threshold=2, clock=FakeClock())
    for code in (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.UNAUTHENTICATED,
    ) * 3:
        breaker.before_call()
        breaker.record(code)
    assert breaker.state is BreakerState.CLOSED


# ---- client: end to end ------------------------------------------------------------------------------------


class CountingInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Counts RPCs that actually reach the channel."""

    def __init__(self) -> None:
        self.calls = 0

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        self.calls += 1
        return await continuation(client_call_details, request)


def _rejections(metrics: CommonMetrics, target: str) -> float:
    return metrics.registry.get_sample_value("ai_agents_circuit_breaker_rejections_total", {"target": target}) or 0


async def test_dead_target_is_unavailable_then_the_breaker_opens() -> None:
    target = f"127.0.0.1:{free_port()}"
    counter = CountingInterceptor()
    metrics = CommonMetrics(new_registry(), "test")
    channel = create_channel(
        target, options=ChannelOptions(max_attempts=2, initial_backoff_seconds=0.01), interceptors=[counter]
    )
    client = OrchestratorClient(channel, target=target, timeout=3, metrics=metrics)
    try:
        threshold = 5
        for _ in range(threshold):
            err = await rpc_error(client.status())
            assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert counter.calls == threshold
        assert client.breaker.state is BreakerState.OPEN
        assert metrics.registry.get_sample_value("ai_agents_circuit_breaker_state", {"target": target}) == 2
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(CircuitOpenError):
                await client.get_task("00000000-0000-0000-0000-000000000000")
        assert time.monotonic() - started < 0.1
        assert counter.calls == threshold, "an open circuit makes no call"
        assert _rejections(metrics, target) == 3
        assert (
            metrics.registry.get_sample_value(
                "ai_agents_client_requests_total", {"method": "GetStatus", "code": "UNAVAILABLE"}
            )
            == threshold
        )
    finally:
        await client.close()


async def test_application_errors_from_a_live_target_keep_the_circuit_closed(orchestrator: Orchestrator) -> None:
    target = f"127.0.0.1:{orchestrator.grpc.port}"  # type: ignore[union-attr]
    async with await OrchestratorClient.connect(target, timeout=5) as client:
        for _ in range(8):
            err = await rpc_error(client.get_task("00000000-0000-0000-0000-000000000000"))
            assert err.code() == grpc.StatusCode.NOT_FOUND
        assert client.breaker.state is BreakerState.CLOSED
        assert (await client.status()).database_ok


async def test_one_dead_and_two_live_addresses_still_succeed_round_robin(
    orchestrator: Orchestrator, start_orchestrator: OrchestratorFactory
) -> None:
    second = await start_orchestrator()
    live = [orchestrator, second]
    dead = free_port()
    target = "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in [dead, *(o.grpc.port for o in live)])  # type: ignore[union-attr]
    async with await OrchestratorClient.connect(target, timeout=5) as client:
        for i in range(20):
            status = await client.status()
            assert status.database_ok
            submitted = await client.submit_task("coding", {"i": i})
            assert submitted.created
        assert client.breaker.state is BreakerState.CLOSED
        listed = await client.list_tasks(agent_type="coding")
        assert len(listed.tasks) == 20, "every call landed exactly once"

    def served() -> list[float]:
        return [
            o.metrics.registry.get_sample_value(
                "ai_agents_grpc_requests_total", {"method": "/ai_agents.v1.MonitoringService/GetStatus", "code": "OK"}
            )
            or 0
            for o in live
        ]

    assert sum(served()) == 20
    # Once both live subchannels are connected, round_robin spreads calls over them (pick_first never would).
    async with await OrchestratorClient.connect(target, timeout=5) as client:
        before = served()

        async def spread() -> None:
            for _ in range(10):
                await client.status()
            gained = [after - b for after, b in zip(served(), before, strict=True)]
            assert min(gained) >= 3, f"calls per live address: {gained}"

        await assert_eventually_async(spread, timeout_sec=10, interval_sec=0.2)
