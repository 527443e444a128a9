"""Agent identity: which agent an agent RPC comes from, proven by a per-agent credential.

The shared API token says "a client of this fleet"; it cannot tell agents apart. Agent RPCs
(register, heartbeat, lease, complete, ...) also carry `x-ai-agents-agent-credential`, checked here:

- `local`: HMAC-SHA256 over the agent type and id with a secret only orchestrators hold; the local
  fleet hands each agent its own credential.
- `kubernetes`: the agent's projected service-account token, checked with a TokenReview; its service
  account gives the agent type and the pod it is bound to gives the agent id.
- `none`: no check (development against an existing database); requests name their agent themselves.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ai_agents.config import OrchestratorSettings
from ai_agents.errors import PermissionDenied, Unauthenticated, Unavailable
from ai_agents.kube_config import load_kubernetes_config

log = logging.getLogger(__name__)

CREDENTIAL_METADATA = "x-ai-agents-agent-credential"
_LOCAL_PREFIX = "aia1"
_POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
_SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    agent_id: str
    agent_type: str

    def check(self, agent_id: str, agent_type: str | None = None) -> None:
        """Refuse a request made in another agent's name (or for another agent type)."""
        # The request's values are echoed cut to the longest valid id: they are not validated yet.
        if agent_id != self.agent_id:
            raise PermissionDenied(f"agent_id {agent_id[:253]!r} is not the agent this credential identifies")
        if agent_type is not None and agent_type != self.agent_type:
            raise PermissionDenied(f"agent_type {agent_type[:64]!r} is not the type this credential identifies")


class AgentAuthenticator(Protocol):
    async def authenticate(self, credential: str | None) -> AgentIdentity | None:
        """The caller's identity; None when identity is off. Raises Unauthenticated for a missing or bad one."""


class NoAgentIdentity:
    """`none`: every caller may act for any agent id (the request's own claim is all there is)."""

    async def authenticate(self, credential: str | None) -> AgentIdentity | None:
        return None


# ---- local: HMAC credentials ---------------------------------------------------------------------------------


def _local_mac(secret: bytes, agent_id: str, agent_type: str) -> str:
    # NUL cannot occur in an agent id or type, so the message is unambiguous.
    message = f"ai-agents agent credential\0{agent_type}\0{agent_id}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def mint_local_credential(secret: str, agent_id: str, agent_type: str) -> str:
    """The credential of one agent under `local` identity: `aia1.<type>.<base64url id>.<mac>`."""
    encoded_id = base64.urlsafe_b64encode(agent_id.encode()).decode().rstrip("=")
    return f"{_LOCAL_PREFIX}.{agent_type}.{encoded_id}.{_local_mac(secret.encode(), agent_id, agent_type)}"


class LocalAgentIdentity:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    async def authenticate(self, credential: str | None) -> AgentIdentity | None:
        if not credential:
            raise Unauthenticated(f"agent RPCs need a per-agent credential in metadata {CREDENTIAL_METADATA!r}")
        parts = credential.split(".")
        if len(parts) != 4 or parts[0] != _LOCAL_PREFIX:
            raise Unauthenticated("the agent credential is malformed")
        _, agent_type, encoded_id, mac = parts
        try:
            agent_id = base64.urlsafe_b64decode(encoded_id + "=" * (-len(encoded_id) % 4)).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise Unauthenticated("the agent credential is malformed") from exc
        # Constant-time: a wrong credential must not reveal how much of its MAC was right.
        if not hmac.compare_digest(mac.encode(), _local_mac(self._secret, agent_id, agent_type).encode()):
            raise Unauthenticated("the agent credential is not valid")
        return AgentIdentity(agent_id, agent_type)


# ---- kubernetes: projected service-account tokens and TokenReview -------------------------------------------

# Reviews a token: returns the TokenReview object as the API server sends it (JSON field names).
TokenReviewer = Callable[[str], Awaitable[Mapping[str, Any]]]


