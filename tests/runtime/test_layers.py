"""The layers hold: the client side of the runtime (client, agent, handlers, CLI) never loads the server's store.

Each import runs in a fresh interpreter, so modules the test process already holds cannot hide a dependency.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# The orchestrator's side: the database driver, the store over it, and the orchestrator that owns both.
SERVER_ONLY = ("asyncpg", "ai_agents.store", "ai_agents.orchestrator")


def _loaded_by(module: str) -> list[str]:
    """The modules `import <module>` loads in a fresh interpreter."""
    probe = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"`import {module}` failed:\n{done.stderr}"
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def _server_only(loaded: list[str]) -> list[str]:
    return [m for m in loaded if any(m == p or m.startswith(p + ".") for p in SERVER_ONLY)]


@pytest.mark.parametrize(
    "module",
    [
        "ai_agents.client",
        "ai_agents.agent",
        "ai_agents.handlers",
        "ai_agents.convert",
        "ai_agents.api_json",
        "ai_agents.cli",
    ],
)
def test_client_side_does_not_load_the_store(module: str) -> None:
    loaded = _loaded_by(module)
    assert module in loaded
    assert not _server_only(loaded), (
        f"`import {module}` loads the orchestrator's side: {_server_only(loaded)}. Conversions the client needs "
        "belong in ai_agents.convert; record-to-message conversion in ai_agents.orchestrator.records_to_proto."
    )


def test_the_probe_sees_the_store_where_it_belongs() -> None:
    # The control: the same probe does find the driver and the store behind the orchestrator's gRPC API.
    loaded = _server_only(_loaded_by("ai_agents.orchestrator.grpc_api"))
    assert "asyncpg" in loaded
    assert "ai_agents.store.records" in loaded
