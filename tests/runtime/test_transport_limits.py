"""Transport-level hostility against a real orchestrator process: malformed HTTP, bad credentials, corrupt
protobuf, slow and idle clients, connection floods, clients that leave mid-body, and lists of large rows."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from ai_agents.local.postgres import LocalPostgres
from ai_agents.orchestrator.grpc_api import SERVICE_NAMES
from ai_agents.v1 import tasks_pb2, tasks_pb2_grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection
from waits import assert_eventually_async

from ._api_support import sample, scrape
from ._orchestrator_process import OrchestratorProcess, orchestrator_process

pytestmark = pytest.mark.timeout(120)

TOKEN = "s3cret-transport-token"
AUTH = f"Bearer {TOKEN}"
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 3.0
PAGE_BUDGET = 64 * 1024
# Slack for a loaded CI machine on top of a configured timeout.
SLACK = 2.5


@pytest.fixture(scope="module")
def api(postgres: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrchestratorProcess]:
    """One orchestrator process with short transport timeouts and a small list-page budget."""
    yield from orchestrator_process(
        postgres,
        tmp_path_factory.mktemp("transport"),
        AI_AGENTS_API_TOKEN=TOKEN,
        AI_AGENTS_HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        AI_AGENTS_HTTP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        AI_AGENTS_HTTP_KEEPALIVE_TIMEOUT_SECONDS=str(KEEPALIVE_TIMEOUT),
        AI_AGENTS_HTTP_MAX_CONNECTIONS="200",
        AI_AGENTS_LIST_PAGE_MAX_BYTES=str(PAGE_BUDGET),
    )


# ---- raw HTTP/1.1 on a socket ---------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _parse(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(lines[0].split()[1]), headers, body, raw)


async def read_response(reader: asyncio.StreamReader, *, timeout: float = 10) -> RawResponse:
    """One response with a Content-Length body (what our server always sends)."""
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n")
        while head.startswith(b"HTTP/1.1 100"):
            head = await reader.readuntil(b"\r\n\r\n")
        response = _parse(head)
        body = await reader.readexactly(int(response.headers.get("content-length", "0")))
    return RawResponse(response.status, response.headers, body, head + body)


async def exchange(port: int, data: bytes, *, timeout: float = 10) -> RawResponse:
    """Send raw bytes on a new connection, return everything the server sends until it closes, parsed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            raw = await reader.read()
    finally:
        writer.close()
    assert raw, "the server closed the connection without an answer"
    return _parse(raw)


