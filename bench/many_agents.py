"""The `many` phase's load processes: 1,000 (or --many-agents) registered agents leasing and completing at once.

Each simulated agent is a coroutine with the shape of a real agent of capacity 1: LeaseTasks (max 1, a short
long-poll), then CompleteTask, again, until the phase's deadline. Agents are spread over a few processes, each
sharing a few gRPC channels, so the orchestrator sees 1,000 agents' calls without 1,000 processes on 2 CPUs.
They send no heartbeats: the phase is shorter than a lease (30 s), and heartbeats have their own phase.
Every loop stops at the deadline; every call has a deadline of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any


def worker(args: dict[str, Any]) -> dict[str, Any]:
    """Entry point in a spawned load process."""
    return asyncio.run(_agents(**args))


def _error_name(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return str(code().name)
        except Exception:
            pass
    return type(exc).__name__


async def _agents(
    *, target: str, ids: list[str], agent_type: str, seconds: float, channels: int, start_at: float
) -> dict[str, Any]:
    from ai_agents.client import OrchestratorClient

    cpu0 = time.process_time()
    client = await OrchestratorClient.connect(target, timeout=10, channels=channels)
    lease_ms: list[float] = []
    complete_ms: list[float] = []
    errors: Counter[str] = Counter()
    counts = Counter[str]()
    try:
        await asyncio.wait_for(client.channel.channel_ready(), 10)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.monotonic() + seconds

        async def agent(agent_id: str) -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    batch = await client.lease_task_batch(
                        agent_id=agent_id, agent_type=agent_type, max_tasks=1, wait_seconds=1
                    )
                except Exception as exc:  # reported, never raised
                    errors[f"LeaseTasks {_error_name(exc)}"] += 1
                    await asyncio.sleep(0.1)
                    continue
                if not batch.leases:
                    counts["empty_leases"] += 1
                    continue
                lease_ms.append((time.perf_counter() - started) * 1000)
                for lease in batch.leases:
                    started = time.perf_counter()
                    try:
                        await client.complete_task(lease.task.task_id, lease.lease_token, {"ok": True}, timeout=10)
                    except Exception as exc:
                        errors[f"CompleteTask {_error_name(exc)}"] += 1
                        continue
                    complete_ms.append((time.perf_counter() - started) * 1000)
                    counts["completed"] += 1

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(agent(a) for a in ids)), seconds + 60)
        elapsed = time.perf_counter() - t0
    finally:
        await client.close()
    return {
        "agents": len(ids),
        "completed": counts["completed"],
        "empty_leases": counts["empty_leases"],
        "errors": dict(errors),
        "seconds": round(elapsed, 3),
        "lease_ms": lease_ms,
        "complete_ms": complete_ms,
        "load_process_cpu_seconds": round(time.process_time() - cpu0, 3),
    }
