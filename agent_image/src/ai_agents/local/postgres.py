"""A throwaway PostgreSQL server from the machine's own binaries (initdb, pg_ctl), on loopback."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ai_agents.local.ports import free_port


class PostgresNotFound(RuntimeError):
    pass


# PostgreSQL's own defaults, which the chart's embedded PostgreSQL keeps: a commit is on disk before it is
# acknowledged, so a crash of the server (or the machine) loses no task that got 201/OK. Named explicitly so a
# postgresql.conf left in the data directory cannot weaken them.
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
# `--fast`: commits return before the WAL is flushed. With synchronous_commit=off even a crash of PostgreSQL
# alone (`pg_ctl -m immediate stop`, an OOM kill) loses the last acknowledged commits; fsync and
# full_page_writes off add a machine crash corrupting the data directory.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
FAST_WARNING = (
    "fast mode: the local PostgreSQL runs with fsync=off, synchronous_commit=off, full_page_writes=off; "
    "a crash of PostgreSQL or of the machine can lose tasks that were acknowledged"
)


def find_pg_bin() -> Path:
    """Directory holding initdb and pg_ctl: PG_BIN, then PATH, then Debian's /usr/lib/postgresql/<v>/bin."""
    if env := os.environ.get("PG_BIN"):
        return Path(env)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise PostgresNotFound(
        "PostgreSQL server binaries not found: install them (Debian: apt-get install postgresql) or set PG_BIN"
    )


def _run_as_prefix() -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` (or `nobody`) user when we are root."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise PostgresNotFound("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


def _chown_for_postgres(path: Path) -> None:
    if os.geteuid() != 0:
        return
    for parent in path.resolve().parents:
        if not os.stat(parent).st_mode & 0o001:
            raise PostgresNotFound(
                f"PostgreSQL runs as an unprivileged user here, but {parent} is not traversable by others; "
                "choose a data directory under a world-traversable path such as /tmp"
            )
    user = "postgres" if _has_user("postgres") else "nobody"
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class LocalPostgres:
    """initdb + pg_ctl start in `data_dir`; `dsn` is ready after `start()`; `stop()` is idempotent.

    Durable by default; `fast=True` trades crash safety for commit latency (see FAST_SETTINGS).
    """

    data_dir: Path
    port: int = 0
    user: str = "ai_agents"
    database: str = "ai_agents"
    max_connections: int = 300
    fast: bool = False

    @property
    def durability_settings(self) -> dict[str, str]:
        return FAST_SETTINGS if self.fast else DURABLE_SETTINGS

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout: float = 60.0) -> None:
        pg_bin = find_pg_bin()
        prefix = _run_as_prefix()
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "pgdata"
        sockets = self.data_dir / "sockets"
        sockets.mkdir(exist_ok=True)
        _chown_for_postgres(self.data_dir)
        if not (pgdata / "PG_VERSION").exists():
            subprocess.run(
                [
                    *prefix,
                    str(pg_bin / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    self.user,
                    "--auth=trust",
                    # Only a fast server may skip flushing its freshly created data directory.
                    *(["--no-sync"] if self.fast else []),
                    "-E",
                    "UTF8",
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
        durability = " ".join(f"-c {name}={value}" for name, value in self.durability_settings.items())
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={sockets} "
            f"-c max_connections={self.max_connections} {durability} -c shared_buffers=128MB"
        )
        subprocess.run(
            [
                *prefix,
                str(pg_bin / "pg_ctl"),
                "-D",
                str(pgdata),
                "-o",
                options,
                "-l",
                str(self.data_dir / "postgres.log"),
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=timeout + 10,
        )
        server = ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]  # what psql and createdb connect to
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run(
                [
                    *prefix,
                    str(pg_bin / "psql"),
                    *server,
                    "-d",
                    "postgres",
                    "-tAc",
                    f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if done.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not accept connections: {done.stderr}")
            time.sleep(0.2)
        if done.stdout.strip() != "1":
            subprocess.run(
                [*prefix, str(pg_bin / "createdb"), *server, self.database],
                check=True,
                capture_output=True,
                timeout=30,
            )

    def stop(self, *, mode: Literal["fast", "immediate"] = "fast") -> None:
        """Stop the server; `immediate` is a crash stop (no checkpoint: the next start replays the WAL)."""
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "postmaster.pid").exists():
            return
        subprocess.run(
            [*_run_as_prefix(), str(find_pg_bin() / "pg_ctl"), "-D", str(pgdata), "-m", mode, "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
