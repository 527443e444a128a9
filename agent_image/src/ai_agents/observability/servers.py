"""The health (8081) and metrics (9091) HTTP servers every process runs, and a small runner helper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ai_agents.serving.http_transport import HttpLimits, LimitedTCPSite

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]


class HttpServer:
    """An aiohttp app bound to host:port under `limits` (timeouts, connection cap); port 0 picks a free port,
    reported by `.port` after start."""

    def __init__(self, app: web.Application, host: str, port: int, *, limits: HttpLimits) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._host = host
        self._requested_port = port
        self._limits = limits
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = LimitedTCPSite(self._runner, self._host, self._requested_port, limits=self._limits)
        await site.start()
        self.port = site.port

    async def stop(self) -> None:
        await self._runner.cleanup()


def health_app(readiness: ReadinessCheck) -> web.Application:
    """/healthz answers while the event loop runs; /readyz asks the process whether it can serve."""

    async def healthz(_request: web.Request) -> web.Response:
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
    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