async def seconds_until_closed(reader: asyncio.StreamReader, *, limit: float) -> float:
    """How long until the server closes the connection (EOF or reset); fails if it stays open past `limit`."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            while await reader.read(65536):
                pass
    except ConnectionError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for more than {limit} s")
    return time.monotonic() - started


def request(method: str, path: str, *, headers: dict[str, bytes] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + value)
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def assert_json_error(response: RawResponse, status: int) -> dict[str, Any]:
    assert response.status == status, response.raw[:300]
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    return dict(error)


# ---- item 7: protocol errors are JSON, never echo the request, never 500 -----------------------------------------

_TOKEN_BYTES = TOKEN.encode()
_AUTH_HEADER = b"Authorization: " + AUTH.encode()
# Each is refused by aiohttp's parser, whose own error page quotes the offending bytes: here, the token.
MALFORMED = {
    "control character in the Authorization header": b"GET /v1/tasks HTTP/1.1\r\nHost: x\r\n%s\x01\r\n\r\n"
    % _AUTH_HEADER,
    "invalid header name": b"GET /v1/tasks HTTP/1.1\r\nHost: x\r\nX Bad%s: y\r\n\r\n" % _TOKEN_BYTES,
    "control character in the method": b"G\x01T /v1/tasks?t=%s HTTP/1.1\r\nHost: x\r\n\r\n" % _TOKEN_BYTES,
    "invalid Content-Length": b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: %s\r\n\r\n"
    % (_AUTH_HEADER, _TOKEN_BYTES),
    "invalid chunk size": b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\n%s\r\nTransfer-Encoding: chunked\r\n\r\n%s\r\n"
    % (_AUTH_HEADER, _TOKEN_BYTES),
    "header line over the size limit": b"GET /v1/tasks HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n" % (_AUTH_HEADER * 400),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_request_gets_a_json_400_that_does_not_echo_the_request(
    api: OrchestratorProcess, case: str
) -> None:
    response = await exchange(api.http, MALFORMED[case])
    assert_json_error(response, 400)
    assert _TOKEN_BYTES not in response.raw, f"the bearer token was echoed back: {response.raw!r}"
    assert b"Bearer" not in response.raw, f"request bytes were echoed back: {response.raw!r}"


ROUTES = [
    ("GET", "/v1/tasks"),
    ("POST", "/v1/tasks"),
    ("GET", f"/v1/tasks/{uuid.uuid4()}"),
    ("POST", f"/v1/tasks/{uuid.uuid4()}:cancel"),
    ("GET", "/v1/agents"),
    ("GET", "/v1/agents/someone"),
    ("GET", "/v1/status"),
]


@pytest.mark.parametrize(
    "authorization", [b"Bearer \xff\xfe", b"Bearer \xc3\xa9t\xc3\xa9", b"\xe2\x82\xac " + _TOKEN_BYTES]
)
async def test_non_ascii_authorization_is_401_json_on_every_route(
    api: OrchestratorProcess, authorization: bytes
) -> None:
    for method, path in ROUTES:
        data = request(method, path, headers={"Authorization": authorization, "Connection": b"close"}, body=b"{}")
        response = await exchange(api.http, data)
        error = assert_json_error(response, 401)
        assert error["code"] == "unauthenticated", (method, path, error)


def _all_methods() -> list[tuple[str, bool, bool]]:
    """(full path, client-streaming?, server-streaming?) of every method we serve, with health and reflection."""
    pool = descriptor_pool.Default()
    names = [*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    return [
        (f"/{service.full_name}/{method.name}", method.client_streaming, method.server_streaming)
        for service in map(pool.FindServiceByName, names)
        for method in service.methods
    ]


async def test_corrupt_protobuf_is_invalid_argument_on_every_method(api: OrchestratorProcess) -> None:
    corrupt = b"\xff\xff\xff\xff\xff"  # a field tag whose varint never ends
    methods = _all_methods()
    assert len(methods) > 10, methods
    metadata = (("authorization", AUTH),)

    async def one_corrupt_message() -> AsyncIterator[bytes]:
        yield corrupt

    async with grpc.aio.insecure_channel(f"127.0.0.1:{api.grpc}") as channel:
        for path, client_streaming, server_streaming in methods:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                if client_streaming:
                    async for _ in channel.stream_stream(path)(one_corrupt_message(), metadata=metadata, timeout=10):
                        pass
                elif server_streaming:
                    async for _ in channel.unary_stream(path)(corrupt, metadata=metadata, timeout=10):
                        pass
                else:
                    await channel.unary_unary(path)(corrupt, metadata=metadata, timeout=10)
            error = info.value
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, error.code(), error.details())
            details = error.details() or ""
            assert "Error" not in details and "Unexpected" not in details, (path, details)
            assert "protobuf" in details, (path, details)


# ---- item 6: slow, idle and too many clients -----------------------------------------------------------------------


async def test_partial_headers_are_cut_off_at_the_header_timeout(api: OrchestratorProcess) -> None:
    """A slowloris client trickling header bytes is closed once the header timeout passes, not kept alive."""
    reader, writer = await asyncio.open_connection("127.0.0.1", api.http)
    try:
        writer.write(b"GET /v1/tasks HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()

        async def trickle() -> None:
            for i in range(100):  # bounded: 100 x 0.2 s, longer than any timeout here
                await asyncio.sleep(0.2)
                writer.write(f"X-Slow-{i}: y\r\n".encode())
                try:
                    await writer.drain()
                except ConnectionError:
                    return

        trickling = asyncio.create_task(trickle())
        try:
            elapsed = await seconds_until_closed(reader, limit=HEADER_TIMEOUT + SLACK)
        finally:
            trickling.cancel()
        assert elapsed < KEEPALIVE_TIMEOUT, f"closed after {elapsed:.1f} s: the keep-alive, not the header timeout"
    finally:
        writer.close()


async def test_a_stalled_body_gets_408_at_the_body_timeout(api: OrchestratorProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", api.http)
    try:
        writer.write(
            b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + AUTH.encode()
            + b'\r\nContent-Length: 1000\r\n\r\n{"agent_type": '
        )
        await writer.drain()
        started = time.monotonic()
        response = await read_response(reader, timeout=BODY_TIMEOUT + SLACK)
        assert time.monotonic() - started >= BODY_TIMEOUT * 0.9
        error = assert_json_error(response, 408)
        assert str(BODY_TIMEOUT) in error["message"] or "1 s" in error["message"], error
        await seconds_until_closed(reader, limit=BODY_TIMEOUT + SLACK)
    finally:
        writer.close()


async def test_an_idle_keepalive_connection_is_closed(api: OrchestratorProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", api.http)
    try:
        writer.write(request("GET", "/v1/status", headers={"Authorization": AUTH.encode()}))
        await writer.drain()
        response = await read_response(reader)
        assert response.status == 200, response.raw[:300]
        elapsed = await seconds_until_closed(reader, limit=KEEPALIVE_TIMEOUT + SLACK)
        assert elapsed >= KEEPALIVE_TIMEOUT * 0.5, f"closed after {elapsed:.1f} s, before the keep-alive timeout"
    finally:
        writer.close()


async def test_clients_leaving_mid_body_are_not_server_errors(api: OrchestratorProcess) -> None:
    """50 clients send headers, see `100 Continue` (so the request reached the app), send part of the body, leave."""
    log_offset = len(api.log())
    before = await scrape(api.metrics)
    route = {"route": "/v1/tasks", "method": "POST"}

    async def leave_mid_body() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.http)
        try:
            writer.write(
                b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: "
                + AUTH.encode()
                + b"\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
            )
            await writer.drain()
            async with asyncio.timeout(10):
                assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
            writer.write(b'{"agent_type": "coding", "payload": {"x": "')
            await writer.drain()
        finally:
            writer.close()

    for _ in range(5):  # 5 waves of 10: concurrent, yet well under the connection limit
        await asyncio.gather(*(leave_mid_body() for _ in range(10)))

    async def all_counted() -> None:
        after = await scrape(api.metrics)
        closed = sample(after, "ai_agents_http_requests_total", status="499", **route) - sample(
            before, "ai_agents_http_requests_total", status="499", **route
        )
        server_errors = {
            labels: value
            for (name, labels), value in after.items()
            if name == "ai_agents_http_requests_total" and dict(labels).get("status", "").startswith("5")
        }
        assert not server_errors, f"client disconnects counted as server errors: {server_errors}"
        assert closed == 50, f"{closed} of 50 disconnects counted as status 499"

    await assert_eventually_async(all_counted, timeout_sec=15)
    log = api.log()[log_offset:]
    assert "Traceback" not in log, log[-3000:]
    assert " ERROR " not in log, log[-3000:]


CONNECTION_LIMIT = 4


@pytest.fixture(scope="module")
def capped(postgres: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrchestratorProcess]:
    """An orchestrator process allowed only a handful of HTTP connections per server."""
    yield from orchestrator_process(
        postgres,
        tmp_path_factory.mktemp("capped"),
        AI_AGENTS_API_TOKEN=TOKEN,
        AI_AGENTS_HTTP_MAX_CONNECTIONS=str(CONNECTION_LIMIT),
        AI_AGENTS_HTTP_KEEPALIVE_TIMEOUT_SECONDS="60",
    )


async def test_connection_limit_refuses_extras_but_keeps_existing_and_health(capped: OrchestratorProcess) -> None:
    process = capped
    held = [await asyncio.open_connection("127.0.0.1", process.http) for _ in range(CONNECTION_LIMIT)]
    try:
        for reader, writer in held:  # each one served: all inside the limit
            writer.write(request("GET", "/v1/status", headers={"Authorization": AUTH.encode()}))
            await writer.drain()
            assert (await read_response(reader)).status == 200

        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", process.http)
            try:
                writer.write(request("GET", "/v1/status", headers={"Authorization": AUTH.encode()}))
                await writer.drain()
                started = time.monotonic()
                try:
                    async with asyncio.timeout(5):
                        raw = await reader.read()
                except ConnectionError:
                    raw = b""
                assert time.monotonic() - started < 5
                if raw:  # refused with an answer rather than a bare close
                    assert_json_error(_parse(raw), 503)
            finally:
                writer.close()

        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{process.health}/readyz") as ready,
        ):
            assert ready.status == 200, "health must answer while the API is at its connection limit"

        reader, writer = held[0]
        body = json.dumps({"agent_type": "coding", "payload": {"n": 1}}).encode()
        writer.write(
            request(
                "POST",
                "/v1/tasks",
                headers={"Authorization": AUTH.encode(), "Content-Type": b"application/json"},
                body=body,
            )
        )
        await writer.drain()
        submitted = await read_response(reader)
        assert submitted.status == 201, submitted.raw[:300]
    finally:
        for _, writer in held:
            writer.close()

    async def slot_freed() -> None:
        try:
            response = await exchange(
                process.http,
                request("GET", "/v1/status", headers={"Authorization": AUTH.encode(), "Connection": b"close"}),
                timeout=5,
            )
        except (ConnectionError, AssertionError) as exc:
            raise AssertionError(f"no slot yet: {exc!r}") from exc
        assert response.status == 200, response.raw[:200]

    await assert_eventually_async(slot_freed, timeout_sec=10, message="closing held connections never freed a slot")


# ---- item 5: list pages bounded in bytes ------------------------------------------------------------------------


async def test_list_pages_stay_within_the_byte_budget_and_visit_every_row_once(api: OrchestratorProcess) -> None:
    agent_type = "documentation"
    submitted: set[str] = set()
    headers = {"Authorization": AUTH}
    async with aiohttp.ClientSession(f"http://127.0.0.1:{api.http}", headers=headers) as session:
        for i in range(12):
            # ~20 KB each, so one page_size=1000 page would be ~240 KB against a 64 KiB budget.
            payload = {"i": i, "blob": uuid.uuid4().hex * 625}
            async with session.post("/v1/tasks", json={"agent_type": agent_type, "payload": payload}) as r:
                assert r.status == 201, await r.text()
                submitted.add((await r.json())["task_id"])

        seen: list[str] = []
        pages = 0
        token = ""
        for _ in range(50):  # bounded: 12 rows can never need 50 pages
            params = {"agent_type": agent_type, "page_size": "1000", "page_token": token}
            async with session.get("/v1/tasks", params=params) as r:
                assert r.status == 200, await r.text()
                body = await r.read()
            page = json.loads(body)
            pages += 1
            assert page["tasks"], "an empty page before the end"
            assert len(body) <= PAGE_BUDGET or len(page["tasks"]) == 1, (
                f"page of {len(page['tasks'])} rows is {len(body)} bytes, over the {PAGE_BUDGET} budget"
            )
            seen.extend(t["task_id"] for t in page["tasks"])
            token = page["next_page_token"]
            if not token:
                break
    assert len(seen) == len(set(seen)), "a task was listed twice"
    assert set(seen) == submitted, "a task was never listed"
    assert pages >= 4, f"{pages} pages: the byte budget did not split the list"

    async with grpc.aio.insecure_channel(f"127.0.0.1:{api.grpc}") as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        grpc_seen: list[str] = []
        token = ""
        for _ in range(50):
            response = await stub.ListTasks(
                tasks_pb2.ListTasksRequest(page_size=1000, page_token=token),
                metadata=(("authorization", AUTH),),
                timeout=10,
            )
            assert response.ByteSize() <= PAGE_BUDGET or len(response.tasks) == 1, response.ByteSize()
            grpc_seen.extend(t.task_id for t in response.tasks)
            token = response.next_page_token
            if not token:
                break
    assert sorted(grpc_seen) == sorted(submitted)


async def test_agent_list_pages_stay_within_the_byte_budget(api: OrchestratorProcess) -> None:
    conn = await asyncpg.connect(api.dsn)
    try:
        ids = [f"budget-{i:03d}" for i in range(40)]
        labels = json.dumps({f"k{j}": "v" * 60 for j in range(32)})  # ~2.5 KB of labels per agent
        await conn.executemany(
            "INSERT INTO agents (agent_id, agent_type, state, labels) VALUES ($1, 'testing', 'active', $2::jsonb)",
            [(agent_id, labels) for agent_id in ids],
        )
    finally:
        await conn.close()
    seen: list[str] = []
    async with aiohttp.ClientSession(f"http://127.0.0.1:{api.http}", headers={"Authorization": AUTH}) as session:
        token = ""
        for _ in range(50):
            params = {"agent_type": "testing", "page_size": "1000", "page_token": token}
            async with session.get("/v1/agents", params=params) as r:
                assert r.status == 200, await r.text()
                body = await r.read()
            page = json.loads(body)
            assert len(body) <= PAGE_BUDGET or len(page["agents"]) == 1, len(body)
            seen.extend(a["agent_id"] for a in page["agents"])
            token = page["next_page_token"]
            if not token:
                break
    assert sorted(seen) == ids
