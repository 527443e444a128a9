"""An orchestrator served by several processes (AI_AGENTS_SERVING_PROCESSES): one set of ports with connections
spread over the processes, one metrics view summed over them, and one fate: a stop reaches every process, and a
process that dies takes the others down so that the container restarts whole."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import grpc
import psutil
import pytest
from ai_agents import __version__
from ai_agents.local.postgres import LocalPostgres
from ai_agents.orchestrator.app import Orchestrator
from ai_agents.orchestrator.processes import STALLED_AFTER_SECONDS, ServingSiblings, pool_share
from ai_agents.v1 import common_pb2, tasks_pb2, tasks_pb2_grpc
from waits import assert_eventually, assert_eventually_async

from ._api_support import health_port, sample, scrape
from ._fleet_support import orchestrator_settings
from ._orchestrator_process import OrchestratorProcess, orchestrator_process

pytestmark = pytest.mark.timeout(120)

PROCESSES = 2
# Connections opened at once; the kernel hashes each to one process, so all of them landing on one of two
# processes has a chance of 2**-23.
CONNECTIONS = 24


@pytest.fixture
def served(postgres: LocalPostgres, tmp_path: Path) -> Iterator[OrchestratorProcess]:
    yield from orchestrator_process(postgres, tmp_path, AI_AGENTS_SERVING_PROCESSES=str(PROCESSES))


def serving_processes(process: OrchestratorProcess) -> list[psutil.Process]:
    return psutil.Process(process.proc.pid).children()


def sockets_on(child: psutil.Process, port: int, status: str) -> int:
    return sum(1 for c in child.net_connections(kind="tcp") if c.status == status and c.laddr.port == port)


def loads_grpc(process: psutil.Process) -> bool:
    return any("cygrpc" in mapping.path for mapping in process.memory_maps())


def assert_all_listen(children: list[psutil.Process], port: int) -> None:
    listening = {child.pid: sockets_on(child, port, psutil.CONN_LISTEN) for child in children}
    assert all(listening.values()), f"not every serving process listens on {port}: {listening}"


async def test_processes_share_the_ports_and_answer_metrics_for_all(served: OrchestratorProcess) -> None:
    children = serving_processes(served)
    assert len(children) == PROCESSES, [c.cmdline() for c in children]
    # The parent serves nothing, so it does not load the server (gRPC's core: tens of MiB per pod).
    assert all(loads_grpc(child) for child in children)
    assert not loads_grpc(psutil.Process(served.proc.pid))
    # The fixture waited for /readyz, which any of them answers: ready only once every one serves.
    for port in (served.grpc, served.http, served.health, served.metrics):
        assert_all_listen(children, port)

    # A local subchannel pool each: channels to one target otherwise share a connection.
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{served.grpc}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CONNECTIONS)
    ]
    try:
        for index, channel in enumerate(channels):
            response = await tasks_pb2_grpc.TaskServiceStub(channel).SubmitTask(
                tasks_pb2.SubmitTaskRequest(agent_type=common_pb2.AGENT_TYPE_CODING, idempotency_key=f"c{index}"),
                timeout=10,
            )
            assert response.created
        held = {child.pid: sockets_on(child, served.grpc, psutil.CONN_ESTABLISHED) for child in children}
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))
    assert sum(held.values()) == CONNECTIONS, held
    assert all(held.values()), f"every connection went to one process: {held}"

    # Each scrape is a connection of its own, answered by whichever process the kernel picks: every one of them
    # reports the submits of both.
    for _ in range(6):
        samples = await scrape(served.metrics)
        assert sample(samples, "ai_agents_tasks_submitted_total", agent_type="coding") == CONNECTIONS
        assert sample(samples, "ai_agents_build_info", component="orchestrator", version=__version__) == 1


@pytest.mark.parametrize(
    ("pool_min", "pool_max", "count"), [(2, 20, 2), (2, 20, 3), (4, 5, 2), (1, 2, 4), (20, 20, 16)]
)
def test_serving_processes_share_the_replicas_database_pool(pool_min: int, pool_max: int, count: int) -> None:
    shares = [pool_share(pool_min, pool_max, count, index) for index in range(count)]
    assert sum(share_max for _, share_max in shares) == max(pool_max, count)
    assert all(1 <= share_min <= share_max for share_min, share_max in shares)
    assert max(m for _, m in shares) - min(m for _, m in shares) <= 1, f"uneven: {shares}"


@pytest.fixture
def small_pool(postgres: LocalPostgres, tmp_path: Path) -> Iterator[OrchestratorProcess]:
    yield from orchestrator_process(
        postgres,
        tmp_path,
        AI_AGENTS_SERVING_PROCESSES=str(PROCESSES),
        AI_AGENTS_DATABASE_POOL_MIN="3",
        AI_AGENTS_DATABASE_POOL_MAX="5",
    )


async def test_a_replica_holds_no_more_connections_with_more_processes(small_pool: OrchestratorProcess) -> None:
    pools = sorted(
        (int(env["AI_AGENTS_DATABASE_POOL_MIN"]), int(env["AI_AGENTS_DATABASE_POOL_MAX"]))
        for env in (child.environ() for child in serving_processes(small_pool))
    )
    assert pools == [(2, 2), (3, 3)]
    # What PostgreSQL sees: each process's pool at its minimum, which is its share, and one LISTEN connection each.
    database = small_pool.dsn.rsplit("/", 1)[-1]
    connection = await asyncpg.connect(small_pool.dsn)
    try:

        async def connected() -> None:
            count = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
            )
            assert count == 5 + PROCESSES

        await assert_eventually_async(connected, timeout_sec=10)
    finally:
        await connection.close()


@pytest.fixture
def live_file(tmp_path: Path) -> Path:
    path = tmp_path / "live.yaml"
    path.write_text("orchestrator: {lease_seconds: 30}\n")
    return path


@pytest.fixture
def reloadable(postgres: LocalPostgres, tmp_path: Path, live_file: Path) -> Iterator[OrchestratorProcess]:
    """Serving processes that re-read `live_file` only when asked: the poll is too slow to matter."""
    yield from orchestrator_process(
        postgres,
        tmp_path,
        AI_AGENTS_SERVING_PROCESSES=str(PROCESSES),
        AI_AGENTS_CONFIG_FILE=str(live_file),
        AI_AGENTS_CONFIG_POLL_SECONDS="3600",
    )


async def test_a_reload_signal_reaches_every_process(reloadable: OrchestratorProcess, live_file: Path) -> None:
    before = sample(await scrape(reloadable.metrics), "ai_agents_config_reloads_total", result="applied")
    await asyncio.to_thread(live_file.write_text, "orchestrator: {lease_seconds: 45}\n")
    reloadable.proc.send_signal(signal.SIGHUP)

    async def applied_by_each() -> None:
        now = sample(await scrape(reloadable.metrics), "ai_agents_config_reloads_total", result="applied")
        assert now == before + PROCESSES, f"applied {now - before} times, not once per serving process"

    await assert_eventually_async(applied_by_each, timeout_sec=10)


def test_a_stop_reaches_every_process(served: OrchestratorProcess) -> None:
    children = serving_processes(served)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 0, served.log()
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)


def test_a_process_that_dies_takes_the_others_down(served: OrchestratorProcess) -> None:
    victim, *others = serving_processes(served)
    victim.kill()
    try:
        code = served.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the orchestrator kept serving a process short:\n{served.log()}")
    assert code == 1, served.log()

    def others_ended() -> None:
        alive = [o.pid for o in others if o.is_running() and o.status() != psutil.STATUS_ZOMBIE]
        assert not alive, f"serving processes outlived their orchestrator: {alive}"

    assert_eventually(others_ended, timeout_sec=10, interval_sec=0.1)
    assert "a serving process exited on its own" in served.log()


async def test_a_serving_process_is_ready_only_once_its_siblings_are(dsn: str, tmp_path: Path) -> None:
    """Else a pod would take connections while one of its processes still starts, and keep them off it for good."""
    siblings = ServingSiblings(index=0, count=2, ready_dir=tmp_path)
    orchestrator = Orchestrator(orchestrator_settings(dsn), siblings=siblings)
    await orchestrator.start()
    try:
        url = f"http://127.0.0.1:{health_port(orchestrator)}/readyz"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                assert response.status == 503
                assert (await response.json())["detail"] == "serving processes starting"
            assert (tmp_path / "ready-0").exists(), "this process did not mark itself ready"
            (tmp_path / "ready-1").touch()  # what its sibling does once it serves
            async with session.get(url) as response:
                assert response.status == 200, await response.text()
    finally:
        await orchestrator.stop()


async def test_a_serving_process_is_live_only_while_its_siblings_are(dsn: str, tmp_path: Path) -> None:
    """The kubelet's liveness probe reaches one process, picked by the kernel: each answers for all."""
    siblings = ServingSiblings(index=0, count=2, ready_dir=tmp_path)
    orchestrator = Orchestrator(orchestrator_settings(dsn), siblings=siblings)
    await orchestrator.start()
    url = f"http://127.0.0.1:{health_port(orchestrator)}/healthz"
    sibling_mark = tmp_path / "alive-1"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as response:
                assert response.status == 200, "a sibling not yet marked alive (starting) is not judged"

            async def marked_alive() -> None:
                assert (tmp_path / "alive-0").exists(), "this process did not mark itself alive"

            await assert_eventually_async(marked_alive, timeout_sec=5)
            sibling_mark.touch()
            stale = time.time() - STALLED_AFTER_SECONDS - 5
            os.utime(sibling_mark, (stale, stale))  # its event loop last ran longer ago than the limit
            async with session.get(url) as response:
                assert response.status == 503
                assert await response.json() == {"status": "failing", "detail": "serving process 1 stalled"}
            sibling_mark.touch()  # it ran again
            async with session.get(url) as response:
                assert response.status == 200, await response.text()
    finally:
        await orchestrator.stop()
    assert not (tmp_path / "alive-0").exists(), "a stopped process left its alive mark behind"


