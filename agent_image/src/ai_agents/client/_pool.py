"""A pool of gRPC channels to one target, each on its own connections, with calls spread by least in flight.

One grpc.aio channel multiplexes every call over one HTTP/2 connection per backend: one socket, one flow-control
window, the server's limit on concurrent streams; a busy client tops out there. Channels created with the same
arguments share grpcio's global subchannel pool, and with it the connection, so a list of channels alone buys
nothing; each pooled channel gets a subchannel pool of its own (`grpc.use_local_subchannel_pool`) and a distinct
`grpc.channel_id` argument, hence its own connection to every backend.

`ChannelPool` quacks like a grpc.aio.Channel where the generated stubs use one (`unary_unary`, `unary_stream`,
`stream_stream`), so stubs built on it pick a channel per call: the one with the fewest calls in flight, ties
taken in turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from ai_agents.client._channel import ChannelOptions, create_channel
from ai_agents.observability.metrics import CommonMetrics

_CallT = TypeVar("_CallT", bound=grpc.aio.Call)


class ChannelPool:
    """`size` channels to `target`; `in_flight[i]` is the number of calls now running on channel i."""

    def __init__(
        self,
        target: str,
        *,
        size: int = 1,
        options: ChannelOptions | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        metrics: CommonMetrics | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a channel pool needs at least one channel, not {size}")
        self.target = target
        self.channels = [
            create_channel(
                target,
                options=options,
                interceptors=interceptors,
                extra_args=[("grpc.use_local_subchannel_pool", 1), ("grpc.channel_id", index)],
            )
            for index in range(size)
        ]
        for channel in self.channels:
            # Connect now rather than at each channel's first call, so load spreads over every connection at once.
            channel.get_state(try_to_connect=True)
        self.in_flight = [0] * size
        self._next = 0
        self._metrics = metrics
        if metrics is not None:
            metrics.client_pool_channels.labels(target).set(size)
            for index in range(size):
                metrics.client_pool_in_flight.labels(target, str(index)).set(0)

    @property
    def size(self) -> int:
        return len(self.channels)

    def pick(self) -> int:
        """The channel with the fewest calls in flight; among equals, the next in turn (round robin when idle)."""
        size = len(self.channels)
        best = self._next
        for step in range(1, size):
            index = (self._next + step) % size
            if self.in_flight[index] < self.in_flight[best]:
                best = index
        self._next = (best + 1) % size
        return best

    def _track(self, start: Callable[[int], _CallT]) -> _CallT:
        """Start a call on the pick; it counts as in flight until gRPC reports it done (the real call object is
        returned, so callers keep read(), cancel() and metadata)."""
        index = self.pick()
        self._started(index)
        try:
            call = start(index)
        except BaseException:
            self._finished(index)
            raise
        call.add_done_callback(lambda _call: self._finished(index))
        return call

    def _started(self, index: int) -> None:
        self.in_flight[index] += 1
        if self._metrics is not None:
            self._metrics.client_pool_in_flight.labels(self.target, str(index)).inc()

    def _finished(self, index: int) -> None:
        self.in_flight[index] -= 1
        if self._metrics is not None:
            self._metrics.client_pool_in_flight.labels(self.target, str(index)).dec()

    # ---- the part of grpc.aio.Channel that generated stubs use -------------------------------------------

    def unary_unary(self, method: str, **kwargs: Any) -> _PooledMethod:
        return _PooledMethod(self, [channel.unary_unary(method, **kwargs) for channel in self.channels])

    def unary_stream(self, method: str, **kwargs: Any) -> _PooledMethod:
        return _PooledMethod(self, [channel.unary_stream(method, **kwargs) for channel in self.channels])

    def stream_stream(self, method: str, **kwargs: Any) -> _PooledMethod:
        return _PooledMethod(self, [channel.stream_stream(method, **kwargs) for channel in self.channels])

    async def channel_ready(self) -> None:
        """Wait until every channel has connected (bound it with asyncio.wait_for)."""
        await asyncio.gather(*(channel.channel_ready() for channel in self.channels))

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels))
        if self._metrics is not None:
            self._metrics.client_pool_channels.labels(self.target).set(0)


class _PooledMethod:
    """One method on every channel: each call (unary or a stream) runs on the pool's pick and counts as in flight
    on its channel until gRPC reports it done, cancelled included."""

    def __init__(self, pool: ChannelPool, callables: Sequence[Callable[..., grpc.aio.Call]]) -> None:
        self._pool = pool
        self._callables = callables

    def __call__(self, *args: Any, **kwargs: Any) -> grpc.aio.Call:
        return self._pool._track(lambda index: self._callables[index](*args, **kwargs))
