"""Client for the orchestrator's gRPC API: one channel factory, retries, deadlines, a circuit breaker."""

from ai_agents.client._breaker import CircuitBreaker, CircuitOpenError
from ai_agents.client._channel import ChannelOptions, create_channel, resolve_target, service_config
from ai_agents.client._client import (
    OrchestratorClient,
    UndecodableLeases,
    UndecodableResponse,
    completion_request,
)
from ai_agents.client._lenient import LeaseBatch, UndecodableLease

__all__ = [
    "ChannelOptions",
    "CircuitBreaker",
    "CircuitOpenError",
    "LeaseBatch",
    "OrchestratorClient",
    "UndecodableLease",
    "UndecodableLeases",
    "UndecodableResponse",
    "completion_request",
    "create_channel",
    "resolve_target",
    "service_config",
]
