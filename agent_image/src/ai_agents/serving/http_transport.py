"""HTTP/1.1 connection limits aiohttp 3.14 lacks: a header-read deadline, a connection cap, JSON protocol errors.

aiohttp's RequestHandler has a keep-alive timeout and line/header size limits. It has no header-read timeout (a
request whose headers never finish is bounded only by the keep-alive timeout), no limit on open connections, and
its parser-level errors are text/plain pages that quote the offending request bytes, bearer token included. The
site below adds those on top of aiohttp's public extension points (BaseSite, RequestHandler); the body-read
timeout lives in the API middleware (serving/http_middleware.py), where the request body is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import http_exceptions, web
from aiohttp.web_request import BaseRequest

from ai_agents.config import CommonSettings

log = logging.getLogger(__name__)

# How often, at most, a server at its connection limit says so in the log.
_REFUSAL_LOG_INTERVAL = 10.0


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Per-server transport limits; see CommonSettings for what each one means."""

    header_timeout_seconds: float
    body_timeout_seconds: float
    keepalive_timeout_seconds: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> HttpLimits:
        return cls(
            header_timeout_seconds=settings.http_header_timeout_seconds,
            body_timeout_seconds=settings.http_body_timeout_seconds,
            keepalive_timeout_seconds=settings.http_keepalive_timeout_seconds,
            max_connections=settings.http_max_connections,
        )


def json_error_bytes(status: int, code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def _protocol_error(exc: BaseException | None, max_line_size: int) -> tuple[str, str]:
    """A fixed (code, message) per parser failure: the parser's own message quotes the request, so never use it."""
    if isinstance(exc, http_exceptions.LineTooLong):
        return "bad_request", f"a request line or header is longer than {max_line_size} bytes"
    if isinstance(exc, http_exceptions.BadStatusLine):
        return "bad_request", "malformed HTTP request line"
    if isinstance(exc, http_exceptions.InvalidHeader):
        return "bad_request", "malformed HTTP header"
    if isinstance(exc, http_exceptions.PayloadEncodingError):
        return "bad_request", "malformed request body framing (Content-Length or chunked encoding)"
    return "bad_request", "malformed HTTP request"


_STATUS_CODES = {408: "request_timeout", 413: "payload_too_large", 500: "internal", 504: "timeout"}


class _ConnectionCount:
    def __init__(self) -> None:
        self.open = 0


class LimitedRequestHandler(web.RequestHandler):
    """aiohttp's connection handler plus a header-read deadline, a shared connection count and JSON errors."""

    def __init__(
        self, manager: web.Server, *, limits: HttpLimits, connections: _ConnectionCount, **kwargs: Any
    ) -> None:
        super().__init__(
            manager,
            keepalive_timeout=limits.keepalive_timeout_seconds,
            # After an early answer (401, 408, 413) aiohttp drains the unread body this long before closing, so
            # the client sees the answer; no longer than a whole body may take.
            lingering_time=min(10.0, limits.body_timeout_seconds),
            # No access log (as AppRunner(access_log=None) documents); aiohttp's annotation omits the None.
            access_log=None,  # type: ignore[arg-type]
            **kwargs,
        )
        self.limits = limits
        self._connections = connections
        self._counted = False
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._connections.open += 1
        self._counted = True
        # The first request's headers are due from the moment the connection opens: a client that connects and
        # sends nothing (or trickles) is a slow-header client too.
        self._arm_header_deadline()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_deadline()
        if self._counted:
            self._counted = False
            self._connections.open -= 1
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # The first bytes of a request after an idle keep-alive period start its header deadline.
        if data and self._header_deadline is None and self._awaiting_request():
            self._arm_header_deadline()
        super().data_received(data)

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        # Answered: until the next request's first byte only the keep-alive timeout applies.
        self._disarm_header_deadline()
        return await super().finish_response(request, resp, start_time)

    def _awaiting_request(self) -> bool:
        # aiohttp's own keep-alive timer (RequestHandler._process_keepalive) makes this same check: the request
        # loop waits on `_waiter` until a complete request (headers parsed) is queued.
        waiter: asyncio.Future[None] | None = getattr(self, "_waiter", None)
        return waiter is not None and not waiter.done()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        loop = asyncio.get_running_loop()
        self._header_deadline = loop.call_later(self.limits.header_timeout_seconds, self._header_deadline_passed)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if self._awaiting_request():
            log.debug("closing a connection whose request headers did not arrive in time")
            self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A JSON error that never quotes the request; only a server fault (5xx) is logged with its traceback."""
        if status >= 500:
            log.error("unhandled error in an HTTP handler", exc_info=exc)
        else:
            # A client's malformed request: its bytes (maybe a credential) stay out of the log as well.
            log.debug("refused a malformed HTTP request", extra={"status": status, "error": type(exc).__name__})
        if request.writer.output_size > 0:
            # As aiohttp does: a response already under way cannot be replaced by an error page.
            raise ConnectionError("response already started; cannot send an error response")
        if status >= 500:
            code, text = _STATUS_CODES.get(status, "internal"), "internal error"
        elif status == 400:
            code, text = _protocol_error(exc, self.max_line_size)
        else:
            code, text = _STATUS_CODES.get(status, "bad_request"), "request refused"
        response = web.Response(
            status=status, body=json_error_bytes(status, code, text), content_type="application/json"
        )
        response.force_close()
        return response


class _Refused(asyncio.Protocol):
    """Answers a connection over the limit with a 503 and closes it: the client learns why, no handler is spent."""

    _ANSWER = json_error_bytes(503, "unavailable", "too many open connections; retry later")
    _RESPONSE = (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Retry-After: 1\r\nContent-Length: " + str(len(_ANSWER)).encode() + b"\r\n\r\n" + _ANSWER
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's: the cast states what both provide.
        writer = cast("asyncio.WriteTransport", transport)
        writer.write(self._RESPONSE)
        writer.close()


class LimitedTCPSite(web.BaseSite):
    """A TCP site whose connections get LimitedRequestHandler, at most `limits.max_connections` at a time.

    `shared_port`: bound with SO_REUSEPORT, beside other processes serving the same port (the kernel spreads new
    connections over them); the connection cap is then each process's own."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, limits: HttpLimits, shared_port: bool = False
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._limits = limits
        self._shared_port = shared_port
        self._connections = _ConnectionCount()
        self._refused = 0
        self._refusal_logged_at = 0.0

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def open_connections(self) -> int:
        return self._connections.open

    def _new_connection(self) -> asyncio.Protocol:
        # Counted when a connection is made, checked when the next is accepted: a burst accepted in one loop turn
        # can overshoot by at most the listen backlog, never by a growing amount.
        if self._connections.open >= self._limits.max_connections:
            self._note_refusal()
            return _Refused()
        server = self._runner.server
        assert server is not None
        return LimitedRequestHandler(
            server, loop=asyncio.get_running_loop(), limits=self._limits, connections=self._connections
        )

    def _note_refusal(self) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= _REFUSAL_LOG_INTERVAL:
            log.warning(
                "HTTP connection limit reached; refusing new connections",
                extra={"max_connections": self._limits.max_connections, "refused": self._refused, "site": self.name},
            )
            self._refusal_logged_at = now
            self._refused = 0

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection, self._host, self._port, reuse_address=True, reuse_port=self._shared_port or None
        )
        # With port 0 the kernel picked one: report it. (asyncio's and uvloop's servers both have `sockets`.)
        sockets = getattr(self._server, "sockets", None)
        if sockets:
            self._port = int(sockets[0].getsockname()[1])

    @property
    def port(self) -> int:
        return self._port
