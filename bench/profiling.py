"""Sampling profiles of bench processes with py-spy, summarised into where the CPU goes.

py-spy reads another process's stacks from outside (no code change, no tracing overhead in the target); it is
run with `--nonblocking` so the target is never paused, and without `--idle`, so a sample is only taken while a
thread runs: sample shares are shares of CPU time, comparable with the bench's CPU meters.

Python frames alone charge the time spent in compiled code (uvloop, grpc's Cython core, asyncpg's protocol)
to the Python frame that entered it, often the event loop's `run`. `native=True` adds the C frames, at the
price of pausing the target for each sample (py-spy cannot unwind native stacks without pausing).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# Where a sample's innermost frame lives -> what it is spent on. First match wins; checked against py-spy's
# short file names ("asyncpg/pool.py", "ai_agents/store/tasks.py", "json/encoder.py").
_CATEGORIES = (
    ("asyncpg", "asyncpg (driver)"),
    ("grpc/", "grpc (transport)"),
    ("grpc_", "grpc (transport)"),
    ("google/protobuf", "protobuf"),
    ("json/", "json"),
    ("logging/", "logging"),
    ("prometheus_client", "metrics"),
    ("opentelemetry", "tracing"),
    ("ai_agents/store", "ai_agents.store"),
    ("ai_agents/orchestrator", "ai_agents.orchestrator"),
    ("ai_agents/serving", "ai_agents.serving"),
    ("ai_agents/observability", "ai_agents.observability"),
    ("ai_agents/", "ai_agents (other)"),
    ("asyncio/", "event loop"),
    ("uvloop", "event loop"),
    # native frames (native=True): the shared object or C source they come from. uvloop's streams carry the
    # database connections (grpc has its own sockets), so their writes and reads are asyncpg's I/O.
    ("cygrpc", "grpc (transport)"),
    ("grpc", "grpc (transport)"),
    ("UVStream", "asyncpg socket I/O (uvloop)"),
    ("uv__read", "asyncpg socket I/O (uvloop)"),
    ("loop.c", "event loop"),
    ("libuv", "event loop"),
    ("uv__", "event loop"),
    ("libpython", "python interpreter"),
    ("Python/", "python interpreter"),
    ("Objects/", "python interpreter"),
    ("Include/", "python interpreter"),
    ("object.h", "python interpreter"),
    ("threading.py", "threads outside the event loop"),
)
# A system call is charged to the code that made it: these leaf frames are skipped when choosing a category.
_SYSTEM = ("libc.so", "libpthread", "[vdso]", "ld-linux")
# gRPC methods of the task path: a sample whose stack passes through one is charged to it.
_RPCS = (
    "SubmitTask",
    "SubmitTasks",
    "LeaseTasks",
    "CompleteTask",
    "CompleteTasks",
    "FailTask",
    "Heartbeat",
    "GetStatus",
    "RegisterAgent",
)
# Work a method hands to tasks of its own, whose stacks do not show the method: SubmitTasks and CompleteTasks run
# each item in a task of its own (gathered).
_RPC_OF_HELPER = {"_submit_one": "SubmitTasks", "_complete_one": "CompleteTasks"}


def py_spy() -> str | None:
    """py-spy from the bench's own virtualenv, else PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Sampler:
    """`py-spy record` of one pid into a raw (collapsed stacks) file, between start() and stop()."""

    def __init__(self, pid: int, out: Path, rate: int = 100, *, native: bool = False) -> None:
        self.out = out
        self._pid = pid
        self._rate = rate
        self._native = native
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> bool:
        binary = py_spy()
        if binary is None:
            return False
        self._proc = subprocess.Popen(
            [
                *(binary, "record", "--pid", str(self._pid), "--format", "raw", "--rate", str(self._rate)),
                *(("--native",) if self._native else ("--nonblocking",)),
                *("--output", str(self.out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        return True

    def stop(self) -> Path | None:
        if self._proc is None:
            return None
        # SIGINT makes py-spy write its output and exit; it is our own child, ended by its pid.
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        return self.out if self.out.exists() else None


def _stacks(raw: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def _category(frame: str) -> str:
    for needle, name in _CATEGORIES:
        if needle in frame:
            return name
    return "other"


def _function(frame: str) -> str:
    # "submit (ai_agents/store/tasks.py:73)" -> "ai_agents/store/tasks.py:submit"
    name, _, where = frame.partition(" (")
    return f"{where.rsplit(':', 1)[0]}:{name}" if where else name


def summarise(raw: Path, top: int = 15) -> dict[str, Any]:
    """Shares (percent of samples) by category of the innermost frame, by gRPC method, and the top functions.

    `self` counts the function that was running; `inclusive` counts every function on the stack once.
    """
    stacks = _stacks(raw)
    total = sum(stacks.values())
    if not total:
        return {"samples": 0}
    by_category: Counter[str] = Counter()
    by_rpc: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, n in stacks.items():
        caller = next((f for f in reversed(stack) if not any(s in f for s in _SYSTEM)), stack[-1])
        by_category[_category(caller)] += n
        self_time[_function(stack[-1])] += n
        for fn in {_function(f) for f in stack}:
            inclusive[fn] += n
        # "TaskServicer.SubmitTask (ai_agents/orchestrator/grpc_api.py:64)" -> "SubmitTask"
        names = {f.partition(" (")[0].rpartition(".")[2] for f in stack}
        names |= {_RPC_OF_HELPER[n] for n in names if n in _RPC_OF_HELPER}
        rpc = next((r for r in _RPCS if r in names), "outside the task RPCs")
        by_rpc[rpc] += n

    def pct(counter: Counter[str], limit: int | None = None) -> dict[str, float]:
        return {k: round(100 * v / total, 1) for k, v in counter.most_common(limit)}

    return {
        "samples": total,
        "by_category_pct": pct(by_category),
        "by_rpc_pct": pct(by_rpc),
        "top_self_pct": pct(self_time, top),
        "top_inclusive_ai_agents_pct": pct(Counter({k: v for k, v in inclusive.items() if "ai_agents/" in k}), top),
    }
