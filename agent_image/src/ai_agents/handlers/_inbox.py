"""The messages an agent received, as its handlers see them (the agent's message loop fills it)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The newest this many messages are kept; older ones drop out (an inbox is a window, not a store).
INBOX_CAPACITY = 1000


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message addressed to this agent, to its type or to every agent."""

    message_id: int
    sender: str
    topic: str
    body: dict[str, Any]
    recipient_agent_id: str | None = None
    recipient_type: str | None = None
    to_all: bool = False
    created_at: datetime | None = None
    # The task whose completion sent it: a follow-up's parent, for what the parent handed on with it.
    sender_task_id: str | None = None


class Inbox:
    """What the agent received since its message stream opened, oldest first; shared by the tasks it runs."""

    def __init__(self, capacity: int = INBOX_CAPACITY) -> None:
        self._messages: deque[ReceivedMessage] = deque(maxlen=capacity)
        self._arrived = asyncio.Event()
        self.received = 0
        # The id messages are delivered after (the stream's cursor); None until the stream first opened.
        self.cursor: int | None = None

    def add(self, message: ReceivedMessage) -> None:
        self._messages.append(message)
        self.received += 1
        self.cursor = message.message_id
        # Wake every waiter once; each re-checks and, if still unmatched, waits on the next event.
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    def messages(self, *, topic: str | None = None) -> list[ReceivedMessage]:
        """The messages held, oldest first; only those of `topic` when given."""
        return [m for m in self._messages if topic is None or m.topic == topic]

    async def wait_for(self, matches: Callable[[ReceivedMessage], bool], *, timeout: float) -> ReceivedMessage | None:
        """The oldest held message that `matches`, waiting up to `timeout` seconds for one to arrive; else None."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((m for m in self._messages if matches(m)), None)
            remaining = deadline - time.monotonic()
            if found is not None or remaining <= 0:
                return found
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                continue  # one last look before giving up
