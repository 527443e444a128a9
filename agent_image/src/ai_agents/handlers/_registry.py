"""Build the handler an agent's settings name."""

from __future__ import annotations

from ai_agents.config import AgentSettings
from ai_agents.handlers._base import Handler
from ai_agents.handlers._llm import LlmHandler
from ai_agents.handlers._simulate import SimulateHandler


def build_handler(settings: AgentSettings) -> Handler:
    if settings.handler == "llm":
        return LlmHandler(
            base_url=settings.llm_base_url,
            model=settings.llm_model,
            api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            timeout_seconds=settings.llm_timeout_seconds,
            max_tokens=settings.llm_max_tokens,
        )
    return SimulateHandler(latency_ms=settings.simulate_latency_ms, failure_rate=settings.simulate_failure_rate)
