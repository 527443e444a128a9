"""`make bench-compare`: the e2e no-op workload on Celery + Redis, in the same run as the runtime's own.

What a user would pick instead of this runtime: Celery with a Redis broker and result backend, `acks_late` (a
task is acknowledged only after it ran, like our leases), workers on the same machine. Redis is Debian's
`redis-server`, started here on 127.0.0.1 on a free port with its data in the bench's work directory, and
stopped at the end. Its durability is stated in the report: append-only file with `appendfsync everysec` by
default (what a Celery deployment that cares typically runs; up to a second of acknowledged tasks can be lost
on a crash), `--peer-fsync always` for a flush per write like our PostgreSQL's commits.

Same shape as the runtime's e2e phase: `agents` worker processes of `agent_concurrency` threads each, a fixed
number of tasks published as fast as `load_channels` threads can, tasks/s from the first publish to the moment
the result backend holds every result. Bounded in count and time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from timeline import timeline  # bench/, first on sys.path

BENCH_DIR = Path(__file__).resolve().parent


class PeerUnavailable(RuntimeError):
    pass


def redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise PeerUnavailable("redis-server not found: apt-get install redis-server (make system-packages)")
    return path


def _point_app_at(port: int) -> None:
    """This process's Celery app publishes to (and reads results from) the Redis on `port`."""
    from peer_celery_app import app

    app.conf.update(broker_url=f"redis://127.0.0.1:{port}/0", result_backend=f"redis://127.0.0.1:{port}/1")


class PeerCelery:
    """Redis and the Celery workers as child processes of the bench; stop() ends only those pids."""

    def __init__(self, workdir: Path, port: int, *, fsync: str = "everysec") -> None:
        self.workdir = workdir
        self.port = port
        self.fsync = fsync
        self.redis: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "BENCH_PEER_BROKER": f"redis://127.0.0.1:{port}/0",
            "BENCH_PEER_BACKEND": f"redis://127.0.0.1:{port}/1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")])),
        }

    def start_redis(self, timeout: float = 30.0) -> None:
        import redis

        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.redis = subprocess.Popen(
            [
                redis_server(),
                *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.workdir)),
                # Snapshots off: the append-only file is the durability; its fsync policy is the point.
                *("--save", "", "--appendonly", "yes", "--appendfsync", self.fsync),
                *("--protected-mode", "yes", "--daemonize", "no"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(redis.exceptions.ConnectionError):
                if client.ping():
                    return
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise PeerUnavailable(f"redis-server did not start; see {self.workdir / 'redis.log'}")
            time.sleep(0.1)

    def durability(self) -> dict[str, str]:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)
        settings: dict[str, str] = {}
        for name in ("appendonly", "appendfsync", "save"):
            settings.update(client.config_get(name))
        settings["version"] = str(client.info("server").get("redis_version", ""))
        return settings

    def start_workers(self, processes: int, threads: int, timeout: float = 60.0) -> None:
        from peer_celery_app import app

        _point_app_at(self.port)
        for index in range(processes):
            log = (self.workdir / f"worker-{index}.log").open("ab")
            self.workers.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "celery", "-A", "peer_celery_app", "worker"),
                        # Threads: one process running `threads` tasks at once, as an agent process does.
                        *("--pool", "threads", "--concurrency", str(threads), "--hostname", f"peer{index}@bench"),
                        *("--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"),
                    ],
                    env=self.env,
                    cwd=BENCH_DIR,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + timeout
        while len(app.control.ping(timeout=1.0) or []) < processes:
            if time.monotonic() > deadline or any(w.poll() is not None for w in self.workers):
                raise PeerUnavailable(f"Celery workers did not start; see {self.workdir}/worker-*.log")

    def pids(self) -> dict[str, Callable[[], list[int]]]:
        return {
            "redis": lambda: [self.redis.pid] if self.redis else [],
            "celery_workers": lambda: [w.pid for w in self.workers],
            "bench": lambda: [os.getpid()],
        }

    def stop(self) -> None:
        from runtime_bench import terminate

        for proc in [*self.workers, self.redis]:
            if proc is not None:
                terminate(proc, 20)
        self.workers = []


def measure(
    workdir: Path, *, fsync: str, workers: int, threads: int, tasks: int, publishers: int, timeout: float
) -> dict[str, Any]:
    """One round: Redis and the workers started, the workload run and metered, all of it stopped again.

    Run in a process of its own per round (the bench does): this process's Celery app is pointed at the Redis
    it starts here, on a free port, and keeps its connections to it.
    """
    from runtime_bench import CpuMeter, free_port

    peer = PeerCelery(workdir, free_port(), fsync=fsync)
    try:
        peer.start_redis()
        peer.start_workers(workers, threads)
        meter = CpuMeter(peer.pids(), waits=())
        meter.start()
        load = run_workload(peer.port, tasks, publishers, timeout)
        cpu = meter.stop()
        return {"load": load, "cpu": cpu, "redis": peer.durability()}
    finally:
        peer.stop()


def run_workload(port: int, tasks: int, publishers: int, timeout: float) -> dict[str, Any]:
    """Publish `tasks` no-op tasks from `publishers` threads, then wait until every result is stored."""
    import redis
    from peer_celery_app import noop

    _point_app_at(port)
    results = redis.Redis(host="127.0.0.1", port=port, db=1)
    sent: dict[str, float] = {}
    publish_ms: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def publish(share: range) -> None:
        for i in share:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            try:
                task_id = noop.apply_async(({"phase": "peer", "i": i},)).id
            except Exception as exc:  # reported, as the runtime's submit errors are
                with lock:
                    errors.append(repr(exc)[:200])
                continue
            now = time.time()
            with lock:
                sent[task_id] = now
                publish_ms.append((time.perf_counter() - started) * 1000)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=publish, args=(range(p, tasks, publishers),)) for p in range(publishers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    publish_seconds = time.perf_counter() - t0
    done = 0
    while time.monotonic() < deadline:
        done = int(results.dbsize())
        if done >= len(sent):
            break
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    all_done = done >= len(sent) and bool(sent)
    finished = _submit_to_done(results, sent)
    return {
        "tasks": tasks,
        "published": len(sent),
        "publish_errors": len(errors),
        "publish_error_sample": errors[:1],
        "all_succeeded": all_done,
        "wall_seconds": round(wall, 3),
        "tasks_per_second": round(len(sent) / wall, 1) if all_done and wall > 0 else None,
        "publish_per_second": round(len(sent) / publish_seconds, 1) if publish_seconds else None,
        "publish_ms": publish_ms,
        "submit_to_complete_ms": [ms for _, ms in finished],
        "timeline": timeline(finished, min(sent.values(), default=0.0)),
    }


def _submit_to_done(results: Any, sent: dict[str, float]) -> list[tuple[float, float]]:
    """Per task: when it was done (epoch s) and ms from its publish (this process's clock) to the result's
    date_done (the worker's, same machine)."""
    ids = list(sent)
    out: list[tuple[float, float]] = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        for task_id, raw in zip(chunk, results.mget([f"celery-task-meta-{i}" for i in chunk]), strict=True):
            if raw is None:
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                done = datetime.fromisoformat(json.loads(raw)["date_done"])
                # Celery writes UTC; older versions without an offset.
                done_at = (done if done.tzinfo else done.replace(tzinfo=UTC)).timestamp()
                out.append((done_at, (done_at - sent[task_id]) * 1000))
    return out
