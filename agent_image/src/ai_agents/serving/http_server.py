"""The HTTP server every process runs its aiohttp apps on, beside the gRPC server (grpc_server.py)."""

from __future__ import annotations

from aiohttp import web

from ai_agents.serving.http_transport import HttpLimits, LimitedTCPSite


class HttpServer:
    """An aiohttp app bound to host:port under `limits` (timeouts, connection cap); port 0 picks a free port,
    reported by `.port` after start."""

    def __init__(
        self, app: web.Application, host: str, port: int, *, limits: HttpLimits, shared_port: bool = False
    ) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._host = host
        self._requested_port = port
        self._limits = limits
        self._shared_port = shared_port
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = LimitedTCPSite(
            self._runner, self._host, self._requested_port, limits=self._limits, shared_port=self._shared_port
        )
        await site.start()
        self.port = site.port

    async def stop(self) -> None:
        await self._runner.cleanup()
