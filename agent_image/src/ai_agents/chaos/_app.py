"""Run the chaos monkey as a process: its rounds plus the health and metrics ports every process has."""

from __future__ import annotations

import asyncio

from ai_agents.chaos._monkey import ChaosMonkey, KubernetesTargets, LocalProcessTargets, Targets
from ai_agents.config import ChaosMonkeyLive, ChaosMonkeySettings
from ai_agents.lifecycle import Lifecycle, run_until_signalled
from ai_agents.live import LiveConfig, live_part
from ai_agents.live.subscribers import follow_log_level
from ai_agents.observability.logs import configure_logging
from ai_agents.observability.metrics import CommonMetrics, new_registry
from ai_agents.observability.servers import health_app, metrics_app
from ai_agents.serving.http_server import HttpServer
from ai_agents.serving.http_transport import HttpLimits


def targets_from_settings(settings: ChaosMonkeySettings) -> Targets:
    """The local fleet's agent processes, or the agent pods of one namespace."""
    if settings.chaos_mode == "local":
        from ai_agents.local.fleet import FleetState, default_state_dir

        state = FleetState.load(default_state_dir())
        if state is None:
            raise SystemExit("no local fleet is running (ai-agents local up)")
        return LocalProcessTargets([(p.agent_id, p.pid) for p in state.agents])
    return KubernetesTargets(
        namespace=settings.chaos_namespace,
        label_selector=settings.chaos_label_selector,
        exclude_label=settings.chaos_exclude_label,
    )


class ChaosMonkeyProcess(Lifecycle):
    """`run()` strikes until `shutdown()` or the configured number of rounds (ai_agents.lifecycle)."""

    def __init__(self, settings: ChaosMonkeySettings, *, targets: Targets | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.metrics = CommonMetrics(new_registry(), "chaos-monkey")
        self.live = LiveConfig(
            live_part(settings, ChaosMonkeyLive),
            path=settings.config_file,
            metrics=self.metrics,
            poll_seconds=settings.config_poll_seconds,
        )
        self.live.subscribe(follow_log_level)
        self.monkey = ChaosMonkey(
            targets if targets is not None else targets_from_settings(settings),
            interval_seconds=settings.chaos_interval_seconds,
            max_per_round=settings.chaos_max_deletions_per_run,
            dry_run=settings.chaos_dry_run,
            max_rounds=settings.chaos_max_rounds,
        )
        self.live.subscribe(lambda _old, new: self.monkey.reconfigure(new))
        self.health: HttpServer | None = None

    async def _ready(self) -> tuple[bool, str]:
        return True, "ok"

    def on_reload_signal(self) -> None:
        self.live.request_reload()

    async def _serve(self, stop: asyncio.Event) -> None:
        s = self.settings
        self.live.load()  # the first round already runs on the file's values
        limits = HttpLimits.from_settings(s)
        # The same health and metrics ports as every other process, so the chart probes it the same way.
        self.health = HttpServer(health_app(self._ready), s.host, s.health_port, limits=limits)
        servers = [self.health, HttpServer(metrics_app(self.metrics.registry), s.host, s.metrics_port, limits=limits)]
        started: list[HttpServer] = []
        started_watch: list[asyncio.Task[None]] = []
        try:
            for server in servers:
                await server.start()
                started.append(server)
            watching = asyncio.create_task(self.live.watch(stop), name="live-config")
            started_watch = [watching]
            await self.monkey.run(stop)
        finally:
            for task in started_watch:
                task.cancel()
            for server in reversed(started):
                await server.stop()


def main() -> int:
    """`ai-agents chaos-monkey`: settings from AI_AGENTS_CHAOS_*; exit status for the shell."""
    settings = ChaosMonkeySettings()
    process = ChaosMonkeyProcess(settings)
    configure_logging(
        component="chaos-monkey",
        level=settings.log_level,
        fmt=settings.log_format,
        counter=process.metrics.log_messages,
    )
    return run_until_signalled(process)
