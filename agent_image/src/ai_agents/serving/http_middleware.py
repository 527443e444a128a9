"""aiohttp middlewares shared by HTTP APIs: tracing, metrics, JSON errors, bearer-token check, body-read deadline."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Middleware

from ai_agents.errors import AiAgentsError
from ai_agents.observability.metrics import CommonMetrics
from ai_agents.observability.tracing import tracing_enabled
from ai_agents.serving.auth import TokenCheck
from ai_agents.serving.http_routes import Handler, route_label
from ai_agents.serving.http_tracing import tracing_middleware

log = logging.getLogger(__name__)


# nginx's "client closed request": the client left before the answer, so it is neither a success nor a server
# error. Counted under this status so the 5xx error-rate SLO is not fed by clients going away.
CLIENT_CLOSED = 499


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _client_closed_response() -> web.Response:
    # Nobody reads it; it exists so the metrics middleware records the request as 499.
    return error_response(CLIENT_CLOSED, "client_closed", "the client closed the connection")


def metrics_middleware(metrics: CommonMetrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            route = route_label(request)
            metrics.http_requests.labels(route, request.method, str(status)).inc()
            metrics.http_duration.labels(route, request.method).observe(time.perf_counter() - started)

    return middleware


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes `{"error": {"code", "message"}}` with the right status; nothing escapes as a 500 page."""
    try:
        return await handler(request)
    except AiAgentsError as exc:
        return error_response(exc.http_status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status, "bad_request")
        return error_response(exc.status, code, exc.reason)
    except Exception as exc:
        # The client leaving mid-request is not our fault; any other ConnectionError (the database refusing) is.
        if isinstance(exc, ConnectionError) and _client_gone(request):
            return _client_closed_response()
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "internal", "internal error")


def auth_middleware(tokens: TokenCheck) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not tokens.allows(request.headers.get("Authorization")):
            return error_response(401, "unauthenticated", "missing or invalid bearer token")
        return await handler(request)

    return middleware


def body_deadline_middleware(timeout_seconds: float) -> Middleware:
    """Read the whole body within `timeout_seconds` of the headers (408 otherwise) before the handler runs.

    After the token check, so an unauthenticated client cannot make us buffer a body. The handler's own
    `request.read()`/`json()` then returns the body aiohttp cached here.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(timeout_seconds):
                    await request.read()
            except TimeoutError:
                response = error_response(
                    408, "request_timeout", f"request body not received within {timeout_seconds:g} s"
                )
                response.force_close()
                return response
            except web.RequestPayloadError:
                if _client_gone(request):
                    return _client_closed_response()
                response = error_response(400, "bad_request", "malformed request body")
                response.force_close()
                return response
            except ConnectionError:
                return _client_closed_response()
        return await handler(request)

    return middleware


def api_application(
    metrics: CommonMetrics, tokens: TokenCheck, *, max_body_bytes: int, body_timeout_seconds: float
) -> web.Application:
    # Outermost, so the span covers the others and records the status they settle on; only when tracing is on
    # (extracting and starting a span costs on every request), as the gRPC server's interceptor.
    tracing = [tracing_middleware()] if tracing_enabled() else []
    return web.Application(
        middlewares=[
            *tracing,
            metrics_middleware(metrics),
            error_middleware,
            auth_middleware(tokens),
            body_deadline_middleware(body_timeout_seconds),
        ],
        client_max_size=max_body_bytes,
    )
