"""Free TCP ports on 127.0.0.1 for the processes a local fleet (and the tests and the bench) start.

A port found free here is bound later, by a child process; in between, anything may take it. Two rules make
that unlikely. Ports are picked below the kernel's ephemeral range: the kernel hands ports from that range to
every outgoing connection and every bind to port 0, so one seen free there can be taken by any process at any
moment (a fleet's own connections to PostgreSQL included). And this process never hands out the same port twice,
so the four ports of one server, or the servers of one fleet, cannot collide with each other.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path
from typing import TypedDict

# Where picks start: above the well-known and most registered service ports that a developer's machine runs.
_LOWEST = 20000
_ATTEMPTS = 500
# The fewest ports worth picking from, below or above the ephemeral range.
_ROOM = 1000
_EPHEMERAL_DEFAULT = (32768, 60999)


def ephemeral_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    """The kernel's ephemeral port range (Linux's default where it cannot be read)."""
    try:
        low, high = (int(v) for v in path.read_text().split())
    except (OSError, ValueError):
        return _EPHEMERAL_DEFAULT
    return low, high


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _outside(ephemeral_low: int, ephemeral_high: int) -> tuple[int, int]:
    """Ports to pick from: below the ephemeral range, else above it (a machine whose range starts low), else all
    from _LOWEST up (a range that leaves no room: then only the bind check and the no-repeat rule are left)."""
    if ephemeral_low - 1 - _LOWEST >= _ROOM:
        return _LOWEST, ephemeral_low - 1
    if 65535 - ephemeral_high >= _ROOM:
        return max(_LOWEST, ephemeral_high + 1), 65535
    return _LOWEST, 65535


class PortPicker:
    """Hands out ports that were free when picked, below the ephemeral range, each at most once."""

    def __init__(self, rng: random.Random | None = None, ephemeral: tuple[int, int] | None = None) -> None:
        self._rng = rng or random.Random()
        self._given: set[int] = set()
        self._lock = threading.Lock()
        self._range = _outside(*(ephemeral or ephemeral_range()))

    def pick(self) -> int:
        low, high = self._range
        with self._lock:
            for _ in range(_ATTEMPTS):
                port = self._rng.randint(low, high)
                if port not in self._given and _bindable(port):
                    self._given.add(port)
                    return port
        raise RuntimeError(f"no free TCP port on 127.0.0.1 in {low}-{high} after {_ATTEMPTS} tries")


_PICKER = PortPicker()


def free_port() -> int:
    """A port on 127.0.0.1 that was free just now and that this process has not handed out before."""
    return _PICKER.pick()


class ServerPorts(TypedDict):
    """The four ports every ai-agents process serves (named as the settings' `*_port` fields without `_port`)."""

    http: int
    grpc: int
    health: int
    metrics: int


def server_ports() -> ServerPorts:
    """Four free ports for one ai-agents process."""
    return {"http": free_port(), "grpc": free_port(), "health": free_port(), "metrics": free_port()}


def loopback_port_env(ports: ServerPorts) -> dict[str, str]:
    """The environment that makes an ai-agents process serve `ports` on 127.0.0.1 only."""
    return {
        "AI_AGENTS_HOST": "127.0.0.1",
        "AI_AGENTS_HTTP_PORT": str(ports["http"]),
        "AI_AGENTS_GRPC_PORT": str(ports["grpc"]),
        "AI_AGENTS_HEALTH_PORT": str(ports["health"]),
        "AI_AGENTS_METRICS_PORT": str(ports["metrics"]),
    }
