"""Client for the orchestrator's gRPC API: one channel factory, a channel pool, retries, deadlines, a breaker."""

from ai_agents.client._breaker import CircuitBreaker, CircuitOpenError
from ai_agents.client._channel import ChannelOptions, create_channel, resolve_target, service_config
from ai_agents.client._client import (
    OrchestratorClient,
    UndecodableLeases,
    UndecodableResponse,
    completion_request,
    submit_request,
)
from ai_agents.client._heartbeats import HeartbeatStream
from ai_agents.client._lenient import LeaseBatch, UndecodableLease
from ai_agents.client._pool import ChannelPool

__all__ = [
    "ChannelOptions",
    "ChannelPool",
    "CircuitBreaker",
    "CircuitOpenError",
    "HeartbeatStream",
    "LeaseBatch",
    "OrchestratorClient",
    "UndecodableLease",
    "UndecodableLeases",
    "UndecodableResponse",
    "completion_request",
    "create_channel",
    "resolve_target",
    "service_config",
    "submit_request",
]
