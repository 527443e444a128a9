"""Structured JSON logs (one object per line) with a per-level counter for the dashboards."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from prometheus_client import Counter

_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": self._component,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _CountingHandler(logging.Handler):
    def __init__(self, counter: Counter) -> None:
        super().__init__()
        self._counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        self._counter.labels(record.levelname.lower()).inc()


def configure_logging(*, component: str, level: str, fmt: str, counter: Counter | None = None) -> None:
    """Configure the root logger once, in an entry point."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(component))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [handler]
    if counter is not None:
        handlers.append(_CountingHandler(counter))
    logging.basicConfig(level=level.upper(), handlers=handlers, force=True)
    # aiohttp's access log would add a line per request: the request metrics already count them.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
