"""The heartbeat phase's floor: a bare grpc.aio server whose bidirectional streams echo bytes.

The same traffic as the heartbeat phase (one stream per agent, one message per agent per interval, from the same
load processes and channels; on uvloop, the collector settled, as the orchestrator runs), to a server that does
nothing with it: no interceptor, no protobuf, no credential, no database. Its CPU per message is what grpcio's
asyncio server spends on this machine for this traffic, so no Python gRPC handler of a beat can cost less: the
heartbeat's orchestrator CPU per beat is reported over it. The same traffic also goes to a native server, grpc-go's
(`bench/native_echo`, built here when `go` is installed), to tell the transport's cost from Python's. The servers
listen on 127.0.0.1 only; every load loop is bounded in count.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psutil

_SERVICE = "bench.Echo"
_METHOD = f"/{_SERVICE}/Stream"
_MESSAGE = b"x" * 48  # about a HeartbeatStreamRequest with an agent id and no leases


def _same(data: bytes) -> bytes:
    return data


async def _serve(ports: multiprocessing.Queue[int], stop: multiprocessing.synchronize.Event) -> None:
    import grpc

    async def echo(requests: Any, context: Any) -> Any:
        async for message in requests:
            yield message

    handler = grpc.method_handlers_generic_handler(
        _SERVICE,
        {"Stream": grpc.stream_stream_rpc_method_handler(echo, request_deserializer=_same, response_serializer=_same)},
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ports.put(port)
    await asyncio.to_thread(stop.wait)
    await server.stop(0)


def _server_process(ports: multiprocessing.Queue[int], stop: multiprocessing.synchronize.Event) -> None:
    import uvloop
    from ai_agents.gc_settings import settle_for_serving

    # The collector as every ai-agents process runs it: the floor differs from the orchestrator only in its work.
    settle_for_serving()
    uvloop.run(_serve(ports, stop))


def _load_process(args: dict[str, Any]) -> dict[str, Any]:
    import uvloop

    return uvloop.run(_load(**args))


async def _load(
    *, port: int, streams: int, interval: float, seconds: float, channels: int, max_in_flight: int, start_at: float
) -> dict[str, Any]:
    import grpc
    from runtime_bench import open_loop

    cpu0 = time.process_time()
    pool = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(channels)]
    calls: list[Any] = [None] * streams
    # One message in flight per stream, as an agent's beats are.
    turns = [asyncio.Lock() for _ in range(streams)]
    try:
        opening = asyncio.Semaphore(256)

        async def open_stream(i: int) -> None:
            async with opening:
                method = pool[i % channels].stream_stream(
                    _METHOD, request_serializer=_same, response_deserializer=_same
                )
                calls[i] = method()
                await calls[i].write(_MESSAGE)
                await calls[i].read()

        await asyncio.wait_for(asyncio.gather(*(open_stream(i) for i in range(streams))), 120)

        async def message(i: int) -> None:
            async with turns[i % streams]:
                call = calls[i % streams]
                await call.write(_MESSAGE)
                if await call.read() != _MESSAGE:
                    raise RuntimeError("echo differs")

        rate = streams / interval
        result = await asyncio.wait_for(
            open_loop(rate, int(rate * seconds), max_in_flight, message, start_at=start_at), seconds + 60
        )
    finally:
        for call in calls:
            if call is not None:
                call.cancel()
        await asyncio.gather(*(channel.close() for channel in pool))
    result["load_process_cpu_seconds"] = round(time.process_time() - cpu0, 3)
    return result


@contextlib.contextmanager
def python_echo() -> Iterator[tuple[int, int]]:
    """The grpc.aio echo server in a process of its own: (port, pid)."""
    spawn = multiprocessing.get_context("spawn")
    ports: multiprocessing.Queue[int] = spawn.Queue()
    stop = spawn.Event()
    server = spawn.Process(target=_server_process, args=(ports, stop), name="bench-stream-echo")
    server.start()
    try:
        port = ports.get(timeout=30)
        assert server.pid is not None
        yield port, server.pid
    finally:
        stop.set()
        server.join(10)
        if server.is_alive():
            server.kill()


NATIVE_SOURCE = Path(__file__).resolve().parent / "native_echo"


def build_native_echo(out_dir: Path) -> Path | str:
    """The native echo server built into `out_dir`, or why it could not be (the figure is then left out)."""
    go = shutil.which("go")
    if go is None:
        return "go is not installed"
    binary = out_dir / "native-echo"
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=NATIVE_SOURCE, capture_output=True, text=True, timeout=600
    )
    if built.returncode != 0:
        return f"go build failed: {built.stderr.strip()[-400:]}"
    return binary


@contextlib.contextmanager
def native_echo(binary: Path) -> Iterator[tuple[int, int]]:
    """The grpc-go echo server: (port, pid). One OS thread runs Go code (GOMAXPROCS=1), as one event loop runs
    the Python server's: on this traffic it was also the cheaper setting (more threads park and wake each other)."""
    from runtime_bench import terminate

    server = subprocess.Popen(
        [str(binary), "-max-seconds", "900"],
        env={**os.environ, "GOMAXPROCS": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield int(server.stdout.readline()), server.pid
    finally:
        terminate(server, 10)


def measure(
    *,
    streams: int,
    interval: float,
    seconds: float,
    processes: int,
    channels: int,
    max_in_flight: int,
    native: Path | None = None,
) -> dict[str, Any]:
    """Echo server CPU per message at `streams` streams, each sending one message every `interval` seconds: the
    grpc.aio server, or the native one built at `native`."""
    from runtime_bench import load_start_at, percentiles

    spawn = multiprocessing.get_context("spawn")
    server = python_echo() if native is None else native_echo(native)
    with server as (port, pid):
        echo = psutil.Process(pid)
        # As the heartbeat phase does: streams open first, then all processes send from one instant.
        start_at = load_start_at(streams / processes)
        shares = [streams // processes + (1 if p < streams % processes else 0) for p in range(processes)]
        jobs = [
            dict(
                port=port,
                streams=share,
                interval=interval,
                seconds=seconds,
                channels=channels,
                max_in_flight=max_in_flight // processes,
                start_at=start_at,
            )
            for share in shares
        ]
        with ProcessPoolExecutor(processes, mp_context=spawn) as pool:
            futures = [pool.submit(_load_process, job) for job in jobs]
            # The send window only: not the streams' opening before it nor their closing after it.
            time.sleep(max(0.0, start_at - time.time()))
            cpu_start = sum(echo.cpu_times()[:2])
            time.sleep(seconds)
            cpu_seconds = sum(echo.cpu_times()[:2]) - cpu_start
            rss_mib = echo.memory_info().rss / 2**20
            results = [f.result(timeout=seconds + 180) for f in futures]
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    ok = sum(r["ok"] for r in results)
    return {
        "server": "grpc.aio" if native is None else "grpc-go",
        "streams": streams,
        "interval_seconds": interval,
        "window_seconds": seconds,
        "ok": ok,
        "errors": dict(errors),
        "achieved_per_second": round(sum(r["achieved_per_second"] or 0.0 for r in results), 1),
        "latency_ms": percentiles([x for r in results for x in r["_latencies"]]),
        "server_cores": round(cpu_seconds / seconds, 3),
        # Over the messages the window was to carry (streams / interval per second), as the heartbeat phase counts.
        "server_cpu_ms_per_message": round(cpu_seconds / (streams / interval * seconds) * 1000, 3),
        # With every stream open, at the end of the window.
        "server_rss_mib": round(rss_mib, 1),
    }
