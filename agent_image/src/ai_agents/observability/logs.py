"""Structured JSON logs (one object per line) with a per-level counter for the dashboards.

Every JSON line has `time`, `level`, `logger`, `message` and `component`; the process's own fields (an agent's
`agent_id` and `agent_type`); the fields bound to the code running now (`task_id` while an agent runs a task);
`trace_id` and `span_id` when a span is recording; then the record's `extra`. docs/contracts.md lists them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter

_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

# Fields of the work in progress. A context variable, not a logger adapter, so that every line logged while a
# task runs carries its id, the handler's and the client's included; each asyncio task sees its own value.
_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})
_bound: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("ai_agents_log_fields", default=_NO_FIELDS)


@contextlib.contextmanager
def bound_log_fields(**fields: Any) -> Iterator[None]:
    """Add `fields` to every line logged inside the block (in this asyncio task and those it starts)."""
    token = _bound.set({**_bound.get(), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


def _trace_fields() -> dict[str, str]:
    """The ids of the span in progress, as Jaeger shows them (hex); none without a recording span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._component = component
        self._fields = dict(fields or {})

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "component": self._component,
            **self._fields,
            **_bound.get(),
            **_trace_fields(),
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


def configure_logging(
    *,
    component: str,
    level: str,
    fmt: str,
    counter: Counter | None = None,
    fields: Mapping[str, Any] | None = None,
) -> None:
    """Configure the root logger once, in an entry point; `fields` go on every JSON line of the process."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(component, fields))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [handler]
    if counter is not None:
        handlers.append(_CountingHandler(counter))
    logging.basicConfig(level=level.upper(), handlers=handlers, force=True)
    # aiohttp's access log would add a line per request: the request metrics already count them.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def apply_log_level(level: str) -> None:
    """Change the level of every logger that follows the root's, while the process runs (live configuration)."""
    logging.getLogger().setLevel(level.upper())
