"""Run the `ai-agents` CLI as a user would, and tell whether a process is still running."""

from __future__ import annotations

import os
import subprocess
import sys

CLI = [sys.executable, "-m", "ai_agents"]


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"ai-agents {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False
