"""The test xDS management server (tests/xds-control-plane, go-control-plane) as a process the tests drive.

`build_control_plane()` compiles it with `go build` (a no-op when Go's build cache is warm; `make setup` warms
it); `ControlPlane` runs it on loopback, serves snapshots and waits for the client to ACK them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO_ROOT / "tests" / "xds-control-plane"
# Where `make xds-control-plane` puts it (unless XDS_CONTROL_PLANE_BIN says otherwise); the fixture builds there too.
DEFAULT_BINARY = REPO_ROOT / "build" / "bin" / "xds-control-plane"

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
ALL_TYPES = (LISTENER, ROUTE, CLUSTER, ENDPOINTS)


class ControlPlaneUnavailable(Exception):
    """Neither Go nor a built binary is here: the caller skips with this reason."""


def build_control_plane(*, timeout: float = 600) -> Path:
    """The binary (at XDS_CONTROL_PLANE_BIN, as make names it), rebuilt from the pinned go.mod when Go is installed,
    so a test never runs stale sources."""
    binary = Path(os.environ.get("XDS_CONTROL_PLANE_BIN") or DEFAULT_BINARY)
    if shutil.which("go") is None:
        if binary.is_file():
            return binary
        raise ControlPlaneUnavailable(f"go is not installed and {binary} is not built (run `make xds-control-plane`)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=SOURCE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"go build of {SOURCE_DIR} failed:\n{result.stderr}")
    return binary


class ControlPlane:
    """One running management server: `xds_address` for the bootstrap, `serve()` to publish resources."""

    def __init__(self, binary: Path, log_path: Path) -> None:
        self._log_path = log_path
        self._log = log_path.open("wb")
        self._proc = subprocess.Popen(
            [str(binary), "-host", "127.0.0.1"], stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        assert self._proc.stdout is not None
        # Its first stdout line, printed once both ports listen, names them (no free-port race).
        line = self._proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"xds-control-plane exited before listening:\n{self.log()}")
        ports = json.loads(line)
        self.xds_address: str = ports["xds"]
        self._admin = f"http://{ports['admin']}"

    def bootstrap(self, node_id: str = "ai-agents-test-client") -> dict[str, Any]:
        """A gRPC xDS bootstrap naming this server, as the chart's ConfigMap would hold it."""
        return {
            "xds_servers": [
                {
                    "server_uri": self.xds_address,
                    "channel_creds": [{"type": "insecure"}],
                    "server_features": ["xds_v3"],
                }
            ],
            "node": {"id": node_id, "locality": {"zone": "test"}},
        }

    async def serve(self, resources: dict[str, list[dict[str, Any]]]) -> str:
        """Publish a snapshot (listeners, routes, clusters, endpoints in protobuf JSON); returns its version."""
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{self._admin}/snapshot", json=resources) as response,
        ):
            body = await response.json()
            assert response.status == 200, f"the control plane refused the snapshot: {body}"
            return str(body["version"])

    async def status(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(f"{self._admin}/status") as response:
            result: dict[str, Any] = await response.json()
            return result

    async def wait_acked(self, version: str, *, types: tuple[str, ...] = ALL_TYPES, timeout: float = 15) -> None:
        """Until the client has ACKed `version` of every type; a NACK ends the wait early with its reason."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = (await self.status())["types"]
            # Only a refusal of this version ends the wait: one of an earlier version stays in the status until
            # the client answers this one.
            nacks = {t: last[t]["nack"] for t in types if last.get(t, {}).get("nacked") == version}
            assert not nacks, f"the client refused version {version}: {nacks}"
            if all(last.get(t, {}).get("acked") == version for t in types):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the client did not ACK version {version} within {timeout}s; it last said {last}")

    async def wait_disconnected(self, *, timeout: float = 15) -> None:
        """Until no client holds an ADS stream open (gRPC drops its xDS client a moment after the channel)."""
        deadline = time.monotonic() + timeout
        streams = None
        while time.monotonic() < deadline:
            streams = (await self.status())["streams"]
            if streams == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{streams} ADS stream(s) still open {timeout}s after the client closed")

    def log(self) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()
