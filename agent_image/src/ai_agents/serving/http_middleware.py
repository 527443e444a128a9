"""aiohttp middlewares shared by HTTP APIs: metrics, JSON errors, bearer-token check."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ai_agents.errors import AiAgentsError
from ai_agents.observability.metrics import CommonMetrics
from ai_agents.serving.auth import TokenCheck

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    # The route template, not the raw path, keeps label cardinality bounded.
    return resource.canonical if resource is not None else "unmatched"


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
            route = _route_label(request)
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
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "internal", "internal error")


def auth_middleware(tokens: TokenCheck) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not tokens.allows(request.headers.get("Authorization")):
            return error_response(401, "unauthenticated", "missing or invalid bearer token")
        return await handler(request)

    return middleware


def api_application(metrics: CommonMetrics, tokens: TokenCheck, *, max_body_bytes: int) -> web.Application:
    return web.Application(
        middlewares=[metrics_middleware(metrics), error_middleware, auth_middleware(tokens)],
        client_max_size=max_body_bytes,
    )
