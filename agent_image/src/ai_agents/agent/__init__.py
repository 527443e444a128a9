"""The agent runtime: register, heartbeat, lease work of one type, run the handler, report the outcome."""

from ai_agents.agent._app import AgentProcess, main
from ai_agents.agent._worker import AgentWorker

__all__ = ["AgentProcess", "AgentWorker", "main"]
