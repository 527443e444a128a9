"""An agent's heartbeats over one long-lived HeartbeatStream, with the unary Heartbeat whenever the stream cannot.

A unary call costs the orchestrator about three times what a message on an open stream does (gRPC's per-call
work: headers, a new HTTP/2 stream, the interceptor), and a heartbeat is small: with thousands of agents
beating, that per-call work is most of what heartbeats cost. Each beat's answer is still Heartbeat's answer.

Whatever goes wrong with the stream, the beat is not lost: the stream is dropped and that beat goes as a unary
call (with its deadline, retries and circuit breaker), whose answer or error is the caller's; the next beat opens
a new stream. A beat repeated that way is harmless (it records a time and extends leases). An orchestrator that
does not serve the stream (UNIMPLEMENTED: an older one) gets unary calls from then on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc

from ai_agents.client._breaker import CircuitOpenError
from ai_agents.v1 import agents_pb2

if TYPE_CHECKING:
    from ai_agents.client._client import OrchestratorClient

log = logging.getLogger(__name__)


def heartbeat_request(agent_id: str, leases: Sequence[tuple[str, int]], running: int) -> agents_pb2.HeartbeatRequest:
    return agents_pb2.HeartbeatRequest(
        agent_id=agent_id,
        running=running,
        leases=[agents_pb2.HeldLease(task_id=t, lease_token=tok) for t, tok in leases],
    )


class StreamEnded(Exception):
    """The orchestrator closed the stream (it is stopping, or a proxy ended it)."""


class HeartbeatStream:
    """Beats for one client: `await beat(...)` answers as `OrchestratorClient.heartbeat` does. One beat at a time."""

    def __init__(self, client: OrchestratorClient) -> None:
        self._client = client
        self._call: grpc.aio.StreamStreamCall[Any, Any] | None = None
        # The credential the stream was opened with: a rotated one needs a new stream (it is sent once per call).
        self._opened_with: tuple[tuple[str, str], ...] = ()
        self._lock = asyncio.Lock()
        self.unsupported = False
        # Beats answered over the stream and beats that went as unary calls (what tests and operators can read).
        self.streamed = 0
        self.unary = 0

    @property
    def open(self) -> bool:
        return self._call is not None and not self._call.done()

    async def beat(
        self, agent_id: str, leases: Sequence[tuple[str, int]], running: int
    ) -> agents_pb2.HeartbeatResponse:
        request = heartbeat_request(agent_id, leases, running)
        async with self._lock:
            if not self.unsupported:
                try:
                    answer = await self._over_stream(request)
                except asyncio.CancelledError:
                    self._drop()
                    raise
                except (grpc.aio.AioRpcError, TimeoutError, StreamEnded, CircuitOpenError) as exc:
                    self._stream_failed(exc)
                else:
                    self.streamed += 1
                    return answer
            self.unary += 1
            return await self._client.heartbeat_call(request)

    async def close(self) -> None:
        """End the stream as a finished call (the orchestrator sees OK, not a cancellation), within the deadline."""
        async with self._lock:
            call, self._call = self._call, None
            if call is None or call.done():
                return
            try:
                await call.done_writing()
                await asyncio.wait_for(call.code(), self._client.timeout)
            except (grpc.aio.AioRpcError, TimeoutError):
                pass
            finally:
                call.cancel()

    async def _over_stream(self, request: agents_pb2.HeartbeatRequest) -> agents_pb2.HeartbeatResponse:
        call = self._stream()
        await call.write(agents_pb2.HeartbeatStreamRequest(heartbeat=request))
        response = await asyncio.wait_for(call.read(), self._client.timeout)
        if response is grpc.aio.EOF:
            raise StreamEnded("the orchestrator ended the heartbeat stream")
        self._client.breaker.record(grpc.StatusCode.OK)
        assert isinstance(response, agents_pb2.HeartbeatStreamResponse)
        return response.heartbeat

    def _stream(self) -> grpc.aio.StreamStreamCall[Any, Any]:
        metadata = self._client.call_metadata()
        if self._call is not None and (self._call.done() or metadata != self._opened_with):
            self._drop()
        if self._call is None:
            # Only while the circuit is closed: otherwise the beat goes as a unary call, which may be its probe.
            self._client.breaker.before_stream()
            self._call = self._client.agents.HeartbeatStream(metadata=metadata)
            self._opened_with = metadata
        return self._call

    def _drop(self) -> None:
        if self._call is not None:
            self._call.cancel()
        self._call = None

    def _stream_failed(self, exc: Exception) -> None:
        # Not recorded by the circuit breaker: the unary call this beat goes as next records its own outcome, and
        # one beat must not count as two failures.
        self._drop()
        if isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            self.unsupported = True
            log.info("the orchestrator does not serve HeartbeatStream; heartbeats go as unary calls")
            return
        if isinstance(exc, CircuitOpenError):
            return  # no stream was open or opened: expected while the circuit is open (the unary call is refused too)
        log.info("heartbeat stream dropped; this beat goes as a unary call", extra={"error": repr(exc)})
