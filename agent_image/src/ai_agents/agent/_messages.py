"""The agent's message loop: its ReceiveMessages stream feeds the inbox its handlers read (handlers/_inbox.py).

The first stream opens "from now" (a new agent does not replay the history); after a broken stream it resumes
after the last message it saw, so while the agent runs no message addressed to it is missed or held twice.
Messaging is auxiliary to the work: a stream that fails is opened again after a back-off, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC

from ai_agents import convert as c
from ai_agents.client import OrchestratorClient
from ai_agents.handlers import Inbox, ReceivedMessage
from ai_agents.v1 import messaging_pb2

log = logging.getLogger(__name__)

_MIN_BACKOFF, _MAX_BACKOFF = 0.1, 5.0
# A stream that lasted this long was working when it ended: reopening it needs no back-off.
_HEALTHY_SECONDS = 5.0


def received(message: messaging_pb2.Message) -> ReceivedMessage:
    return ReceivedMessage(
        message_id=message.message_id,
        sender=message.sender,
        topic=message.topic,
        body=c.struct_to_dict(message.body),
        recipient_agent_id=message.recipient_agent_id or None,
        recipient_type=c.AGENT_TYPE.to_str(message.recipient_type) or None,
        to_all=message.to_all,
        created_at=message.created_at.ToDatetime(tzinfo=UTC) if message.HasField("created_at") else None,
        sender_task_id=message.sender_task_id or None,
    )


class MessageLoop:
    def __init__(self, client: OrchestratorClient, agent_id: str, inbox: Inbox) -> None:
        self._client = client
        self._agent_id = agent_id
        self.inbox = inbox
        # True while a stream is open (for /v1/info); the inbox keeps the cursor.
        self.open = False

    async def run(self) -> None:
        """Until cancelled (at shutdown): keep a stream open and hand what it brings to the inbox."""
        delay = _MIN_BACKOFF
        while True:
            started = time.monotonic()
            try:
                await self._follow_stream()
                failure: Exception | None = None  # the server ended the stream (it is stopping)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = exc
            finally:
                self.open = False
            lasted = time.monotonic() - started
            if lasted >= _HEALTHY_SECONDS:
                # A long stream that ends is routine (an orchestrator restarting, a proxy's stream timeout):
                # reopen at once, after the last message seen.
                log.info(
                    "message stream ended; reopening", extra={"after_seconds": round(lasted), "error": repr(failure)}
                )
                delay = _MIN_BACKOFF
                continue
            log.warning("message stream failed; reopening", extra={"error": repr(failure), "in_seconds": delay})
            self._client.record_retry("ReceiveMessages")
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF)

    async def _follow_stream(self) -> None:
        stream = self._client.message_stream(self._agent_id, after_message_id=self.inbox.cursor)
        try:
            # A resumed stream says nothing until a message arrives: it counts as open once asked for.
            self.open = self.inbox.cursor is not None
            async for response in stream:
                if not response.HasField("message"):  # the opening of a stream from now: where it starts
                    self.inbox.cursor = response.opened_after_message_id
                    self.open = True
                    log.info("message stream open", extra={"after_message_id": self.inbox.cursor})
                    continue
                if self.inbox.cursor is not None and response.message.message_id <= self.inbox.cursor:
                    continue  # delivered before the stream broke (at-least-once): held already
                self.inbox.add(received(response.message))
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()
