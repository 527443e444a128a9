"""Assemble a grpc.aio server: auth and metrics interceptor, error mapping, health, reflection, limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeAlias, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from ai_agents.errors import AiAgentsError, InvalidArgument
from ai_agents.observability.metrics import CommonMetrics
from ai_agents.observability.tracing import tracing_enabled
from ai_agents.serving.auth import TokenCheck
from ai_agents.serving.long_calls import LongCalls

log = logging.getLogger(__name__)

# Health and reflection stay open so probes and grpcurl work without the token.
_OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]
# A string: grpc.RpcMethodHandler is generic only in the stubs, not at run time.
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
# types-grpcio types RpcMethodHandler's behaviours for the sync server; under grpc.aio they are a coroutine
# function and an async generator function that take a grpc.aio.ServicerContext.
_AioUnary: TypeAlias = Callable[[Any, _Ctx], Awaitable[Any]]
_AioStream: TypeAlias = Callable[[Any, _Ctx], AsyncIterator[Any]]
_AioBidi: TypeAlias = Callable[[AsyncIterator[Any], _Ctx], AsyncIterator[Any]]
# opentelemetry-instrumentation-grpc ships py.typed but leaves this factory unannotated: its real signature.
_aio_server_interceptor: Callable[[], grpc.aio.ServerInterceptor] = aio_server_interceptor


class _Undecodable:
    """Stands in for a request whose bytes are not a valid message, so the handler wrapper can refuse it.

    grpc.aio deserializes before any handler or interceptor code runs and turns a failure into UNKNOWN with the
    exception's class name; returning this marker instead moves the failure to where we map errors.
    """

    __slots__ = ()


_UNDECODABLE = _Undecodable()


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:
            # Whatever the bytes are (truncated, wrong wire type, nested past protobuf's limit), the fault is the
            # caller's: an INVALID_ARGUMENT below, not a server error.
            return _UNDECODABLE

    return deserialize


def _refuse_undecodable(request: Any, method: str) -> None:
    if request is _UNDECODABLE:
        raise InvalidArgument(f"the request to {method} is not a valid protobuf message")


async def _decoded(requests: AsyncIterator[Any], method: str) -> AsyncIterator[Any]:
    """A request stream that raises at the first undecodable message (the servicer's loop passes it on)."""
    async for request in requests:
        _refuse_undecodable(request, method)
        yield request


class ApiInterceptor(grpc.aio.ServerInterceptor):
    """Checks the bearer token, turns typed errors into status codes, and records count and latency."""

    def __init__(self, metrics: CommonMetrics, tokens: TokenCheck) -> None:
        self._metrics = metrics
        self._tokens = tokens
        # Wrapped handlers are built once per (method, authorized) and reused: this runs on every call.
        self._wrapped: dict[tuple[str, bool], _Handler] = {}

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(_OPEN_PREFIXES):
            return True
        value = dict(details.invocation_metadata or ()).get("authorization")
        return self._tokens.allows(value if isinstance(value, str) else None)

    def _record(self, method: str, code: grpc.StatusCode, started: float) -> None:
        self._metrics.grpc_requests.labels(method, code.name).inc()
        self._metrics.grpc_duration.labels(method).observe(time.perf_counter() - started)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        method = handler_call_details.method
        authorized = self._authorized(handler_call_details)
        wrapped = self._wrapped.get((method, authorized))
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None  # an unknown method: no series named after whatever a client sent
            wrapped = self._wrap(handler, method, authorized)
            self._wrapped[(method, authorized)] = wrapped
            # The retry series of a served method starts at zero, so rate() sees its first retry.
            self._metrics.grpc_retried.labels(method)
        metadata = dict(handler_call_details.invocation_metadata or ())
        if metadata.get("grpc-previous-rpc-attempts") not in (None, "0"):
            self._metrics.grpc_retried.labels(method).inc()
        return wrapped

    def _wrap(self, handler: _Handler, method: str, authorized: bool) -> _Handler:
        """Wrap a servicer method: token check first, then one outcome per call, recorded and mapped to a status."""
        if handler.unary_unary:
            inner_unary = cast("_AioUnary", handler.unary_unary)

            async def unary(request: Any, context: _Ctx) -> Any:
                async with self._served(method, authorized, context):
                    _refuse_undecodable(request, method)
                    return await inner_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            inner_stream = cast("_AioStream", handler.unary_stream)

            async def stream(request: Any, context: _Ctx) -> AsyncIterator[Any]:
                async with self._served(method, authorized, context):
                    _refuse_undecodable(request, method)
                    async for response in inner_stream(request, context):
                        yield response

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:  # server reflection: ours serve no client-streaming methods
            inner_bidi = cast("_AioBidi", handler.stream_stream)

            async def bidi(requests: AsyncIterator[Any], context: _Ctx) -> AsyncIterator[Any]:
                async with self._served(method, authorized, context):
                    async for response in inner_bidi(_decoded(requests, method), context):
                        yield response

            return grpc.stream_stream_rpc_method_handler(
                bidi,
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    @contextlib.asynccontextmanager
    async def _served(self, method: str, authorized: bool, context: _Ctx) -> AsyncIterator[None]:
        started = time.perf_counter()
        try:
            if not authorized:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
            yield
        except AiAgentsError as exc:
            self._record(method, exc.grpc_code, started)
            await context.abort(exc.grpc_code, exc.message)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            code = context.code()
            self._record(method, code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.CANCELLED, started)
            raise
        except Exception:
            # A bug, not bad input: log it whole, tell the caller nothing about internals.
            log.exception("unhandled error", extra={"method": method})
            self._record(method, grpc.StatusCode.INTERNAL, started)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        else:
            code = context.code()
            self._record(method, code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.OK, started)


class GrpcServer:
    """A started grpc.aio server with health and reflection; `port` is the bound port."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        metrics: CommonMetrics,
        tokens: TokenCheck,
        max_message_bytes: int,
        add_servicers: Iterable[Callable[[grpc.aio.Server], None]],
        service_names: Iterable[str],
        long_calls: LongCalls | None = None,
    ) -> None:
        # The streams the servicers hold open: ended when the server stops, not after its grace.
        self.long_calls = long_calls if long_calls is not None else LongCalls()
        # Trace extraction costs CPU on every call: only when tracing is configured.
        tracing_interceptors = [_aio_server_interceptor()] if tracing_enabled() else []
        self.server = grpc.aio.server(
            interceptors=[*tracing_interceptors, ApiInterceptor(metrics, tokens)],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                # Let idle clients keep connections open through load balancers.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                # SO_REUSEPORT (gRPC's default on Linux, stated because serving processes share the port on it:
                # orchestrator/processes.py).
                ("grpc.so_reuseport", 1),
            ],
        )
        for add in add_servicers:
            add(self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names = list(service_names)
        reflection.enable_server_reflection(
            [
                *self._service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        self.port = self.server.add_insecure_port(f"{host}:{port}")

    async def start(self) -> None:
        await self.server.start()

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self._service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.set_serving(False)
        stopping = asyncio.ensure_future(self.server.stop(grace))
        # One turn of the loop: the server refuses new calls from its first step, so a stream ended below is not
        # opened again here, and the calls left for the grace are the short ones.
        await asyncio.sleep(0)
        ended = self.long_calls.end_all()
        if ended:
            log.info("ended open streams at stop", extra={"streams": ended})
        await stopping
