"""OrchestratorClient: typed async calls with deadlines, auth, a circuit breaker and trace propagation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from ai_agents import convert as c
from ai_agents.client._batching import CallBatcher, refused
from ai_agents.client._breaker import TRIPPING_CODES, BreakerState, CircuitBreaker, CircuitOpenError
from ai_agents.client._channel import ChannelOptions
from ai_agents.client._heartbeats import HeartbeatStream, heartbeat_request
from ai_agents.client._lenient import LeaseBatch, decode_lease_response
from ai_agents.client._pool import ChannelPool
from ai_agents.domain import MAX_SUBMISSIONS_PER_CALL
from ai_agents.group_commit import RUN_ALONE
from ai_agents.handoff import FollowUp, OutgoingMessage
from ai_agents.observability.metrics import CommonMetrics
from ai_agents.observability.task_trace import current_trace_context
from ai_agents.observability.tracing import tracing_enabled
from ai_agents.serving.identity import CREDENTIAL_METADATA
from ai_agents.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    messaging_pb2,
    messaging_pb2_grpc,
    monitoring_pb2,
    monitoring_pb2_grpc,
    resources_pb2,
    resources_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)

T = TypeVar("T")

# Returns the agent's current credential (a rotated token file is re-read), or None to send none.
AgentCredential = Callable[[], "str | None"]

_LEASE_TASKS = f"/{tasks_pb2.DESCRIPTOR.services_by_name['TaskService'].full_name}/LeaseTasks"


def submit_request(
    agent_type: str,
    payload: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    priority: int = 0,
    max_attempts: int = 0,
) -> tasks_pb2.SubmitTaskRequest:
    """The SubmitTask request (also each item of a SubmitTasks call); ValueError or TypeError for a payload it
    cannot carry. A key is always set, so that a retry can never create a second task."""
    return tasks_pb2.SubmitTaskRequest(
        agent_type=c.AGENT_TYPE.to_proto(agent_type),
        payload=c.dict_to_struct(payload),
        idempotency_key=idempotency_key or f"auto-{uuid.uuid4()}",
        priority=priority,
        max_attempts=max_attempts,
    )


def completion_request(
    task_id: str,
    lease_token: int,
    result: dict[str, Any],
    *,
    follow_ups: Sequence[FollowUp] = (),
    messages: Sequence[OutgoingMessage] = (),
) -> tasks_pb2.CompleteTaskRequest:
    """The CompleteTask request; ValueError or TypeError (naming the field where it can) for what it cannot carry."""
    return tasks_pb2.CompleteTaskRequest(
        task_id=task_id,
        lease_token=lease_token,
        result=c.dict_to_struct(result),
        follow_ups=[c.follow_up_to_message(f, i) for i, f in enumerate(follow_ups)],
        messages=[c.outgoing_message_to_message(m, i) for i, m in enumerate(messages)],
    )


class UndecodableResponse(Exception):
    """The call succeeded but its response could not be parsed (grpcio then hands back None)."""


class UndecodableLeases(Exception):
    """Some leases of a batch could not be parsed; `batch` holds both those and the ones that could."""

    def __init__(self, batch: LeaseBatch) -> None:
        ids = ", ".join(lease.task_id or "?" for lease in batch.undecodable)
        super().__init__(f"{len(batch.undecodable)} lease(s) could not be decoded: {ids}")
        self.batch = batch


_DEFAULT_MAX_MESSAGE_BYTES = ChannelOptions().max_message_bytes


def _raw_bytes(data: bytes) -> bytes:
    return data


def _one_outcome_each(method: str, outcomes: Sequence[T], sent: int) -> list[T]:
    """A batch call's outcomes, which must be one per item sent (else no item's answer can be trusted)."""
    if len(outcomes) != sent:
        raise UndecodableResponse(f"{method}: {len(outcomes)} outcomes for {sent} items")
    return list(outcomes)


def _call_wide(exc: Exception) -> bool:
    """A batch call's failure that each of its items would have met on its own call: the connection, the breaker, the
    credential. Any other (one item the server could not handle) sends each item alone."""
    if isinstance(exc, CircuitOpenError):
        return True
    return isinstance(exc, grpc.aio.AioRpcError) and (
        exc.code() in TRIPPING_CODES
        or exc.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    )


# opentelemetry-instrumentation-grpc ships py.typed but leaves this factory unannotated: its real signature.
_aio_client_interceptors: Callable[[], list[grpc.aio.ClientInterceptor]] = aio_client_interceptors


class OrchestratorClient:
    """Use `OrchestratorClient.connect(target, token=...)` (or `async with`); every call has a deadline.

    `channel` is one grpc.aio channel or a ChannelPool (what `connect` builds): the stubs spread calls over a pool.
    With `batch_submits` (the default), submits made while one is in flight go together in the next SubmitTasks
    call (client/_batching.py); each caller still gets SubmitTask's answer or error. `max_message_bytes` is the
    channel's request limit, which a batch call stays within.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel | ChannelPool,
        *,
        target: str,
        token: str | None = None,
        timeout: float = 10.0,
        metrics: CommonMetrics | None = None,
        breaker: CircuitBreaker | None = None,
        agent_credential: AgentCredential | None = None,
        batch_submits: bool = True,
        max_message_bytes: int = _DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.channel = channel
        self.target = target
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout
        self._metrics = metrics
        self._agent_credential = agent_credential
        self.breaker = breaker or CircuitBreaker(target, on_state_change=self._on_breaker_change)
        # The stubs use unary_unary, unary_stream and stream_stream, which a ChannelPool serves as a channel does.
        stub_channel = cast("grpc.aio.Channel", channel)
        self.tasks = tasks_pb2_grpc.TaskServiceStub(stub_channel)
        self.agents = agents_pb2_grpc.AgentServiceStub(stub_channel)
        self.messaging = messaging_pb2_grpc.MessagingServiceStub(stub_channel)
        self.monitoring = monitoring_pb2_grpc.MonitoringServiceStub(stub_channel)
        self.resources = resources_pb2_grpc.ResourceServiceStub(stub_channel)
        # LeaseTasks without parsing: decode_lease_response parses each lease alone (see _lenient.py).
        self._lease_raw = stub_channel.unary_unary(
            _LEASE_TASKS,
            request_serializer=tasks_pb2.LeaseTasksRequest.SerializeToString,
            response_deserializer=_raw_bytes,
        )
        self._submits: CallBatcher[tasks_pb2.TaskSubmission, tasks_pb2.SubmitOutcome] | None = (
            CallBatcher(
                "SubmitTasks",
                self.submit_tasks,
                max_batch=MAX_SUBMISSIONS_PER_CALL,
                max_request_bytes=max_message_bytes,
                shared_error=_call_wide,
            )
            if batch_submits
            else None
        )
        if metrics is not None:
            metrics.circuit_state.labels(target).set(BreakerState.CLOSED)

    @classmethod
    async def connect(
        cls,
        target: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        metrics: CommonMetrics | None = None,
        options: ChannelOptions | None = None,
        channels: int = 1,
        wait_ready: float | None = None,
        agent_credential: AgentCredential | None = None,
        batch_submits: bool = True,
    ) -> OrchestratorClient:
        """A client on a pool of `channels` channels to `target`, each with its own connection to every backend."""
        # Trace context is injected into every call only when tracing is configured (it costs CPU per call).
        interceptors = _aio_client_interceptors() if tracing_enabled() else []
        pool = ChannelPool(target, size=channels, options=options, interceptors=interceptors, metrics=metrics)
        if wait_ready is not None:
            await pool.channel_ready()  # bounded by the caller with asyncio.wait_for when needed
        return cls(
            pool,
            target=target,
            token=token,
            timeout=timeout,
            metrics=metrics,
            agent_credential=agent_credential,
            batch_submits=batch_submits,
            max_message_bytes=(options or ChannelOptions()).max_message_bytes,
        )

    def as_agent(self, credential: str) -> OrchestratorClient:
        """A client on the same channel that acts as the agent `credential` identifies (close only the original)."""
        view = OrchestratorClient(
            self.channel,
            target=self.target,
            timeout=self._timeout,
            breaker=self.breaker,
            agent_credential=lambda: credential,
        )
        # Shared after construction: the constructor would reset the breaker gauge the original still owns.
        view._metadata = self._metadata
        view._metrics = self._metrics
        return view

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> OrchestratorClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def timeout(self) -> float:
        """Each call's deadline in seconds, unless the call names its own."""
        return self._timeout

    def call_metadata(self) -> tuple[tuple[str, str], ...]:
        """The API token, plus this agent's credential when it has one (sent on every call: the server decides)."""
        credential = self._agent_credential() if self._agent_credential is not None else None
        if credential:
            return (*self._metadata, (CREDENTIAL_METADATA, credential))
        return self._metadata

    def _on_breaker_change(self, state: BreakerState) -> None:
        if self._metrics is not None:
            self._metrics.circuit_state.labels(self.target).set(int(state))

    def _admit(self, admit: Callable[[], None]) -> None:
        """Ask the breaker (`before_call` or `before_stream`), counting a refusal."""
        try:
            admit()
        except CircuitOpenError:
            if self._metrics is not None:
                self._metrics.circuit_rejections.labels(self.target).inc()
            raise

    async def _call(self, name: str, method: Callable[..., Awaitable[T]], request: Any, timeout: float | None) -> T:
        self._admit(self.breaker.before_call)
        code = grpc.StatusCode.OK
        try:
            response = await method(request, timeout=timeout or self._timeout, metadata=self.call_metadata())
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise
        else:
            if response is None:
                # grpcio logs "Exception deserializing message!" and returns None; gRPC's other clients report
                # INTERNAL for a response they cannot parse.
                code = grpc.StatusCode.INTERNAL
                raise UndecodableResponse(f"{name}: the response could not be decoded")
            return response
        finally:
            self.breaker.record(code)
            if self._metrics is not None:
                self._metrics.client_requests.labels(name, code.name).inc()

    def record_retry(self, name: str) -> None:
        """Count a call the caller repeats itself after gRPC's own retries gave up."""
        if self._metrics is not None:
            self._metrics.client_retries.labels(name).inc()

    # ---- tasks -------------------------------------------------------------------------------------------

    async def submit_task(
        self,
        agent_type: str,
        payload: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        priority: int = 0,
        max_attempts: int = 0,
        timeout: float | None = None,
    ) -> tasks_pb2.SubmitTaskResponse:
        """Submit a task; with `batch_submits` and no `timeout` of its own it may share a SubmitTasks call."""
        request = submit_request(
            agent_type, payload, idempotency_key=idempotency_key, priority=priority, max_attempts=max_attempts
        )
        if timeout is None and self._submits is not None and self._submits.takes(request.ByteSize()):
            # The caller's trace context goes with the item: the batch call has its own trace.
            traceparent, tracestate = current_trace_context()
            submission = tasks_pb2.TaskSubmission(
                task=request, traceparent=traceparent or "", tracestate=tracestate or ""
            )
            answer = await self._submits(submission)
            if answer is not RUN_ALONE:
                assert isinstance(answer, tasks_pb2.SubmitOutcome)
                if answer.code:
                    raise refused(answer.code, answer.message)
                return answer.response
        return await self._call("SubmitTask", self.tasks.SubmitTask, request, timeout)

    async def submit_tasks(
        self, submissions: Sequence[tasks_pb2.TaskSubmission], *, timeout: float | None = None
    ) -> list[tasks_pb2.SubmitOutcome]:
        """Submit many tasks in one call; one outcome per submission, in order (its `code` and `response` are what
        SubmitTask would have answered). Raises only for the call as a whole."""
        request = tasks_pb2.SubmitTasksRequest(submissions=submissions)
        response: tasks_pb2.SubmitTasksResponse = await self._call(
            "SubmitTasks", self.tasks.SubmitTasks, request, timeout
        )
        return _one_outcome_each("SubmitTasks", response.outcomes, len(submissions))

    async def get_task(self, task_id: str, *, timeout: float | None = None) -> tasks_pb2.Task:
        response: tasks_pb2.GetTaskResponse = await self._call(
            "GetTask", self.tasks.GetTask, tasks_pb2.GetTaskRequest(task_id=task_id), timeout
        )
        return response.task

    async def list_tasks(
        self,
        *,
        agent_type: str | None = None,
        state: str | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> tasks_pb2.ListTasksResponse:
        request = tasks_pb2.ListTasksRequest(
            agent_type=c.AGENT_TYPE.to_proto(agent_type),
            state=c.TASK_STATE.to_proto(state),
            page_size=page_size,
            page_token=page_token,
        )
        return await self._call("ListTasks", self.tasks.ListTasks, request, timeout)

    async def cancel_task(self, task_id: str, *, timeout: float | None = None) -> tasks_pb2.Task:
        response: tasks_pb2.CancelTaskResponse = await self._call(
            "CancelTask", self.tasks.CancelTask, tasks_pb2.CancelTaskRequest(task_id=task_id), timeout
        )
        return response.task

    async def lease_tasks(
        self, *, agent_id: str, agent_type: str, max_tasks: int, wait_seconds: int
    ) -> list[tasks_pb2.TaskLease]:
        """The leased tasks; raises UndecodableLeases (holding the whole batch) if any could not be parsed."""
        batch = await self.lease_task_batch(
            agent_id=agent_id, agent_type=agent_type, max_tasks=max_tasks, wait_seconds=wait_seconds
        )
        if batch.undecodable:
            raise UndecodableLeases(batch)
        return batch.leases

    async def lease_task_batch(
        self, *, agent_id: str, agent_type: str, max_tasks: int, wait_seconds: int
    ) -> LeaseBatch:
        """Lease tasks; a lease that cannot be parsed comes back in `undecodable` instead of failing the call."""
        request = tasks_pb2.LeaseTasksRequest(
            agent_id=agent_id,
            agent_type=c.AGENT_TYPE.to_proto(agent_type),
            max_tasks=max_tasks,
            wait_seconds=wait_seconds,
        )
        # The deadline covers the long poll plus a margin for the lease itself.
        data = await self._call("LeaseTasks", self._lease_raw, request, wait_seconds + self._timeout)
        try:
            return decode_lease_response(data)
        except DecodeError as exc:
            raise UndecodableResponse(f"LeaseTasks: the response could not be decoded: {exc}") from exc

    async def complete_task(
        self,
        task_id: str,
        lease_token: int,
        result: dict[str, Any],
        *,
        follow_ups: Sequence[FollowUp] = (),
        messages: Sequence[OutgoingMessage] = (),
        timeout: float | None = None,
    ) -> tasks_pb2.Task:
        """Complete a leased task; `follow_ups` and `messages` are created with the completion, exactly once."""
        request = completion_request(task_id, lease_token, result, follow_ups=follow_ups, messages=messages)
        response: tasks_pb2.CompleteTaskResponse = await self._call(
            "CompleteTask", self.tasks.CompleteTask, request, timeout
        )
        return response.task

    async def complete_tasks(
        self, completions: Sequence[tasks_pb2.TaskCompletion], *, timeout: float | None = None
    ) -> list[tasks_pb2.CompletionOutcome]:
        """Complete many leased tasks in one call; one outcome per completion, in order (its `code` is what
        CompleteTask would have answered). Raises only for the call as a whole."""
        request = tasks_pb2.CompleteTasksRequest(completions=completions)
        response: tasks_pb2.CompleteTasksResponse = await self._call(
            "CompleteTasks", self.tasks.CompleteTasks, request, timeout
        )
        return _one_outcome_each("CompleteTasks", response.outcomes, len(completions))

    async def fail_task(
        self, task_id: str, lease_token: int, error: str, *, retryable: bool, timeout: float | None = None
    ) -> tasks_pb2.Task:
        request = tasks_pb2.FailTaskRequest(task_id=task_id, lease_token=lease_token, error=error, retryable=retryable)
        response: tasks_pb2.FailTaskResponse = await self._call("FailTask", self.tasks.FailTask, request, timeout)
        return response.task

    async def release_task(self, task_id: str, lease_token: int, *, timeout: float | None = None) -> tasks_pb2.Task:
        request = tasks_pb2.ReleaseTaskRequest(task_id=task_id, lease_token=lease_token)
        response: tasks_pb2.ReleaseTaskResponse = await self._call(
            "ReleaseTask", self.tasks.ReleaseTask, request, timeout
        )
        return response.task

    async def update_task_progress(
        self,
        task_id: str,
        lease_token: int,
        progress: float,
        message: str = "",
        *,
        timeout: float | None = None,
    ) -> tasks_pb2.Task:
        request = tasks_pb2.UpdateTaskProgressRequest(
            task_id=task_id, lease_token=lease_token, progress=progress, message=message
        )
        response: tasks_pb2.UpdateTaskProgressResponse = await self._call(
            "UpdateTaskProgress", self.tasks.UpdateTaskProgress, request, timeout
        )
        return response.task

    # ---- agents ------------------------------------------------------------------------------------------

    async def register_agent(
        self,
        *,
        agent_id: str,
        agent_type: str,
        capacity: int,
        address: str = "",
        version: str = "",
        labels: dict[str, str] | None = None,
    ) -> agents_pb2.RegisterAgentResponse:
        request = agents_pb2.RegisterAgentRequest(
            agent_id=agent_id,
            agent_type=c.AGENT_TYPE.to_proto(agent_type),
            capacity=capacity,
            address=address,
            version=version,
            labels=labels or {},
        )
        return await self._call("RegisterAgent", self.agents.RegisterAgent, request, None)

    async def deregister_agent(self, agent_id: str) -> None:
        await self._call(
            "DeregisterAgent",
            self.agents.DeregisterAgent,
            agents_pb2.DeregisterAgentRequest(agent_id=agent_id),
            None,
        )

    async def heartbeat(
        self, agent_id: str, leases: Sequence[tuple[str, int]], running: int
    ) -> agents_pb2.HeartbeatResponse:
        """One unary Heartbeat call; an agent beating repeatedly uses `heartbeat_stream()`, which costs less."""
        return await self.heartbeat_call(heartbeat_request(agent_id, leases, running))

    async def heartbeat_call(self, request: agents_pb2.HeartbeatRequest) -> agents_pb2.HeartbeatResponse:
        return await self._call("Heartbeat", self.agents.Heartbeat, request, None)

    def heartbeat_stream(self) -> HeartbeatStream:
        """Heartbeats over one long-lived stream, each answered as `heartbeat` would be (client/_heartbeats.py)."""
        return HeartbeatStream(self)

    async def get_agent(self, agent_id: str) -> agents_pb2.Agent:
        response: agents_pb2.GetAgentResponse = await self._call(
            "GetAgent", self.agents.GetAgent, agents_pb2.GetAgentRequest(agent_id=agent_id), None
        )
        return response.agent

    async def list_agents(
        self,
        *,
        agent_type: str | None = None,
        state: str | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> agents_pb2.ListAgentsResponse:
        request = agents_pb2.ListAgentsRequest(
            agent_type=c.AGENT_TYPE.to_proto(agent_type),
            state=c.AGENT_STATE.to_proto(state),
            page_size=page_size,
            page_token=page_token,
        )
        return await self._call("ListAgents", self.agents.ListAgents, request, None)

    async def create_agent(
        self, *, agent_type: str, agent_id: str = "", capacity: int = 1, labels: dict[str, str] | None = None
    ) -> agents_pb2.Agent:
        request = agents_pb2.CreateAgentRequest(
            agent_id=agent_id,
            agent_type=c.AGENT_TYPE.to_proto(agent_type),
            capacity=capacity,
            labels=labels or {},
        )
        response: agents_pb2.CreateAgentResponse = await self._call(
            "CreateAgent", self.agents.CreateAgent, request, None
        )
        return response.agent

    async def update_agent(
        self,
        agent_id: str,
        *,
        labels: dict[str, str] | None = None,
        capacity: int = 0,
        state: str | None = None,
    ) -> agents_pb2.Agent:
        request = agents_pb2.UpdateAgentRequest(
            agent_id=agent_id,
            labels=labels or {},
            update_labels=labels is not None,
            capacity=capacity,
            state=c.AGENT_STATE.to_proto(state),
        )
        response: agents_pb2.UpdateAgentResponse = await self._call(
            "UpdateAgent", self.agents.UpdateAgent, request, None
        )
        return response.agent

    async def delete_agent(self, agent_id: str) -> None:
        await self._call("DeleteAgent", self.agents.DeleteAgent, agents_pb2.DeleteAgentRequest(agent_id=agent_id), None)

    # ---- messaging ---------------------------------------------------------------------------------------

    async def send_message(
        self, *, sender: str, recipient_agent_id: str, topic: str, body: dict[str, Any] | None = None
    ) -> messaging_pb2.Message:
        request = messaging_pb2.SendMessageRequest(
            sender=sender, recipient_agent_id=recipient_agent_id, topic=topic, body=c.dict_to_struct(body)
        )
        response: messaging_pb2.SendMessageResponse = await self._call(
            "SendMessage", self.messaging.SendMessage, request, None
        )
        return response.message

    async def broadcast_message(
        self, *, sender: str, agent_type: str | None, topic: str, body: dict[str, Any] | None = None
    ) -> messaging_pb2.Message:
        request = messaging_pb2.BroadcastMessageRequest(
            sender=sender,
            agent_type=c.AGENT_TYPE.to_proto(agent_type),
            topic=topic,
            body=c.dict_to_struct(body),
        )
        response: messaging_pb2.BroadcastMessageResponse = await self._call(
            "BroadcastMessage", self.messaging.BroadcastMessage, request, None
        )
        return response.message

    async def receive_messages(
        self, agent_id: str, *, after_message_id: int = 0, timeout: float | None = None
    ) -> AsyncIterator[messaging_pb2.Message]:
        """A stream: the deadline (if any) bounds the whole subscription."""
        async for response in self.message_stream(agent_id, after_message_id=after_message_id, timeout=timeout):
            yield response.message

    async def message_stream(
        self, agent_id: str, *, after_message_id: int | None, timeout: float | None = None
    ) -> AsyncGenerator[messaging_pb2.ReceiveMessagesResponse, None]:
        """The raw stream; `after_message_id=None` starts from now, and its first response (no message) says where."""
        self._admit(self.breaker.before_stream)
        call = self.messaging.ReceiveMessages(
            messaging_pb2.ReceiveMessagesRequest(
                agent_id=agent_id, after_message_id=after_message_id or 0, from_now=after_message_id is None
            ),
            timeout=timeout,
            metadata=self.call_metadata(),
        )
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            # A stream cut by a target that went away counts toward opening the circuit; its other endings
            # (cancelled by us, a refusal) say nothing about the target's health.
            if exc.code() in TRIPPING_CODES:
                self.breaker.record(exc.code())
            raise

    # ---- resources and monitoring ------------------------------------------------------------------------

    async def allocate_resource(self, *, agent_id: str, resource: str, amount: int) -> resources_pb2.Allocation:
        request = resources_pb2.AllocateResourceRequest(agent_id=agent_id, resource=resource, amount=amount)
        response: resources_pb2.AllocateResourceResponse = await self._call(
            "AllocateResource", self.resources.AllocateResource, request, None
        )
        return response.allocation

    async def release_resource(self, allocation_id: str) -> None:
        request = resources_pb2.ReleaseResourceRequest(allocation_id=allocation_id)
        await self._call("ReleaseResource", self.resources.ReleaseResource, request, None)

    async def resource_usage(self, agent_type: str | None = None) -> list[resources_pb2.ResourceUsage]:
        request = resources_pb2.GetResourceUsageRequest(agent_type=c.AGENT_TYPE.to_proto(agent_type))
        return list((await self._call("GetResourceUsage", self.resources.GetResourceUsage, request, None)).usage)

    async def set_resource_quota(self, *, agent_type: str, resource: str, quota: int) -> resources_pb2.ResourceUsage:
        request = resources_pb2.SetResourceQuotaRequest(
            agent_type=c.AGENT_TYPE.to_proto(agent_type), resource=resource, quota=quota
        )
        response: resources_pb2.SetResourceQuotaResponse = await self._call(
            "SetResourceQuota", self.resources.SetResourceQuota, request, None
        )
        return response.usage

    async def status(self) -> monitoring_pb2.GetStatusResponse:
        return await self._call("GetStatus", self.monitoring.GetStatus, monitoring_pb2.GetStatusRequest(), None)
