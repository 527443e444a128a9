"""Build the handler an agent's settings name."""

from __future__ import annotations

from ai_agents.config import AgentLive, AgentSettings
from ai_agents.handlers._base import Handler
from ai_agents.handlers._llm import LlmHandler
from ai_agents.handlers._simulate import SimulateHandler


def build_handler(settings: AgentSettings, live: AgentLive | None = None) -> Handler:
    """The handler `settings.handler` names, set up with `live` (default: the settings' own start values)."""
    values: AgentLive = live if live is not None else settings
    if settings.handler == "llm":
        return LlmHandler(
            base_url=settings.llm_base_url,
            model=values.llm_model,
            api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            timeout_seconds=values.llm_timeout_seconds,
            max_tokens=values.llm_max_tokens,
        )
    return SimulateHandler(latency_ms=values.simulate_latency_ms, failure_rate=values.simulate_failure_rate)
