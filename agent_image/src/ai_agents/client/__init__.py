"""Client for the orchestrator's gRPC API: one channel factory, retries, deadlines, a circuit breaker."""

from ai_agents.client._breaker import CircuitBreaker, CircuitOpenError
from ai_agents.client._channel import ChannelOptions, create_channel, resolve_target, service_config
from ai_agents.client._client import OrchestratorClient

__all__ = [
    "ChannelOptions",
    "CircuitBreaker",
    "CircuitOpenError",
    "OrchestratorClient",
    "create_channel",
    "resolve_target",
    "service_config",
]
