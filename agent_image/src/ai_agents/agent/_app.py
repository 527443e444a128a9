"""Run one agent process: the worker plus the four ports every service has."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ai_agents.agent._worker import AgentWorker
from ai_agents.client import OrchestratorClient
from ai_agents.client._client import AgentCredential
from ai_agents.config import AgentLive, AgentSettings
from ai_agents.handlers import build_handler
from ai_agents.lifecycle import Lifecycle, run_until_signalled
from ai_agents.live import LiveConfig, live_part
from ai_agents.live.subscribers import follow_log_level
from ai_agents.observability.logs import configure_logging
from ai_agents.observability.metrics import AgentMetrics, new_registry
from ai_agents.observability.servers import health_app, metrics_app
from ai_agents.observability.tracing import configure_tracing
from ai_agents.serving.auth import TokenCheck
from ai_agents.serving.grpc_server import GrpcServer
from ai_agents.serving.http_middleware import api_application
from ai_agents.serving.http_server import HttpServer
from ai_agents.serving.http_transport import HttpLimits
from ai_agents.serving.identity import CredentialFile

log = logging.getLogger(__name__)


def agent_credential(settings: AgentSettings) -> AgentCredential | None:
    """The credential this agent proves its identity with: a (rotating) file, a fixed value, or none."""
    if settings.agent_credential_file is not None:
        return CredentialFile(settings.agent_credential_file)
    if settings.agent_credential is not None:
        value = settings.agent_credential.get_secret_value()
        return lambda: value
    return None


class AgentProcess(Lifecycle):
    """Owns the worker and its servers; `run()` returns after a graceful shutdown (ai_agents.lifecycle)."""

    def __init__(self, settings: AgentSettings, metrics: AgentMetrics | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.metrics = metrics or AgentMetrics(new_registry(), settings.agent_type)
        self.live = LiveConfig(
            live_part(settings, AgentLive),
            path=settings.config_file,
            metrics=self.metrics,
            poll_seconds=settings.config_poll_seconds,
            agent_type=settings.agent_type,
        )
        self.live.subscribe(follow_log_level)
        self.worker: AgentWorker | None = None
        self._servers: list[HttpServer] = []
        self.grpc: GrpcServer | None = None

    async def _readiness(self) -> tuple[bool, str]:
        if self.worker is None or not self.worker.registered.is_set():
            return False, "not registered with the orchestrator"
        return True, "ok"

    def _info_app(self, tokens: TokenCheck) -> web.Application:
        app = api_application(
            self.metrics,
            tokens,
            max_body_bytes=self.settings.max_message_bytes,
            body_timeout_seconds=self.settings.http_body_timeout_seconds,
        )

        async def info(_request: web.Request) -> web.Response:
            return web.json_response(self.worker.info() if self.worker else {})

        app.router.add_get("/v1/info", info)
        return app

    def on_reload_signal(self) -> None:
        self.live.request_reload()

    async def _serve(self, stop: asyncio.Event) -> None:
        s = self.settings
        # Before the handler and the worker exist, so that they start on the file's values.
        self.live.load()
        token = s.api_token.get_secret_value() if s.api_token else None
        tokens = TokenCheck(token)
        client = await OrchestratorClient.connect(
            s.orchestrator_target,
            token=token,
            metrics=self.metrics,
            channels=s.orchestrator_channels,
            agent_credential=agent_credential(s),
        )
        handler = build_handler(s, self.live.current)
        self.live.subscribe(lambda _old, new: handler.reconfigure(new))
        self.worker = AgentWorker(settings=s, live=self.live, client=client, handler=handler, metrics=self.metrics)
        watching = asyncio.create_task(self.live.watch(stop), name="live-config")
        if stop.is_set():  # asked while connecting
            self.worker.shutdown()
        limits = HttpLimits.from_settings(s)
        health = HttpServer(health_app(self._readiness), s.host, s.health_port, limits=limits)
        metrics = HttpServer(metrics_app(self.metrics.registry), s.host, s.metrics_port, limits=limits)
        info = HttpServer(self._info_app(tokens), s.host, s.http_port, limits=limits)
        self.grpc = GrpcServer(
            host=s.host,
            port=s.grpc_port,
            metrics=self.metrics,
            tokens=tokens,
            max_message_bytes=s.max_message_bytes,
            add_servicers=[],
            service_names=[],
        )
        try:
            for server in (health, metrics, info):
                await server.start()
                self._servers.append(server)
            await self.grpc.start()
            await self.grpc.set_serving(True)
            log.info(
                "agent starting",
                extra={
                    "agent_id": s.agent_id,
                    "agent_type": s.agent_type,
                    "handler": s.handler,
                    "target": s.orchestrator_target,
                    "channels": s.orchestrator_channels,
                },
            )
            await self.worker.run()
        finally:
            watching.cancel()
            if self.grpc is not None:
                await self.grpc.stop(1.0)
            for server in reversed(self._servers):
                await server.stop()
            await handler.close()
            await client.close()
            log.info("agent stopped", extra={"agent_id": s.agent_id})

    def _on_shutdown(self) -> None:
        if self.worker is not None:
            self.worker.shutdown()


def main() -> int:
    """`ai-agents agent`: settings from AI_AGENTS_* (the agent type included); exit status for the shell."""
    settings = AgentSettings()
    process = AgentProcess(settings)
    configure_logging(
        component=f"agent-{settings.agent_type}",
        level=settings.log_level,
        fmt=settings.log_format,
        counter=process.metrics.log_messages,
        # Every line of an agent names it: one process is one agent.
        fields={"agent_id": settings.agent_id, "agent_type": settings.agent_type},
    )
    configure_tracing(f"ai-agents-agent-{settings.agent_type}")
    return run_until_signalled(process)
