"""gRPC servicers of ai_agents.v1: translate messages, call the service, translate back (thin by design)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

import grpc

from ai_agents import convert as c
from ai_agents.domain import AgentState, TaskState
from ai_agents.errors import AiAgentsError, Unavailable
from ai_agents.orchestrator import records_to_proto as p
from ai_agents.orchestrator import validation as v
from ai_agents.orchestrator.batch_item_trace import completion_span, submission_span
from ai_agents.orchestrator.service import OrchestratorService
from ai_agents.serving.identity import CREDENTIAL_METADATA, AgentAuthenticator, AgentIdentity, NoAgentIdentity
from ai_agents.serving.long_calls import LongCalls
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

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]

SERVICE_NAMES = [
    tasks_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
    agents_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    messaging_pb2.DESCRIPTOR.services_by_name["MessagingService"].full_name,
    monitoring_pb2.DESCRIPTOR.services_by_name["MonitoringService"].full_name,
    resources_pb2.DESCRIPTOR.services_by_name["ResourceService"].full_name,
]


def _credential(context: Ctx) -> str | None:
    credential = dict(context.invocation_metadata() or ()).get(CREDENTIAL_METADATA)
    return credential if isinstance(credential, str) else None


async def _caller(authenticator: AgentAuthenticator, context: Ctx) -> AgentIdentity | None:
    """The agent making an agent RPC, from its credential; None when agent identity is off."""
    return await authenticator.authenticate(_credential(context))


def _owner(identity: AgentIdentity | None) -> str | None:
    # With an identity, task operations also require that the caller holds the lease, not just its token.
    return identity.agent_id if identity is not None else None


# A repeated message field costs a tag and a length prefix (at most 1 + 5 bytes) beside the message itself.
_LEASE_FRAMING_BYTES = 6
# Headroom under max_message_bytes for gRPC's own framing of the response.
_RESPONSE_SLACK_BYTES = 1024


class TaskServicer(tasks_pb2_grpc.TaskServiceServicer):
    def __init__(self, service: OrchestratorService, authenticator: AgentAuthenticator) -> None:
        self._s = service
        self._auth = authenticator

    async def SubmitTask(self, request: tasks_pb2.SubmitTaskRequest, context: Ctx) -> tasks_pb2.SubmitTaskResponse:
        return await self._submit(request)

    async def _submit(self, request: tasks_pb2.SubmitTaskRequest) -> tasks_pb2.SubmitTaskResponse:
        task, created = await self._s.submit_task(
            agent_type=c.AGENT_TYPE.to_str(request.agent_type),
            payload=c.struct_to_dict(request.payload),
            idempotency_key=request.idempotency_key,
            priority=request.priority,
            max_attempts=request.max_attempts,
        )
        return tasks_pb2.SubmitTaskResponse(task=p.task_to_proto(task), created=created)

    async def SubmitTasks(self, request: tasks_pb2.SubmitTasksRequest, context: Ctx) -> tasks_pb2.SubmitTasksResponse:
        v.submission_batch(len(request.submissions))
        # Concurrently, so that group commit makes them one statement; each answered as SubmitTask would be.
        outcomes = await asyncio.gather(*(self._submit_one(item) for item in request.submissions))
        outage = next((o for o in outcomes if o.code == grpc.StatusCode.UNAVAILABLE.value[0]), None)
        if outage is not None:
            # A database outage is every submission's: the call answers UNAVAILABLE, which clients retry as they
            # retry SubmitTask. Each submission carries its idempotency key, so one that did commit is answered
            # again on the retry, not created twice.
            raise Unavailable(outage.message)
        return tasks_pb2.SubmitTasksResponse(outcomes=outcomes)

    async def _submit_one(self, item: tasks_pb2.TaskSubmission) -> tasks_pb2.SubmitOutcome:
        with submission_span(traceparent=item.traceparent, tracestate=item.tracestate) as traced:
            try:
                response = await self._submit(item.task)
            except AiAgentsError as exc:
                return tasks_pb2.SubmitOutcome(code=exc.grpc_code.value[0], message=exc.message)
            traced.set_task(response.task.task_id)
        return tasks_pb2.SubmitOutcome(response=response)

    async def GetTask(self, request: tasks_pb2.GetTaskRequest, context: Ctx) -> tasks_pb2.GetTaskResponse:
        return tasks_pb2.GetTaskResponse(task=p.task_to_proto(await self._s.get_task(request.task_id)))

    async def ListTasks(self, request: tasks_pb2.ListTasksRequest, context: Ctx) -> tasks_pb2.ListTasksResponse:
        tasks, token = await self._s.list_tasks(
            agent_type=c.AGENT_TYPE.to_str(request.agent_type),
            state=c.TASK_STATE.to_str(request.state),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return tasks_pb2.ListTasksResponse(tasks=[p.task_to_proto(t) for t in tasks], next_page_token=token or "")

    async def UpdateTaskProgress(
        self, request: tasks_pb2.UpdateTaskProgressRequest, context: Ctx
    ) -> tasks_pb2.UpdateTaskProgressResponse:
        owner = _owner(await _caller(self._auth, context))
        task = await self._s.update_task_progress(
            request.task_id, request.lease_token, progress=request.progress, message=request.message, owner=owner
        )
        return tasks_pb2.UpdateTaskProgressResponse(task=p.task_to_proto(task))

    async def CompleteTask(
        self, request: tasks_pb2.CompleteTaskRequest, context: Ctx
    ) -> tasks_pb2.CompleteTaskResponse:
        owner = _owner(await _caller(self._auth, context))
        task = await self._s.complete_task(
            request.task_id,
            request.lease_token,
            c.struct_to_dict(request.result),
            owner=owner,
            follow_ups=[c.follow_up_of_message(f) for f in request.follow_ups],
            messages=[c.outgoing_message_of_message(m) for m in request.messages],
        )
        return tasks_pb2.CompleteTaskResponse(task=p.task_to_proto(task))

    async def CompleteTasks(
        self, request: tasks_pb2.CompleteTasksRequest, context: Ctx
    ) -> tasks_pb2.CompleteTasksResponse:
        owner = _owner(await _caller(self._auth, context))
        v.completion_batch([completion.task_id for completion in request.completions])
        # Concurrently, so that group commit makes them one statement; each answered as CompleteTask would be.
        outcomes = await asyncio.gather(*(self._complete_one(item, owner) for item in request.completions))
        return tasks_pb2.CompleteTasksResponse(outcomes=outcomes)

    async def _complete_one(self, item: tasks_pb2.TaskCompletion, owner: str | None) -> tasks_pb2.CompletionOutcome:
        with completion_span(task_id=item.task_id, traceparent=item.traceparent, tracestate=item.tracestate):
            try:
                await self._s.complete_task(item.task_id, item.lease_token, c.struct_to_dict(item.result), owner=owner)
            except AiAgentsError as exc:
                code: int = exc.grpc_code.value[0]
                return tasks_pb2.CompletionOutcome(task_id=item.task_id, code=code, message=exc.message)
        # The task itself is not sent back: encoding it was a measurable part of a completion's cost.
        return tasks_pb2.CompletionOutcome(task_id=item.task_id)

    async def FailTask(self, request: tasks_pb2.FailTaskRequest, context: Ctx) -> tasks_pb2.FailTaskResponse:
        owner = _owner(await _caller(self._auth, context))
        task = await self._s.fail_task(
            request.task_id, request.lease_token, error=request.error, retryable=request.retryable, owner=owner
        )
        return tasks_pb2.FailTaskResponse(task=p.task_to_proto(task))

    async def CancelTask(self, request: tasks_pb2.CancelTaskRequest, context: Ctx) -> tasks_pb2.CancelTaskResponse:
        return tasks_pb2.CancelTaskResponse(task=p.task_to_proto(await self._s.cancel_task(request.task_id)))

    async def LeaseTasks(self, request: tasks_pb2.LeaseTasksRequest, context: Ctx) -> tasks_pb2.LeaseTasksResponse:
        identity = await _caller(self._auth, context)
        if identity is not None:
            identity.check(request.agent_id, c.AGENT_TYPE.to_str(request.agent_type))
        wait = request.wait_seconds
        remaining = context.time_remaining()
        if remaining is not None:
            # Answer before the caller's deadline so an empty result is not mistaken for a failure.
            wait = max(0, min(wait, int(remaining) - 1))
        tasks = await self._s.lease_tasks(
            agent_id=request.agent_id,
            agent_type=c.AGENT_TYPE.to_str(request.agent_type),
            max_tasks=request.max_tasks,
            wait_seconds=wait,
        )
        if tasks and context.cancelled():
            # The agent gave up (e.g. it is shutting down): hand the tasks straight back instead of letting
            # their leases run out. A cancel that lands after this check still only delays redelivery.
            for task in tasks:
                await self._s.release_task(task.task_id, task.lease_token or 0, owner=task.lease_owner)
            return tasks_pb2.LeaseTasksResponse()
        leases: list[tasks_pb2.TaskLease] = []
        budget = self._s.max_message_bytes - _RESPONSE_SLACK_BYTES
        for task in tasks:
            try:
                lease = tasks_pb2.TaskLease(
                    task=p.task_to_proto(task),
                    lease_token=task.lease_token or 0,
                    traceparent=task.traceparent or "",
                    tracestate=task.tracestate or "",
                )
            except Exception as exc:  # one task that cannot be encoded must not strand the rest of the batch
                await self._s.fail_undeliverable(task, f"cannot be encoded: {type(exc).__name__}: {exc}")
                continue
            # The response must stay sendable (the server refuses to send past max_message_bytes, and the
            # leases would then expire unseen): what does not fit goes back to the queue at once, and a task
            # that alone cannot fit is failed with the reason.
            size = _LEASE_FRAMING_BYTES + lease.ByteSize()
            if size > budget:
                if leases:
                    await self._s.return_unsent(task)
                else:
                    reason = f"its lease encodes to {size} bytes, over the {budget}-byte message limit"
                    await self._s.fail_undeliverable(task, f"cannot be sent: {reason}")
                continue
            budget -= size
            leases.append(lease)
        return tasks_pb2.LeaseTasksResponse(leases=leases)

    async def ReleaseTask(self, request: tasks_pb2.ReleaseTaskRequest, context: Ctx) -> tasks_pb2.ReleaseTaskResponse:
        owner = _owner(await _caller(self._auth, context))
        task = await self._s.release_task(request.task_id, request.lease_token, owner=owner)
        return tasks_pb2.ReleaseTaskResponse(task=p.task_to_proto(task))


class AgentServicer(agents_pb2_grpc.AgentServiceServicer):
    def __init__(self, service: OrchestratorService, authenticator: AgentAuthenticator, long_calls: LongCalls) -> None:
        self._s = service
        self._auth = authenticator
        self._long_calls = long_calls

    async def CreateAgent(self, request: agents_pb2.CreateAgentRequest, context: Ctx) -> agents_pb2.CreateAgentResponse:
        agent = await self._s.create_agent(
            agent_id=request.agent_id,
            agent_type=c.AGENT_TYPE.to_str(request.agent_type),
            labels=dict(request.labels),
            capacity=request.capacity,
        )
        return agents_pb2.CreateAgentResponse(agent=p.agent_to_proto(agent))

    async def GetAgent(self, request: agents_pb2.GetAgentRequest, context: Ctx) -> agents_pb2.GetAgentResponse:
        return agents_pb2.GetAgentResponse(agent=p.agent_to_proto(await self._s.get_agent(request.agent_id)))

    async def ListAgents(self, request: agents_pb2.ListAgentsRequest, context: Ctx) -> agents_pb2.ListAgentsResponse:
        agents, token = await self._s.list_agents(
            agent_type=c.AGENT_TYPE.to_str(request.agent_type),
            state=c.AGENT_STATE.to_str(request.state),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return agents_pb2.ListAgentsResponse(agents=[p.agent_to_proto(a) for a in agents], next_page_token=token or "")

    async def UpdateAgent(self, request: agents_pb2.UpdateAgentRequest, context: Ctx) -> agents_pb2.UpdateAgentResponse:
        agent = await self._s.update_agent(
            request.agent_id,
            labels=dict(request.labels) if request.update_labels else None,
            capacity=request.capacity or None,
            state=c.AGENT_STATE.to_str(request.state) or None,
        )
        return agents_pb2.UpdateAgentResponse(agent=p.agent_to_proto(agent))

    async def DeleteAgent(self, request: agents_pb2.DeleteAgentRequest, context: Ctx) -> agents_pb2.DeleteAgentResponse:
        await self._s.delete_agent(request.agent_id)
        return agents_pb2.DeleteAgentResponse()

    async def RegisterAgent(
        self, request: agents_pb2.RegisterAgentRequest, context: Ctx
    ) -> agents_pb2.RegisterAgentResponse:
        identity = await _caller(self._auth, context)
        if identity is not None:
            identity.check(request.agent_id, c.AGENT_TYPE.to_str(request.agent_type))
        agent = await self._s.register_agent(
            agent_id=request.agent_id,
            agent_type=c.AGENT_TYPE.to_str(request.agent_type),
            labels=dict(request.labels),
            capacity=request.capacity,
            address=request.address,
            version=request.version,
        )
        return agents_pb2.RegisterAgentResponse(
            agent=p.agent_to_proto(agent),
            heartbeat_interval_seconds=self._s.heartbeat_interval_seconds,
            lease_seconds=self._s.lease_seconds,
        )

    async def DeregisterAgent(
        self, request: agents_pb2.DeregisterAgentRequest, context: Ctx
    ) -> agents_pb2.DeregisterAgentResponse:
        identity = await _caller(self._auth, context)
        if identity is not None:
            identity.check(request.agent_id)
        await self._s.deregister_agent(request.agent_id)
        return agents_pb2.DeregisterAgentResponse()

    async def Heartbeat(self, request: agents_pb2.HeartbeatRequest, context: Ctx) -> agents_pb2.HeartbeatResponse:
        return await self._heartbeat(request, await _caller(self._auth, context))

    async def HeartbeatStream(
        self, request_iterator: AsyncIterator[agents_pb2.HeartbeatStreamRequest], context: Ctx
    ) -> AsyncIterator[agents_pb2.HeartbeatStreamResponse]:
        credential = _credential(context)
        with self._long_calls.ending_at_stop():
            async for request in request_iterator:
                # Checked again for every beat, as a Heartbeat call would be: a stream outlives a revoked token by
                # no more than the authenticator's cache does.
                identity = await self._auth.authenticate(credential)
                answer = await self._heartbeat(request.heartbeat, identity)
                yield agents_pb2.HeartbeatStreamResponse(heartbeat=answer)

    async def _heartbeat(
        self, request: agents_pb2.HeartbeatRequest, identity: AgentIdentity | None
    ) -> agents_pb2.HeartbeatResponse:
        if identity is not None:
            identity.check(request.agent_id)
        revoked, reregister = await self._s.heartbeat(
            request.agent_id,
            leases=[(h.task_id, h.lease_token) for h in request.leases],
            running=request.running,
        )
        return agents_pb2.HeartbeatResponse(
            revoked_task_ids=revoked,
            reregister=reregister,
            # Live settings: agents follow a change at their next heartbeat, without registering again.
            heartbeat_interval_seconds=self._s.heartbeat_interval_seconds,
            lease_seconds=self._s.lease_seconds,
        )


class MessagingServicer(messaging_pb2_grpc.MessagingServiceServicer):
    def __init__(self, service: OrchestratorService, long_calls: LongCalls) -> None:
        self._s = service
        self._long_calls = long_calls

    async def SendMessage(
        self, request: messaging_pb2.SendMessageRequest, context: Ctx
    ) -> messaging_pb2.SendMessageResponse:
        message = await self._s.send_message(
            sender=request.sender,
            recipient_agent_id=request.recipient_agent_id,
            topic=request.topic,
            body=c.struct_to_dict(request.body),
        )
        return messaging_pb2.SendMessageResponse(message=p.message_to_proto(message))

    async def BroadcastMessage(
        self, request: messaging_pb2.BroadcastMessageRequest, context: Ctx
    ) -> messaging_pb2.BroadcastMessageResponse:
        message = await self._s.broadcast_message(
            sender=request.sender,
            agent_type=c.AGENT_TYPE.to_str(request.agent_type) or None,
            topic=request.topic,
            body=c.struct_to_dict(request.body),
        )
        return messaging_pb2.BroadcastMessageResponse(message=p.message_to_proto(message))

    async def ReceiveMessages(
        self, request: messaging_pb2.ReceiveMessagesRequest, context: Ctx
    ) -> AsyncIterator[messaging_pb2.ReceiveMessagesResponse]:
        after = request.after_message_id
        with self._long_calls.ending_at_stop():
            if request.from_now:
                # The first response says the stream is open and where it starts: the caller's cursor from here on.
                after = await self._s.newest_message_id(request.agent_id)
                yield messaging_pb2.ReceiveMessagesResponse(opened_after_message_id=after)
            async for message in self._s.receive_messages(agent_id=request.agent_id, after_message_id=after):
                yield messaging_pb2.ReceiveMessagesResponse(message=p.message_to_proto(message))


class MonitoringServicer(monitoring_pb2_grpc.MonitoringServiceServicer):
    def __init__(self, service: OrchestratorService, orchestrator_id: str) -> None:
        self._s = service
        self._id = orchestrator_id

    async def GetStatus(
        self, request: monitoring_pb2.GetStatusRequest, context: Ctx
    ) -> monitoring_pb2.GetStatusResponse:
        counts, database_ok = await self._s.status()
        return monitoring_pb2.GetStatusResponse(
            version=self._s.version,
            orchestrator_id=self._id,
            database_ok=database_ok,
            types=[
                monitoring_pb2.AgentTypeStatus(
                    agent_type=c.AGENT_TYPE.to_proto(t.agent_type),
                    queued=t.tasks.get(TaskState.QUEUED, 0),
                    leased=t.tasks.get(TaskState.LEASED, 0),
                    succeeded=t.tasks.get(TaskState.SUCCEEDED, 0),
                    failed=t.tasks.get(TaskState.FAILED, 0),
                    cancelled=t.tasks.get(TaskState.CANCELLED, 0),
                    dead_letter=t.tasks.get(TaskState.DEAD_LETTER, 0),
                    agents_active=t.agents.get(AgentState.ACTIVE, 0),
                    agents_draining=t.agents.get(AgentState.DRAINING, 0),
                    agents_stale=t.agents.get(AgentState.STALE, 0),
                )
                for t in counts
            ],
        )


class ResourceServicer(resources_pb2_grpc.ResourceServiceServicer):
    def __init__(self, service: OrchestratorService) -> None:
        self._s = service

    async def AllocateResource(
        self, request: resources_pb2.AllocateResourceRequest, context: Ctx
    ) -> resources_pb2.AllocateResourceResponse:
        allocation = await self._s.allocate_resource(
            agent_id=request.agent_id, resource=request.resource, amount=request.amount
        )
        return resources_pb2.AllocateResourceResponse(allocation=p.allocation_to_proto(allocation))

    async def ReleaseResource(
        self, request: resources_pb2.ReleaseResourceRequest, context: Ctx
    ) -> resources_pb2.ReleaseResourceResponse:
        await self._s.release_resource(request.allocation_id)
        return resources_pb2.ReleaseResourceResponse()

    async def GetResourceUsage(
        self, request: resources_pb2.GetResourceUsageRequest, context: Ctx
    ) -> resources_pb2.GetResourceUsageResponse:
        usage = await self._s.resource_usage(c.AGENT_TYPE.to_str(request.agent_type) or None)
        return resources_pb2.GetResourceUsageResponse(usage=[p.usage_to_proto(u) for u in usage])

    async def SetResourceQuota(
        self, request: resources_pb2.SetResourceQuotaRequest, context: Ctx
    ) -> resources_pb2.SetResourceQuotaResponse:
        usage = await self._s.set_resource_quota(
            agent_type=c.AGENT_TYPE.to_str(request.agent_type), resource=request.resource, quota=request.quota
        )
        return resources_pb2.SetResourceQuotaResponse(usage=p.usage_to_proto(usage))


def servicer_adders(
    service: OrchestratorService,
    orchestrator_id: str,
    authenticator: AgentAuthenticator | None = None,
    long_calls: LongCalls | None = None,
) -> list[Callable[[grpc.aio.Server], None]]:
    agents = authenticator or NoAgentIdentity()
    streams = long_calls if long_calls is not None else LongCalls()
    return [
        lambda s: tasks_pb2_grpc.add_TaskServiceServicer_to_server(TaskServicer(service, agents), s),
        lambda s: agents_pb2_grpc.add_AgentServiceServicer_to_server(AgentServicer(service, agents, streams), s),
        lambda s: messaging_pb2_grpc.add_MessagingServiceServicer_to_server(MessagingServicer(service, streams), s),
        lambda s: monitoring_pb2_grpc.add_MonitoringServiceServicer_to_server(
            MonitoringServicer(service, orchestrator_id), s
        ),
        lambda s: resources_pb2_grpc.add_ResourceServiceServicer_to_server(ResourceServicer(service), s),
    ]
