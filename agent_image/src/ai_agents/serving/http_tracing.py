"""A server span per HTTP API request, continuing the caller's trace (W3C `traceparent` header).

What opentelemetry-instrumentation-grpc does for the gRPC server, for aiohttp: without it an HTTP submit would
start no trace, and the task it creates none to join (observability/task_trace.py). Installed only when tracing
is on (serving/http_middleware.py), as the gRPC interceptor is.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry import propagate, trace

from ai_agents.serving.http_routes import Handler, route_label

_tracer = trace.get_tracer(__name__)


def tracing_middleware() -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_label(request)
        # HTTP semantic conventions: "{method} {route}" names the span; the route template keeps names few.
        with _tracer.start_as_current_span(
            f"{request.method} {route}",
            # The configured propagators (W3C trace context and baggage by default), as the gRPC server uses.
            context=propagate.extract(request.headers),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": request.method, "http.route": route, "url.path": request.path},
        ) as span:
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                # A client's error (4xx) is not the server's: only 5xx marks the span failed.
                span.set_status(trace.StatusCode.ERROR)
            return response

    return middleware