def identity_from_token_review(
    review: Mapping[str, Any], *, audience: str, namespace: str, service_accounts: Mapping[str, str]
) -> AgentIdentity:
    """Map a TokenReview to an agent: the service account gives the type, the pod the token is bound to the id."""
    status = review.get("status") or {}
    if not status.get("authenticated"):
        raise Unauthenticated(f"the agent token was not accepted: {status.get('error') or 'not authenticated'}")
    if audience not in (status.get("audiences") or []):
        raise Unauthenticated(f"the agent token is not issued for audience {audience!r}")
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    prefix = f"system:serviceaccount:{namespace}:"
    if not username.startswith(prefix):
        raise PermissionDenied(f"{username!r} is not a service account of namespace {namespace!r}")
    agent_type = service_accounts.get(username[len(prefix) :])
    if agent_type is None:
        raise PermissionDenied(f"service account {username!r} is not an agent's")
    pod_names = (user.get("extra") or {}).get(_POD_NAME_EXTRA) or []
    if len(pod_names) != 1 or not pod_names[0]:
        raise Unauthenticated("the agent token is not bound to a pod (use a projected service-account token)")
    return AgentIdentity(str(pod_names[0]), agent_type)


def kubernetes_token_reviewer(audience: str, *, timeout: float = 5.0) -> TokenReviewer:
    """A TokenReview through the Kubernetes API (in-cluster config, else the kubeconfig)."""
    from kubernetes import client

    load_kubernetes_config()
    api = client.AuthenticationV1Api()

    def review(token: str) -> Mapping[str, Any]:
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=[audience]))
        result = api.create_token_review(body, _request_timeout=timeout)
        serialized: Mapping[str, Any] = api.api_client.sanitize_for_serialization(result)
        return serialized

    async def review_async(token: str) -> Mapping[str, Any]:
        # The client is synchronous: keep the event loop free while the API server answers.
        return await asyncio.to_thread(review, token)

    return review_async


class KubernetesAgentIdentity:
    """Checks projected tokens with TokenReview; successful reviews are cached briefly by token hash.

    The cache spares the API server one review per agent call. Its bound: an entry lives `cache_seconds`
    (a deleted pod's token is accepted at most that long), and at most `cache_size` entries are kept.
    """

    def __init__(
        self,
        *,
        reviewer: TokenReviewer,
        audience: str,
        namespace: str,
        service_accounts: Mapping[str, str],
        cache_seconds: float = 60.0,
        cache_size: int = 4096,
    ) -> None:
        self._reviewer = reviewer
        self._audience = audience
        self._namespace = namespace
        self._service_accounts = dict(service_accounts)
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._cache: collections.OrderedDict[bytes, tuple[float, AgentIdentity]] = collections.OrderedDict()

    async def authenticate(self, credential: str | None) -> AgentIdentity | None:
        if not credential:
            raise Unauthenticated(f"agent RPCs need the agent's service-account token in {CREDENTIAL_METADATA!r}")
        key = hashlib.sha256(credential.encode()).digest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            review = await self._reviewer(credential)
        except Exception as exc:
            # The API server is unreachable or refused the review: the agent's retry may succeed.
            log.warning("TokenReview failed", extra={"error": repr(exc)})
            raise Unavailable("cannot verify the agent token now (TokenReview failed); retry") from exc
        identity = identity_from_token_review(
            review, audience=self._audience, namespace=self._namespace, service_accounts=self._service_accounts
        )
        self._cache[key] = (now + self._cache_seconds, identity)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return identity


def _own_namespace() -> str:
    try:
        return _SERVICE_ACCOUNT_NAMESPACE_FILE.read_text().strip()
    except OSError as exc:
        raise RuntimeError(
            "agent_identity 'kubernetes' needs AI_AGENTS_AGENT_NAMESPACE outside a pod with a service-account token"
        ) from exc


def build_agent_authenticator(settings: OrchestratorSettings) -> AgentAuthenticator:
    if settings.agent_identity == "local":
        assert settings.agent_identity_secret is not None  # the settings validator requires it
        return LocalAgentIdentity(settings.agent_identity_secret.get_secret_value())
    if settings.agent_identity == "kubernetes":
        return KubernetesAgentIdentity(
            reviewer=kubernetes_token_reviewer(settings.agent_token_audience),
            audience=settings.agent_token_audience,
            namespace=settings.agent_namespace or _own_namespace(),
            service_accounts=settings.agent_service_accounts,
        )
    return NoAgentIdentity()


# ---- the agent's side ----------------------------------------------------------------------------------------


class CredentialFile:
    """A credential kept in a file that may be replaced at any time (the kubelet rotates projected tokens).

    Read again whenever its modification time or size changes, so a rotated token is used at once without
    reading the file on every call.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._value: str | None = None

    def __call__(self) -> str | None:
        try:
            stat = os.stat(self._path)
        except OSError:
            # Not there (yet): call without; the orchestrator answers UNAUTHENTICATED and says why.
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._value = self._path.read_text().strip() or None
            self._stamp = stamp
        return self._value
