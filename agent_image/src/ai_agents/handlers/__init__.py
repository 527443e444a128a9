"""Task handlers, looked up by name: `simulate` and `llm`."""

from ai_agents.handlers._base import Handler, HandlerError, TaskContext
from ai_agents.handlers._registry import build_handler

__all__ = ["Handler", "HandlerError", "TaskContext", "build_handler"]
