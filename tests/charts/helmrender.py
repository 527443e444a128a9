"""Render charts with the real helm binaries and return the objects they produce."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHARTS_DIR = REPO_ROOT / "charts"
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"


def helm_binaries() -> dict[str, Path]:
    """Helm 3 and Helm 4 as installed by `make tools`, overridable with HELM3/HELM4."""
    found: dict[str, Path] = {}
    for major in ("3", "4"):
        path = Path(os.environ.get(f"HELM{major}", TOOLS_BIN / f"h{major}" / "helm"))
        if path.is_file():
            found[f"helm{major}"] = path
    return found


def chart_dir(helm: Path, chart: str | Path) -> Path:
    """Where `helm` should read a chart from. A chart of this repository (a name, or a path under charts/)
    maps to charttree's prepared copy, whose file:// dependencies (ai-agents-lib, for every chart) are built;
    any other path is used as it is."""
    import charttree  # local: charttree needs nothing from here, and tests may import either first

    path = Path(chart) if Path(chart).is_absolute() else CHARTS_DIR / chart
    try:
        relative = path.relative_to(CHARTS_DIR)
    except ValueError:
        return path
    return charttree.prepared_charts(helm) / relative


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


def run_helm(helm: Path, *args: str, cwd: Path = REPO_ROOT) -> str:
    proc = subprocess.run([str(helm), *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def render(
    helm: Path,
    chart: str | Path,
    *,
    values_files: Iterable[str | Path] = (),
    set_values: Mapping[str, str] | None = None,
    release: str = "ai-agents",
    namespace: str = "ai-agents",
    extra_args: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """`helm template` a chart and parse every non-empty document."""
    args = ["template", release, str(chart_dir(helm, chart)), "--namespace", namespace]
    for values_file in values_files:
        args += ["--values", str(values_file)]
    for key, value in (set_values or {}).items():
        args += ["--set", f"{key}={value}"]
    args += list(extra_args)
    out = run_helm(helm, *args)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def find(objects: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for obj in objects:
        if obj.get("kind") == kind and obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"no {kind} named {name}")


@functools.cache
def _render_cached(
    helm: Path, chart: str, values: tuple[str, ...], sets: tuple[tuple[str, str], ...], release: str, namespace: str
) -> list[dict[str, Any]]:
    return render(helm, chart, values_files=values, set_values=dict(sets), release=release, namespace=namespace)


def render_chart(
    helm: Path,
    chart: str | Path,
    *values_files: Path,
    release: str = "ai-agents",
    namespace: str = "ai-agents",
    **sets: Any,
) -> list[dict[str, Any]]:
    """Render once per distinct input (tests share the result; each gets its own copy).

    Keyword `a__b=1` means `--set a.b=1`; booleans are written as helm reads them (`true`, not `True`).
    """
    set_items = tuple(
        sorted((k.replace("__", "."), str(v).lower() if isinstance(v, bool) else str(v)) for k, v in sets.items())
    )
    objects = _render_cached(helm, str(chart), tuple(str(v) for v in values_files), set_items, release, namespace)
    return copy.deepcopy(objects)
