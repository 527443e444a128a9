"""The static tier's tooling agrees with versions.env and with the CRD folder the tests read.

What passing proves:
- the tools in .tools/bin (when present) report the versions pinned in versions.env, so the lint and
  render tests ran with the pinned helm 3, helm 4, ct and helm-docs;
- hack/tools/ct (the module ct is built from) requires the pinned chart-testing;
- `make crds-download` would fetch exactly the CRD files that CRD_SCHEMA_DIR holds, from the tags
  pinned in versions.env (checked with its --list mode: no network).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import crdschema
import helmrender
import pytest

REPO_ROOT = helmrender.REPO_ROOT
TOOLS_BIN = helmrender.TOOLS_BIN


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "versions.env").read_text().splitlines():
        match = re.match(r"^([A-Z0-9_]+)=(\S+)$", line.strip())
        if match:
            pins[match[1]] = match[2]
    return pins


TOOLS = {
    # binary under .tools/bin, version variable, arguments that print the version
    "h3/helm": ("HELM3_VERSION", ["version", "--template", "{{.Version}}"]),
    "h4/helm": ("HELM4_VERSION", ["version", "--template", "{{.Version}}"]),
    "ct": ("CT_VERSION", ["version"]),
    "helm-docs": ("HELM_DOCS_VERSION", ["--version"]),
    "buf": ("BUF_VERSION", ["--version"]),
}


@pytest.mark.parametrize("binary", sorted(TOOLS))
def test_installed_tool_reports_its_pin(binary: str) -> None:
    variable, args = TOOLS[binary]
    path = TOOLS_BIN / binary
    if not path.is_file():
        pytest.skip(f"{path} not installed: run `make tools`")
    pin = _pins()[variable].removeprefix("v")
    out = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=60).stdout
    assert re.search(rf"(^|[^0-9.])v?{re.escape(pin)}([^0-9.]|$)", out), (
        f"{binary} reports {out.strip()!r}, versions.env pins {variable}={pin}: run `make tools`"
    )


def test_ct_wrapper_module_requires_the_pin() -> None:
    go_mod = (REPO_ROOT / "hack" / "tools" / "ct" / "go.mod").read_text()
    pin = _pins()["CT_VERSION"]
    assert re.search(rf"^\s*github\.com/helm/chart-testing/v3 {re.escape(pin)}\b", go_mod, re.M), (
        f"hack/tools/ct/go.mod does not require chart-testing {pin}: "
        f"cd hack/tools/ct && go get -tool github.com/helm/chart-testing/v3/ct@{pin}"
    )


def test_crds_download_fetches_what_the_tests_read() -> None:
    crd_dir = crdschema.schema_dir()
    if not crd_dir.is_dir():
        pytest.skip(f"CRD directory {crd_dir} not found (set CRD_SCHEMA_DIR)")
    listing = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "crds-download.sh"), "--list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    planned = {line.split()[0] for line in listing.splitlines() if line.strip()}
    present = {str(p.relative_to(crd_dir)) for p in Path(crd_dir).rglob("*.yaml")}
    assert planned == present, (
        f"crds-download would fetch {sorted(planned - present)} that {crd_dir} lacks, "
        f"and not fetch {sorted(present - planned)}"
    )
    pins = _pins()
    for folder in (
        f"istio-{pins['ISTIO_VERSION']}",
        f"gateway-api-{pins['GATEWAY_API_VERSION']}",
        f"keda-v{pins['KEDA_CHART_VERSION']}",
        f"prometheus-operator-kps-{pins['KUBE_PROMETHEUS_STACK_VERSION']}",
    ):
        assert any(p.startswith(folder + "/") for p in planned), f"no CRD planned under {folder}/"