async def _healthz_answers(port: int, attempts: int) -> list[int]:
    """Statuses of `attempts` probes, each on a connection of its own (so the kernel picks a process for each),
    as the kubelet's are; a probe that lands on a stopped process times out and is left out."""
    statuses = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for _ in range(attempts):
            try:
                async with session.get(
                    f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=0.5)
                ) as response:
                    statuses.append(response.status)
            except TimeoutError:
                continue
    return statuses


async def test_a_stalled_process_fails_the_liveness_of_every_process(served: OrchestratorProcess) -> None:
    victim, *_ = serving_processes(served)
    assert set(await _healthz_answers(served.health, 8)) == {200}
    victim.suspend()  # SIGSTOP: its event loop no longer runs, as if wedged
    try:

        async def the_others_report_it() -> None:
            assert 503 in await _healthz_answers(served.health, 8)

        await assert_eventually_async(the_others_report_it, timeout_sec=STALLED_AFTER_SECONDS + 15, interval_sec=1)
    finally:
        victim.resume()

    async def live_again() -> None:
        assert set(await _healthz_answers(served.health, 8)) == {200}

    await assert_eventually_async(live_again, timeout_sec=10, interval_sec=0.5)


# As pid 1 of its own pid namespace, as in a container; `--kill-child` ends it should the test fail first.
_AS_PID_ONE = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM")


@pytest.fixture
def as_pid_one(postgres: LocalPostgres, tmp_path: Path) -> Iterator[OrchestratorProcess]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and util-linux's unshare to start a pid namespace (a container's pid 1)")
    yield from orchestrator_process(
        postgres, tmp_path, command_prefix=_AS_PID_ONE, AI_AGENTS_SERVING_PROCESSES=str(PROCESSES)
    )


def test_serving_processes_of_a_container_entry_point_keep_serving(as_pid_one: OrchestratorProcess) -> None:
    """In a container the parent is pid 1: its processes must not take that for their parent having died."""
    (entry,) = psutil.Process(as_pid_one.proc.pid).children()
    time.sleep(1)  # a serving process that took itself for orphaned would have ended by now
    children = entry.children()
    assert len(children) == PROCESSES, as_pid_one.log()
    assert all(child.status() != psutil.STATUS_ZOMBIE for child in children), as_pid_one.log()
    assert_all_listen(children, as_pid_one.grpc)
    # The kubelet's stop reaches pid 1 of the container; unshare, which stands for the runtime here, ignores it.
    entry.send_signal(signal.SIGTERM)
    assert as_pid_one.proc.wait(timeout=30) == 0, as_pid_one.log()
