"""A gRPC server in front of a real orchestrator that fails unary calls on demand and counts every attempt.

It forwards the request bytes unchanged (no schema: any unary method), so what answers is the orchestrator
itself; only the failures are made here. Streaming methods are not forwarded.
"""

from __future__ import annotations

from typing import Any

import grpc

# Metadata gRPC itself sets on the forwarded call; passing these on would be refused or duplicated.
_TRANSPORT_KEYS = ("user-agent", "grpc-")


class FaultProxy(grpc.GenericRpcHandler):
    """`await FaultProxy.start(backend)`; `fail_next(n)` or `fail_always()`; `attempts` counts every call."""

    def __init__(self, backend: str) -> None:
        self._backend = grpc.aio.insecure_channel(backend)
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((self,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.attempts = 0
        self.failed = 0
        self._fail_remaining = 0
        self._fail_always = False
        self.code = grpc.StatusCode.UNAVAILABLE

    @classmethod
    async def start(cls, backend: str) -> FaultProxy:
        proxy = cls(backend)
        await proxy._server.start()
        return proxy

    def fail_next(self, count: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self._fail_remaining, self.code = count, code

    def fail_always(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self._fail_always, self.code = True, code

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        # No serializers: the request and response stay bytes, whatever the method's messages are.
        forward: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self._backend.unary_unary(handler_call_details.method)

        async def handle(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            self.attempts += 1
            if self._fail_always or self._fail_remaining > 0:
                self._fail_remaining = max(0, self._fail_remaining - 1)
                self.failed += 1
                await context.abort(self.code, "injected by the test's fault proxy")
            metadata = [
                (key, value)
                for key, value in context.invocation_metadata() or ()
                if not key.startswith(_TRANSPORT_KEYS)
            ]
            try:
                response: bytes = await forward(request, metadata=metadata, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
            return response

        return grpc.unary_unary_rpc_method_handler(handle)

    async def stop(self) -> None:
        await self._server.stop(0)
        await self._backend.close()
