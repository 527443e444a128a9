"""`ai-agents local up/down`: PostgreSQL, N orchestrators and agents per type as local processes."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ai_agents.domain import AGENT_TYPES
from ai_agents.local.ports import loopback_port_env, server_ports
from ai_agents.local.postgres import FAST_WARNING, LocalPostgres
from ai_agents.local.supervisor import Supervisor
from ai_agents.serving.identity import mint_local_credential

STATE_FILE = "state.json"


def default_state_dir() -> Path:
    return Path(os.environ.get("AI_AGENTS_LOCAL_DIR", ".local-fleet")).resolve()


@dataclass
class ProcessInfo:
    kind: str
    pid: int
    http: int
    grpc: int
    health: int
    metrics: int
    agent_type: str = ""
    agent_id: str = ""
    # The log file's name; restarts keep it, with the same ports and environment.
    name: str = ""
    restarts: int = 0


@dataclass
class FleetState:
    state_dir: str
    dsn: str
    owns_postgres: bool
    processes: list[ProcessInfo] = field(default_factory=list)
    # The throwaway PostgreSQL runs without crash safety (`local up --fast`).
    fast: bool = False
    # The `local up` process that restarts what exits; `local down` stops it first.
    supervisor_pid: int = 0

    @property
    def orchestrators(self) -> list[ProcessInfo]:
        return [p for p in self.processes if p.kind == "orchestrator"]

    @property
    def agents(self) -> list[ProcessInfo]:
        return [p for p in self.processes if p.kind == "agent"]

    def grpc_target(self) -> str:
        # gRPC's ipv4: scheme takes several addresses: round_robin spreads calls over every orchestrator.
        return "ipv4:" + ",".join(f"127.0.0.1:{p.grpc}" for p in self.orchestrators)

    def summary(self) -> dict[str, object]:
        return {
            "orchestrators": [
                {
                    "http": f"http://127.0.0.1:{p.http}",
                    "grpc": f"127.0.0.1:{p.grpc}",
                    "pid": p.pid,
                    "metrics": f"http://127.0.0.1:{p.metrics}/metrics",
                }
                for p in self.orchestrators
            ],
            "agents": [
                {
                    "agent_type": p.agent_type,
                    "agent_id": p.agent_id,
                    "pid": p.pid,
                    "metrics": f"http://127.0.0.1:{p.metrics}/metrics",
                }
                for p in self.agents
            ],
            "grpc_target": self.grpc_target(),
            "dsn": self.dsn,
            "fast": self.fast,
            **({"warning": FAST_WARNING} if self.fast else {}),
            "supervisor_pid": self.supervisor_pid,
        }

    def save(self) -> None:
        # Write then rename: `local down` and the chaos monkey read this file while the supervisor updates it.
        path = Path(self.state_dir) / STATE_FILE
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(asdict(self), indent=2))
        partial.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> FleetState | None:
        path = state_dir / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["processes"] = [ProcessInfo(**p) for p in data["processes"]]
        return cls(**data)


def _wait_ready(url: str, pid: int, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise RuntimeError(f"process {pid} exited during start-up; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s ({last}); see {log_path}")


class Fleet:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        # What this process started, by name: how to start it again, and the handle that tells it exited.
        self._specs: dict[str, tuple[str, dict[str, str]]] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, kind: str, env: Mapping[str, str], name: str) -> tuple[int, Path]:
        log_path = self.state_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._specs[name] = (kind, dict(env))
        with log_path.open("ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ai_agents", kind],
                env={**os.environ, **env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # A session of its own: the fleet outlives `local up --detach` and a Ctrl-C of the shell.
                start_new_session=True,
            )
        self._children[name] = proc
        return proc.pid, log_path

    def up(
        self,
        *,
        dsn: str | None,
        orchestrators: int,
        agents: Mapping[str, int],
        agent_env: Mapping[str, str] | None = None,
        orchestrator_env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        fast: bool = False,
    ) -> FleetState:
        if fast and dsn is not None:
            raise ValueError("--fast tunes the throwaway PostgreSQL; it cannot apply to a database given by --dsn")
        if FleetState.load(self.state_dir) is not None:
            raise RuntimeError(f"a local fleet is already recorded in {self.state_dir}; run `ai-agents local down`")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # PostgreSQL then runs as an unprivileged user, who must be able to traverse into its data directory.
            self.state_dir.chmod(self.state_dir.stat().st_mode | 0o011)
        owns_postgres = dsn is None
        if dsn is None:
            postgres = LocalPostgres(self.state_dir / "postgres", fast=fast)
            postgres.start()
            dsn = postgres.dsn
        state = FleetState(
            state_dir=str(self.state_dir), dsn=dsn, owns_postgres=owns_postgres, fast=fast, supervisor_pid=os.getpid()
        )
        state.save()
        # Agent identity `local`: only the orchestrators know the secret; each agent gets its own credential.
        identity_secret = secrets.token_urlsafe(32)
        try:
            for index in range(orchestrators):
                ports = server_ports()
                env = {
                    **loopback_port_env(ports),
                    "AI_AGENTS_DATABASE_URL": dsn,
                    "AI_AGENTS_ORCHESTRATOR_ID": f"orchestrator-{index}",
                    "AI_AGENTS_AGENT_IDENTITY": "local",
                    "AI_AGENTS_AGENT_IDENTITY_SECRET": identity_secret,
                    **(orchestrator_env or {}),
                }
                name = f"orchestrator-{index}"
                pid, log_path = self._spawn("orchestrator", env, name)
                state.processes.append(ProcessInfo("orchestrator", pid, name=name, **ports))
                state.save()
                _wait_ready(f"http://127.0.0.1:{ports['health']}/readyz", pid, timeout, log_path)
            target = state.grpc_target()
            for agent_type, count in agents.items():
                if agent_type not in AGENT_TYPES:
                    raise ValueError(f"unknown agent type {agent_type!r}")
                for index in range(count):
                    ports = server_ports()
                    agent_id = f"local-{agent_type}-{index}"
                    env = {
                        **loopback_port_env(ports),
                        "AI_AGENTS_AGENT_TYPE": agent_type,
                        "AI_AGENTS_AGENT_ID": agent_id,
                        "AI_AGENTS_ORCHESTRATOR_TARGET": target,
                        "AI_AGENTS_AGENT_CREDENTIAL": mint_local_credential(identity_secret, agent_id, agent_type),
                        **(agent_env or {}),
                    }
                    pid, log_path = self._spawn("agent", env, agent_id)
                    state.processes.append(
                        ProcessInfo("agent", pid, agent_type=agent_type, agent_id=agent_id, name=agent_id, **ports)
                    )
                    state.save()
            for proc in state.agents:
                _wait_ready(
                    f"http://127.0.0.1:{proc.health}/readyz",
                    proc.pid,
                    timeout,
                    self.state_dir / "logs" / f"{proc.agent_id}.log",
                )
        except BaseException:
            self.down()
            raise
        return state

    def supervisor(self, state: FleetState) -> Supervisor:
        """Restarts, with back-off, every process this Fleet started in `state` that exits."""

        def exit_code(name: str) -> int | None:
            return self._children[name].poll()

        def restart(name: str) -> int:
            info = next(p for p in state.processes if p.name == name)
            kind, env = self._specs[name]
            info.pid, _ = self._spawn(kind, env, name)
            info.restarts += 1
            state.save()
            return info.restarts

        return Supervisor(
            [p.name for p in state.processes if p.name in self._children], exit_code=exit_code, restart=restart
        )

    def reload(self) -> int | None:
        """SIGHUP every orchestrator and agent: each re-reads its live configuration file at once."""
        state = FleetState.load(self.state_dir)
        if state is None:
            return None
        for proc in state.processes:
            _signal(proc.pid, signal.SIGHUP)
        return len(state.processes)

    def down(self, timeout: float = 30.0) -> FleetState | None:
        """Stop the supervisor, then SIGTERM agents (they drain and deregister), orchestrators, then PostgreSQL."""
        state = FleetState.load(self.state_dir)
        if state is None:
            return None
        if state.supervisor_pid and state.supervisor_pid != os.getpid() and _is_local_up(state.supervisor_pid):
            # It stops the fleet itself on SIGTERM; stopping processes under it would only get them restarted.
            _signal(state.supervisor_pid, signal.SIGTERM)
            deadline = time.monotonic() + 3 * timeout
            while _alive(state.supervisor_pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(state.supervisor_pid):
                _signal(state.supervisor_pid, signal.SIGKILL)
            remaining = FleetState.load(self.state_dir)
            if remaining is None:
                return state
            # It had to be killed: whatever it did not get to is stopped below.
            state = remaining
        for group in (state.agents, state.orchestrators):
            for proc in group:
                _signal(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for proc in group:
                while _alive(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _alive(proc.pid):
                    _signal(proc.pid, signal.SIGKILL)
        if state.owns_postgres:
            LocalPostgres(self.state_dir / "postgres").stop()
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        return state


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, sig)


def _is_local_up(pid: int) -> bool:
    """The pid runs `ai-agents local up` (not another process that reused the pid of a supervisor that died)."""
    if not _alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the pid, as for every other process in the state file
    return b"local" in argv and b"up" in argv


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        # Reap it if it is our child; a zombie would otherwise look alive.
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
