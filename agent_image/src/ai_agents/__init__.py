"""ai-agents runtime: orchestrator, agents, client and CLI for the ai-agents platform."""

__version__ = "0.1.0"
