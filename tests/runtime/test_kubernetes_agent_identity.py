"""Agent identity `kubernetes` without a cluster: TokenReview answers as the API server gives them -> an agent.

tests/e2e/test_agent_identity.py checks the same against a real API server; this file pins the mapping rules
(service account -> type, bound pod -> id, audience, namespace), the review cache and the agent's token file.
The review answers are built with the kubernetes client's own models and serialized by its ApiClient, exactly
as `kubernetes_token_reviewer` hands them on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from ai_agents.errors import PermissionDenied, Unauthenticated, Unavailable
from ai_agents.serving.identity import (
    AgentIdentity,
    CredentialFile,
    KubernetesAgentIdentity,
    identity_from_token_review,
)
from kubernetes import client

NAMESPACE = "ai-agents"
AUDIENCE = "ai-agents"
SERVICE_ACCOUNTS = {"ai-agents-agent-coding": "coding", "ai-agents-agent-testing": "testing"}
POD = "ai-agents-agent-coding-7d9c8b6f5-x2x4q"


def review(
    *,
    authenticated: bool = True,
    username: str = f"system:serviceaccount:{NAMESPACE}:ai-agents-agent-coding",
    audiences: list[str] | None = None,
    pod: str | None = POD,
    error: str | None = None,
) -> Mapping[str, Any]:
    """A TokenReview as the API server answers it for a projected token (bound to a pod when `pod` is set)."""
    extra = {
        "authentication.kubernetes.io/credential-id": ["JTI=4f1c7a0e-2b8e-4a4e-9d5c-0e6c1f1c2d3e"],
        "authentication.kubernetes.io/node-name": ["kind-control-plane"],
    }
    if pod is not None:
        extra["authentication.kubernetes.io/pod-name"] = [pod]
        extra["authentication.kubernetes.io/pod-uid"] = ["0b6f4c2e-8d7a-4c55-9a36-5d4b8e0f3a21"]
    status = (
        client.V1TokenReviewStatus(
            authenticated=True,
            audiences=audiences if audiences is not None else [AUDIENCE],
            user=client.V1UserInfo(
                username=username,
                uid="5c4a1e9b-5a0c-4f8e-8f7d-2a3b4c5d6e7f",
                groups=["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}", "system:authenticated"],
                extra=extra,
            ),
        )
        if authenticated
        else client.V1TokenReviewStatus(user=client.V1UserInfo(), error=error or "[invalid bearer token]")
    )
    body = client.V1TokenReview(
        api_version="authentication.k8s.io/v1",
        kind="TokenReview",
        spec=client.V1TokenReviewSpec(token="redacted", audiences=[AUDIENCE]),
        status=status,
    )
    serialized: Mapping[str, Any] = client.ApiClient().sanitize_for_serialization(body)
    return serialized


def identify(answer: Mapping[str, Any]) -> AgentIdentity:
    return identity_from_token_review(answer, audience=AUDIENCE, namespace=NAMESPACE, service_accounts=SERVICE_ACCOUNTS)


def test_an_agent_pods_token_names_its_pod_and_type() -> None:
    assert identify(review()) == AgentIdentity(POD, "coding")
    testing = review(username=f"system:serviceaccount:{NAMESPACE}:ai-agents-agent-testing", pod="t-1")
    assert identify(testing) == AgentIdentity("t-1", "testing")


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        pytest.param(review(authenticated=False, error="token expired"), Unauthenticated, "token expired", id="denied"),
        pytest.param(review(audiences=["https://kubernetes.default.svc"]), Unauthenticated, "audience", id="audience"),
        pytest.param(review(pod=None), Unauthenticated, "not bound to a pod", id="unbound"),
        pytest.param(
            review(username=f"system:serviceaccount:{NAMESPACE}:default"), PermissionDenied, "not an agent", id="not-sa"
        ),
        pytest.param(
            review(username="system:serviceaccount:other:ai-agents-agent-coding"),
            PermissionDenied,
            "namespace",
            id="other-namespace",
        ),
        pytest.param(review(username="jane@example.com"), PermissionDenied, "not a service account", id="a-user"),
    ],
)
def test_other_tokens_are_refused(answer: Mapping[str, Any], error: type[Exception], words: str) -> None:
    with pytest.raises(error) as refused:
        identify(answer)
    assert words in str(refused.value)


class Reviews:
    """Stands in for the API server's TokenReview endpoint: answers per token, counts the reviews."""

    def __init__(self, answers: Mapping[str, Mapping[str, Any] | Exception]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, token: str) -> Mapping[str, Any]:
        self.calls.append(token)
        answer = self.answers[token]
        if isinstance(answer, Exception):
            raise answer
        return answer


def authenticator(reviews: Reviews, **kwargs: Any) -> KubernetesAgentIdentity:
    return KubernetesAgentIdentity(
        reviewer=reviews, audience=AUDIENCE, namespace=NAMESPACE, service_accounts=SERVICE_ACCOUNTS, **kwargs
    )


async def test_successful_reviews_are_cached_bounded_and_failures_are_not() -> None:
    reviews = Reviews(
        {
            "a": review(pod="a"),
            "b": review(pod="b"),
            "c": review(pod="c"),
            "bad": review(authenticated=False),
            "down": ConnectionError("API server unreachable"),
        }
    )
    check = authenticator(reviews, cache_size=2)
    assert await check.authenticate("a") == AgentIdentity("a", "coding")
    assert await check.authenticate("a") == AgentIdentity("a", "coding")
    assert reviews.calls == ["a"], "a second call within the TTL is answered from the cache"
    await check.authenticate("b")
    await check.authenticate("c")
    await check.authenticate("a")
    assert reviews.calls == ["a", "b", "c", "a"], "the cache holds at most cache_size tokens (oldest out)"
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await check.authenticate("bad")
    assert reviews.calls.count("bad") == 2, "a refusal is never cached"
    with pytest.raises(Unavailable):
        await check.authenticate("down")
    with pytest.raises(Unauthenticated):
        await check.authenticate(None)

    expiring = authenticator(reviews, cache_seconds=0)
    await expiring.authenticate("a")
    await expiring.authenticate("a")
    assert reviews.calls.count("a") == 4, "past its TTL an entry is reviewed again"


def test_the_agent_rereads_its_token_when_the_kubelet_rotates_it(tmp_path: Path) -> None:
    # The kubelet swaps the projected file atomically (a new file renamed into place); we do the same.
    token_file = tmp_path / "token"
    credential = CredentialFile(token_file)
    assert credential() is None, "no file yet: no credential"
    token_file.write_text("first-token\n")
    assert credential() == "first-token"
    assert credential() == "first-token"
    rotated = tmp_path / "token.new"
    rotated.write_text("second-token-after-rotation")
    os.replace(rotated, token_file)
    assert credential() == "second-token-after-rotation"
