"""Task handlers, looked up by name: `simulate` and `llm`; and what a handler sees and hands on."""

from ai_agents.handlers._base import Handler, HandlerError, HandlerResult, TaskContext
from ai_agents.handlers._inbox import Inbox, ReceivedMessage
from ai_agents.handlers._registry import build_handler
from ai_agents.handoff import FollowUp, OutgoingMessage

__all__ = [
    "FollowUp",
    "Handler",
    "HandlerError",
    "HandlerResult",
    "Inbox",
    "OutgoingMessage",
    "ReceivedMessage",
    "TaskContext",
    "build_handler",
]
