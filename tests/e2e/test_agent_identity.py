"""Agent identity on a cluster: only tokens of the agents' own pods act as agents (agentIdentity.mode kubernetes).

The tokens come from the TokenRequest API, the same API the kubelet uses for the agents' projected volumes:
one for a service account that is no agent's, one for an agent's service account but bound to no pod, one
for the wrong audience. Each is refused on RegisterAgent and LeaseTasks, while the real agents keep working.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import grpc
import pytest
from _kube import PortForward, round_robin_ready_pod
from ai_agents.serving.identity import CREDENTIAL_METADATA
from ai_agents.v1 import agents_pb2, agents_pb2_grpc, common_pb2, tasks_pb2, tasks_pb2_grpc
from waits import eventually

pytestmark = pytest.mark.cluster

NOT_AN_AGENT = "e2e-not-an-agent"


def _token(release, service_account: str, audience: str) -> str:
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[audience], expiration_seconds=600)
    )
    response = release.kube.core.create_namespaced_service_account_token(service_account, release.namespace, request)
    return str(response.status.token)


@contextlib.contextmanager
def _grpc_channel(release) -> Iterator[grpc.Channel]:
    pick = round_robin_ready_pod(release.kube, release.namespace, release.selector("orchestrator"))
    with PortForward(release.kube, release.namespace, pick, 9090) as forward:
        channel = grpc.insecure_channel(f"127.0.0.1:{forward.local_port}")
        try:
            yield channel
        finally:
            channel.close()


def _identity_mode(release) -> str:
    """AI_AGENTS_AGENT_IDENTITY of the release's orchestrator Deployment (`none` when unset)."""
    for obj in release.objects:
        if obj.get("kind") == "Deployment" and obj["metadata"]["name"] == f"{release.prefix}-orchestrator":
            for env in obj["spec"]["template"]["spec"]["containers"][0].get("env", []):
                if env["name"] == "AI_AGENTS_AGENT_IDENTITY":
                    return str(env.get("value"))
    return "none"


@pytest.fixture
def not_an_agent(release) -> Iterator[str]:
    from kubernetes import client

    body = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=NOT_AN_AGENT))
    release.kube.core.create_namespaced_service_account(release.namespace, body)
    try:
        yield NOT_AN_AGENT
    finally:
        release.kube.core.delete_namespaced_service_account(NOT_AN_AGENT, release.namespace)


def test_only_agent_pods_tokens_act_as_agents(release, not_an_agent: str, e2e_note) -> None:
    if _identity_mode(release) != "kubernetes":
        pytest.skip("the release under test does not run agentIdentity.mode kubernetes")
    api_token = release.token()
    user = (("authorization", f"Bearer {api_token}"),) if api_token else ()
    presented = {
        "not an agent's service account": (
            _token(release, not_an_agent, "ai-agents"),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        "an agent's service account, bound to no pod": (
            _token(release, f"{release.prefix}-agent-coding", "ai-agents"),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        "the Kubernetes API's audience": (
            _token(release, not_an_agent, "https://kubernetes.default.svc"),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        "no credential": ("", grpc.StatusCode.UNAUTHENTICATED),
    }
    agent_id = f"intruder-{uuid.uuid4().hex[:8]}"
    with _grpc_channel(release) as channel:
        agents = agents_pb2_grpc.AgentServiceStub(channel)
        tasks = tasks_pb2_grpc.TaskServiceStub(channel)
        for what, (token, expected) in presented.items():
            metadata = user + (((CREDENTIAL_METADATA, token),) if token else ())
            for name, call in (
                (
                    "RegisterAgent",
                    lambda m=metadata: agents.RegisterAgent(
                        agents_pb2.RegisterAgentRequest(agent_id=agent_id, agent_type=common_pb2.AGENT_TYPE_CODING),
                        metadata=m,
                        timeout=20,
                    ),
                ),
                (
                    "LeaseTasks",
                    lambda m=metadata: tasks.LeaseTasks(
                        tasks_pb2.LeaseTasksRequest(agent_id=agent_id, agent_type=common_pb2.AGENT_TYPE_CODING),
                        metadata=m,
                        timeout=20,
                    ),
                ),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    call()
                code = refused.value.code()  # type: ignore[attr-defined]
                assert code == expected, f"{name} with {what}: {code} {refused.value.details()}"  # type: ignore[attr-defined]
                e2e_note(f"{name} with {what}: {code.name}")

    # The real agents, with their pods' projected tokens, still register and run tasks.
    with release.orchestrator_api() as api:
        assert agent_id not in {a["agent_id"] for a in api.list_agents()}
        submitted = api.submit("coding", {"e2e": "agent-identity"})
        eventually(
            lambda: api.task(submitted["task_id"]),
            lambda task: task["state"] == "succeeded",
            timeout_sec=120,
            expectation="a coding task submitted after the refused calls succeeds",
        )
