"""Static tier: `istioctl analyze --use-kube=false` over every rendered scenario of the umbrella and the mesh
chart (defaults and each ci/*-values.yaml). No error, and no warning or info message beyond
tests/istio-analyze-allowlist.yaml. istioctl is the one the offline cluster builds (`E2E_ISTIOCTL`, else its
cache, else .tools/bin or PATH); without one the tests skip and say where they looked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import charttree
import helmrender
import pytest
import yaml
from rendering import rendered

ALLOWLIST = helmrender.REPO_ROOT / "tests" / "istio-analyze-allowlist.yaml"
MESH_CHARTS = ("ai-agents", "mesh")
SCENARIOS = [s for s in charttree.scenarios() if s.chart in MESH_CHARTS]


def _offline_cluster_istioctl() -> Path:
    versions = helmrender.REPO_ROOT / "hack" / "offline-cluster" / "versions.env"
    pins = dict(
        line.split("=", 1) for line in versions.read_text().splitlines() if "=" in line and not line.startswith("#")
    )
    cache = Path(os.environ.get("OFFLINE_CLUSTER_CACHE", "/var/cache/ai-agents-offline-cluster"))
    return cache / "bin" / f"istio-{pins['OFFLINE_ISTIO_VERSION']}" / "istioctl"


def _istioctl() -> Path:
    candidates = [
        os.environ.get("E2E_ISTIOCTL"),
        str(_offline_cluster_istioctl()),
        str(helmrender.TOOLS_BIN / "istioctl"),
        shutil.which("istioctl"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.skip(f"no istioctl (looked at {[c for c in candidates if c]}): `make offline-cluster-build` builds it")


def allowed_codes() -> set[str]:
    return {entry["code"] for entry in yaml.safe_load(ALLOWLIST.read_text())["allow"]}


def test_allowlist_entries_give_their_reason() -> None:
    entries = yaml.safe_load(ALLOWLIST.read_text())["allow"]
    vague = [e for e in entries if not str(e.get("reason", "")).strip() or not str(e.get("code", "")).startswith("IST")]
    assert not vague, f"allowlist entries need an IST code and a reason: {vague}"


@pytest.mark.offline_cluster_build
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_istioctl_analyze_finds_nothing_unexpected(scenario: charttree.Scenario, tmp_path: Path) -> None:
    istioctl = _istioctl()
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered(scenario), sort_keys=False))
    proc = subprocess.run(
        [str(istioctl), "analyze", "--use-kube=false", "--namespace", charttree.NAMESPACE, "--output", "json",
         str(manifest)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # analyze exits 79 when it reports warnings and 80 for errors (its documented codes); the messages decide.
    assert proc.returncode in (0, 79, 80), f"istioctl analyze failed ({proc.returncode}): {proc.stderr[-2000:]}"
    messages = json.loads(proc.stdout or "[]")
    errors = [m for m in messages if m.get("level") == "Error"]
    assert not errors, f"{scenario.id}: istioctl analyze errors: {json.dumps(errors, indent=1)}"
    unexpected = [m for m in messages if m["code"] not in allowed_codes()]
    assert not unexpected, f"{scenario.id}: not in {ALLOWLIST.name}: {json.dumps(unexpected, indent=1)}"
