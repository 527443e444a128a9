"""Chaos monkey rounds: pick victims among eligible targets, honour exclusions and dry-run, stop when bounded."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from ai_agents.config import ChaosMonkeyLive
from ai_agents.kube_config import load_kubernetes_config

if TYPE_CHECKING:
    from kubernetes.client import V1ObjectMeta, V1PodStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Victim:
    name: str
    # Kubernetes pod namespace, or "local" for a process.
    scope: str
    pid: int = 0


class Targets(Protocol):
    async def eligible(self) -> list[Victim]: ...

    async def strike(self, victim: Victim) -> None: ...


class KubernetesTargets:
    """Pods matching a label selector in one namespace (the Role allows nothing wider), minus exempt ones."""

    def __init__(self, *, namespace: str, label_selector: str, exclude_label: str) -> None:
        from kubernetes import client

        load_kubernetes_config()
        self._api = client.CoreV1Api()
        self._namespace = namespace
        self._selector = label_selector
        self._exclude = exclude_label

    async def eligible(self) -> list[Victim]:
        pods = await asyncio.to_thread(self._api.list_namespaced_pod, self._namespace, label_selector=self._selector)
        victims: list[Victim] = []
        for pod in pods.items:
            # The models make every field optional; a listed pod always has metadata, a name and a status.
            meta = cast("V1ObjectMeta", pod.metadata)
            status = cast("V1PodStatus", pod.status)
            if (
                (meta.labels or {}).get(self._exclude) != "true"
                and status.phase == "Running"
                and meta.deletion_timestamp is None
            ):
                victims.append(Victim(cast(str, meta.name), self._namespace))
        return victims

    async def strike(self, victim: Victim) -> None:
        await asyncio.to_thread(self._api.delete_namespaced_pod, victim.name, victim.scope)


class LocalProcessTargets:
    """Agent processes of the local fleet, killed with SIGKILL (no graceful shutdown: leases must expire)."""

    def __init__(self, processes: Sequence[tuple[str, int]]) -> None:
        self._processes = list(processes)

    async def eligible(self) -> list[Victim]:
        alive = []
        for name, pid in self._processes:
            try:
                os.kill(pid, 0)
            except OSError:
                continue
            alive.append(Victim(name, "local", pid))
        return alive

    async def strike(self, victim: Victim) -> None:
        os.kill(victim.pid, signal.SIGKILL)


class ChaosMonkey:
    def __init__(
        self,
        targets: Targets,
        *,
        interval_seconds: float,
        max_per_round: int,
        dry_run: bool,
        max_rounds: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self._targets = targets
        self._interval = interval_seconds
        self._max_per_round = max_per_round
        self._dry_run = dry_run
        self._max_rounds = max_rounds
        self._rng = rng or random.Random()
        self._rescheduled = asyncio.Event()
        self.struck: list[Victim] = []

    def reconfigure(self, live: ChaosMonkeyLive) -> None:
        """Take new live settings; a new interval counts from the last round, not from the next one."""
        self._max_per_round = live.chaos_max_deletions_per_run
        self._dry_run = live.chaos_dry_run
        if live.chaos_interval_seconds != self._interval:
            self._interval = live.chaos_interval_seconds
            self._rescheduled.set()

    async def round(self) -> list[Victim]:
        eligible = await self._targets.eligible()
        victims = self._rng.sample(eligible, min(self._max_per_round, len(eligible)))
        for victim in victims:
            if self._dry_run:
                log.info("dry run: would strike", extra={"victim": victim.name, "scope": victim.scope})
                continue
            log.warning("striking", extra={"victim": victim.name, "scope": victim.scope})
            await self._targets.strike(victim)
            self.struck.append(victim)
        return victims

    async def _wait_for_round(self, stop: asyncio.Event, since: float) -> bool:
        """Sleep until `since` + the interval (re-read when it changes); False when stopped first."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            remaining = since + self._interval - loop.time()
            if remaining <= 0:
                return True
            self._rescheduled.clear()
            stop_wait = asyncio.ensure_future(stop.wait())
            change_wait = asyncio.ensure_future(self._rescheduled.wait())
            try:
                await asyncio.wait({stop_wait, change_wait}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
                change_wait.cancel()
        return False

    async def run(self, stop: asyncio.Event) -> None:
        rounds = 0
        loop = asyncio.get_running_loop()
        while not stop.is_set() and (self._max_rounds == 0 or rounds < self._max_rounds):
            if not await self._wait_for_round(stop, loop.time()):
                break
            try:
                await self.round()
            except Exception:
                log.warning("chaos round failed", exc_info=True)
            rounds += 1
