"""The garbage collector's settings for a long-running server process.

CPython starts a young-generation collection every 700 container allocations. One task's trip through the
orchestrator (protobuf messages, asyncpg records, dicts, futures) allocates hundreds: in the bench's e2e phase
the collector ran about a hundred times a second and took 8-9% of the orchestrator's CPU, to find almost
nothing, since reference counting frees what a request allocates and cycles are rare here. Collections are made
rarer, not turned off, so the cycles that do occur are still freed.

What exists once the process has imported everything and configured itself (modules, classes, settings) lives
as long as the process: `gc.freeze()` moves it out of every generation, so the full collections that still run
no longer walk it each time.
"""

from __future__ import annotations

import gc

# Container allocations (net of frees) between young collections: at a thousand tasks a second, a few a second.
YOUNG_GENERATION_THRESHOLD = 20_000


def settle_for_serving() -> None:
    """Freeze what startup made and make young collections rarer; call once, just before serving."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)
