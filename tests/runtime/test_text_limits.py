"""Every length limit is decided once, in orchestrator/validation.py, and each is either refused or cut, never both."""

from __future__ import annotations

import grpc
import pytest
from ai_agents.agent import _worker
from ai_agents.client import OrchestratorClient
from ai_agents.errors import InvalidArgument
from ai_agents.orchestrator import validation as v

from ._api_support import rpc_error
from ._fleet_support import as_agent
from ._openapi_support import DOCUMENT

REFUSED = {v.IDEMPOTENCY_KEY, v.PAGE_TOKEN, v.LABEL_KEY, v.LABEL_VALUE}
CUT = {v.SENDER, v.TOPIC, v.ADDRESS, v.VERSION, v.PROGRESS_MESSAGE, v.ERROR}


def test_each_limit_is_listed_once_and_refused_or_cut() -> None:
    assert len({limit.field for limit in v.TEXT_LIMITS}) == len(v.TEXT_LIMITS)
    assert {limit for limit in v.TEXT_LIMITS if limit.over is v.OverLimit.REFUSE} == REFUSED
    assert {limit for limit in v.TEXT_LIMITS if limit.over is v.OverLimit.CUT} == CUT


@pytest.mark.parametrize("limit", v.TEXT_LIMITS, ids=lambda limit: limit.field)
def test_text_past_its_limit_is_what_the_limit_says(limit: v.TextLimit) -> None:
    at_limit = "x" * limit.max_chars
    assert v.text(at_limit, limit) == at_limit
    if limit.over is v.OverLimit.REFUSE:
        with pytest.raises(InvalidArgument, match=f"exceeds the limit of {limit.max_chars}"):
            v.text(at_limit + "y", limit)
    else:
        assert v.text(at_limit + "y", limit) == at_limit


def test_identifier_limits_are_the_ones_the_checks_apply() -> None:
    assert v.agent_id("a" * v.MAX_AGENT_ID)
    with pytest.raises(InvalidArgument, match=f"1-{v.MAX_AGENT_ID} characters"):
        v.agent_id("a" * (v.MAX_AGENT_ID + 1))
    assert v.resource_name("r" * v.MAX_RESOURCE_NAME)
    with pytest.raises(InvalidArgument):
        v.resource_name("r" * (v.MAX_RESOURCE_NAME + 1))


def test_the_openapi_document_states_the_same_limits() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert schemas["SubmitTask"]["properties"]["idempotency_key"]["maxLength"] == v.IDEMPOTENCY_KEY.max_chars
    assert schemas["Task"]["properties"]["idempotency_key"]["maxLength"] == v.IDEMPOTENCY_KEY.max_chars
    assert schemas["Agent"]["properties"]["agent_id"]["maxLength"] == v.MAX_AGENT_ID
    assert DOCUMENT["components"]["parameters"]["AgentId"]["schema"]["maxLength"] == v.MAX_AGENT_ID


def test_the_agent_leaves_the_error_limit_to_the_orchestrator() -> None:
    # The agent only makes the text sendable; the orchestrator cuts it at ERROR (a copy of the limit here would
    # drift from the one the orchestrator applies).
    long_error = "e" * (v.ERROR.max_chars * 2)
    assert _worker._sendable(long_error) == long_error
    assert _worker._sendable("nul\x00") == "nul\ufffd"


async def test_the_api_refuses_or_cuts_as_the_limits_say(client: OrchestratorClient) -> None:
    refused = await rpc_error(client.submit_task("coding", {}, idempotency_key="k" * (v.IDEMPOTENCY_KEY.max_chars + 1)))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and "idempotency_key" in (refused.details() or "")

    agent = as_agent(client, "limits-1", "coding")
    registered = await agent.register_agent(
        agent_id="limits-1", agent_type="coding", capacity=1, version="v" * (v.VERSION.max_chars + 5)
    )
    assert registered.agent.version == "v" * v.VERSION.max_chars
    task = (await client.submit_task("coding", {})).task
    (lease,) = await agent.lease_tasks(agent_id="limits-1", agent_type="coding", max_tasks=1, wait_seconds=0)
    failed = await agent.fail_task(task.task_id, lease.lease_token, "e" * (v.ERROR.max_chars * 2), retryable=False)
    assert failed.error == "e" * v.ERROR.max_chars
