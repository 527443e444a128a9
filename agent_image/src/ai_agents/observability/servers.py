"""The health (8081) and metrics (9091) apps every process serves (on serving.http_server.HttpServer)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ai_agents.observability.metrics import exposition_registry

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]
# Beyond "the event loop answers": whether the process should be restarted though it answers.
LivenessCheck = Callable[[], tuple[bool, str]]


def health_app(readiness: ReadinessCheck, liveness: LivenessCheck | None = None) -> web.Application:
    """/healthz answers while the event loop runs (and `liveness` holds); /readyz asks the process whether it can
    serve."""

    async def healthz(_request: web.Request) -> web.Response:
        if liveness is not None:
            live, detail = liveness()
            if not live:
                return web.json_response({"status": "failing", "detail": detail}, status=503)
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        ready, detail = await readiness()
        return web.json_response(
            {"status": "ready" if ready else "not ready", "detail": detail}, status=200 if ready else 503
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def metrics_app(registry: CollectorRegistry) -> web.Application:
    exposed = exposition_registry(registry)

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(exposed), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
