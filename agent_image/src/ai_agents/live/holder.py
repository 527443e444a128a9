"""The live settings of one process: the values in force now, swapped whole when a valid new file appears.

Readers take `current` when they need a value (a lease length, the next task's latency) and never keep it, so
a change reaches them without callbacks; what must act on a change (the log level, a loop waiting for a free
slot) subscribes. A file that does not validate is refused as a whole: the values in force stay, the error
is logged once (the same bytes are not looked at again) and `ai_agents_config_reloads_total{result="refused"}`
counts it; `ai_agents_config_generation` counts the files applied since the process started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Generic

from ai_agents.live.document import InvalidLiveConfig, Live, parse_live_document
from ai_agents.live.source import Snapshot, read_snapshot
from ai_agents.observability.metrics import CommonMetrics

log = logging.getLogger(__name__)

Subscriber = Callable[[Live, Live], None]


class LiveConfig(Generic[Live]):
    def __init__(
        self,
        start: Live,
        *,
        path: Path | None,
        metrics: CommonMetrics,
        poll_seconds: float = 2.0,
        agent_type: str | None = None,
    ) -> None:
        self._start = start
        self._current = start
        self._path = path
        self._metrics = metrics
        self._poll_seconds = poll_seconds
        self._agent_type = agent_type
        self._subscribers: list[Subscriber[Live]] = []
        # The bytes last acted on (applied or refused): the same bytes again are neither re-applied nor re-logged.
        self._seen: str | None = None
        self._wake = asyncio.Event()
        self.generation = 0
        metrics.config_generation.set(0)

    @property
    def current(self) -> Live:
        return self._current

    @property
    def path(self) -> Path | None:
        return self._path

    def subscribe(self, subscriber: Subscriber[Live]) -> None:
        """Call `subscriber(old, new)` on the event loop after each applied change."""
        self._subscribers.append(subscriber)

    def load(self) -> str | None:
        """Read the file now (at start, before serving); see `consider` for the result."""
        if self._path is None:
            return None
        return self.consider(read_snapshot(self._path))

    def request_reload(self) -> None:
        """Re-read at once instead of at the next poll (SIGHUP); safe from a signal handler on the loop."""
        if self._path is None:
            log.info("reload requested, but no live configuration file is set (AI_AGENTS_CONFIG_FILE)")
            return
        self._wake.set()

    async def watch(self, stop: asyncio.Event) -> None:
        """Poll the file (ai_agents.live.source says why a poll) until `stop`; never raises on a bad file.

        Without a file it just waits for `stop`: it is a loop supervised like the others (ai_agents.lifecycle),
        and ending early would count as a failure.
        """
        if self._path is None:
            await stop.wait()
            return
        while not stop.is_set():
            stop_wait = asyncio.ensure_future(stop.wait())
            wake_wait = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait(
                    {stop_wait, wake_wait}, timeout=self._poll_seconds, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stop_wait.cancel()
                wake_wait.cancel()
            if stop.is_set():
                return
            forced = self._wake.is_set()
            self._wake.clear()
            # Off the event loop: a network-backed volume can be slow to answer.
            snapshot = await asyncio.to_thread(read_snapshot, self._path)
            if self.consider(snapshot) is None and forced:
                log.info("live configuration re-read on request: unchanged", extra={"generation": self.generation})

    def consider(self, snapshot: Snapshot) -> str | None:
        """Apply or refuse a read of the file: "applied", "refused", or None when these bytes were seen last."""
        if snapshot.digest == self._seen:
            return None
        self._seen = snapshot.digest
        try:
            if snapshot.text is None:
                raise InvalidLiveConfig(snapshot.error or "unreadable")
            new = parse_live_document(snapshot.text).apply(self._start, self._agent_type)
        except InvalidLiveConfig as exc:
            self._metrics.config_reloads.labels("refused").inc()
            log.error(
                "live configuration refused; the settings in force stay",
                extra={"config_file": str(self._path), "error": str(exc), "generation": self.generation},
            )
            return "refused"
        old, self._current = self._current, new
        self.generation += 1
        self._metrics.config_generation.set(self.generation)
        self._metrics.config_reloads.labels("applied").inc()
        changed = {key: value for key, value in new.model_dump().items() if getattr(old, key) != value}
        log.info(
            "live configuration applied",
            extra={
                "config_file": str(self._path),
                "generation": self.generation,
                "sha256": snapshot.digest[:12],
                "changed": changed,
            },
        )
        for subscriber in self._subscribers:
            try:
                subscriber(old, new)
            except Exception:
                # One subscriber's failure must not keep the others (or later changes) from applying.
                log.exception("applying the live configuration failed in %r", subscriber)
        return "applied"
