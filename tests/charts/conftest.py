"""Shared setup for the chart tests: helm binaries, the CRD directory (helper modules: pytest.ini `pythonpath`)."""

from __future__ import annotations

from pathlib import Path

import crdschema
import helmrender
import pytest

REPO_ROOT = helmrender.REPO_ROOT
TOOLS_BIN = helmrender.TOOLS_BIN


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def helm_binaries() -> dict[str, Path]:
    """{"helm3": path, "helm4": path} for the helms that `make tools` installed (or $HELM3 / $HELM4)."""
    found = helmrender.helm_binaries()
    if not found:
        pytest.skip(
            f"no helm binary at {TOOLS_BIN}/h3/helm or {TOOLS_BIN}/h4/helm (nor $HELM3/$HELM4): run `make tools`"
        )
    return found


def _one_helm(major: str) -> Path:
    path = helmrender.helm_binaries().get(f"helm{major}")
    if path is None:
        pytest.skip(f"helm {major} not found at {TOOLS_BIN}/h{major}/helm (nor $HELM{major}): run `make tools`")
    return path


@pytest.fixture(scope="session")
def helm3() -> Path:
    return _one_helm("3")


@pytest.fixture(scope="session")
def helm4() -> Path:
    return _one_helm("4")


@pytest.fixture(scope="session", params=["helm3", "helm4"])
def helm(request: pytest.FixtureRequest) -> Path:
    """Each helm major in turn: a test that takes this fixture runs once with Helm 3 and once with Helm 4."""
    return _one_helm(request.param[-1])


@pytest.fixture(scope="session")
def crd_schema_dir() -> Path:
    """Upstream CRDs: $CRD_SCHEMA_DIR, default ../shared/crds relative to the repository root."""
    path = crdschema.schema_dir()
    if not path.is_dir():
        pytest.skip(
            f"CRD directory {path} not found: set CRD_SCHEMA_DIR to a folder holding the upstream CRDs "
            "(`make crds-download` fetches them on a connected machine)"
        )
    return path


def tool(name: str) -> Path | None:
    """A tool built by `make tools` into .tools/bin, or None when it is not there."""
    path = TOOLS_BIN / name
    return path if path.is_file() else None
