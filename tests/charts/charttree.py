"""Find the charts and their `ci/*-values.yaml` scenarios, and prepare copies that helm can render.

Discovery is dynamic: a chart is any `charts/<name>/Chart.yaml`, a scenario is the chart's defaults plus
each `ci/*-values.yaml` (chart-testing's naming). Tests parametrize over `scenarios()`, so a chart or a
values file that does not exist yet is simply not collected. A library chart (`type: library`, such as
charts/ai-agents-lib) is linted like the others, but helm cannot template it: render tests skip it with
that reason (`Scenario.library`), and its helpers are exercised through the charts that depend on it.

The umbrella's subcharts are `file://../<name>` dependencies, and they depend on the library in turn.
Rather than relying on `make chart-deps` having run (and on its output being current), `prepared_charts()`
copies `charts/` to a temporary folder once per helm binary and runs `helm dependency build` there,
dependencies first (a chart's archive carries its own built dependencies, so they must exist before it is
packaged into its parent), so a test always renders the subcharts as they
are in the work tree and never writes into it. Helm's config, cache and data folders point into that
temporary folder too, so no repository the user configured is contacted.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHARTS_DIR = REPO_ROOT / "charts"

RELEASE = "ai-agents"
NAMESPACE = "ai-agents"


@dataclass(frozen=True)
class Scenario:
    """One chart rendered with one values file (None: the chart's defaults)."""

    chart: str
    values: str | None  # file name under the chart's ci/ folder

    @property
    def library(self) -> bool:
        """A library chart: lintable, never renderable on its own."""
        return is_library(self.chart)

    @property
    def id(self) -> str:
        name = "defaults" if self.values is None else self.values.removesuffix("-values.yaml")
        return f"{self.chart}/{name}"

    def values_args(self, charts_root: Path) -> list[str]:
        return [] if self.values is None else ["--values", str(charts_root / self.chart / "ci" / self.values)]


def chart_names() -> list[str]:
    """Every folder under charts/ that holds a Chart.yaml, sorted."""
    if not CHARTS_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in CHARTS_DIR.glob("*/Chart.yaml"))


def ci_values(chart: str) -> list[str]:
    return sorted(p.name for p in (CHARTS_DIR / chart / "ci").glob("*-values.yaml"))


def scenarios() -> list[Scenario]:
    """Defaults plus every ci/*-values.yaml, for every chart."""
    out: list[Scenario] = []
    for chart in chart_names():
        out.append(Scenario(chart, None))
        out.extend(Scenario(chart, values) for values in ci_values(chart))
    return out


def chart_meta(chart: str) -> dict:
    return yaml.safe_load((CHARTS_DIR / chart / "Chart.yaml").read_text()) or {}


def has_dependencies(chart: str) -> bool:
    return bool(chart_meta(chart).get("dependencies"))


def is_library(chart: str) -> bool:
    return chart_meta(chart).get("type") == "library"


LIBRARY_SKIP = "a library chart: helm cannot template it; its helpers are rendered through the charts that use it"


def build_order(charts_dir: Path = CHARTS_DIR) -> list[str]:
    """Every chart under charts_dir, each after the local (file://../<name>) charts it depends on."""
    deps: dict[str, list[str]] = {}
    for chart_yaml in sorted(charts_dir.glob("*/Chart.yaml")):
        meta = yaml.safe_load(chart_yaml.read_text()) or {}
        deps[chart_yaml.parent.name] = [
            d["repository"].removeprefix("file://../")
            for d in meta.get("dependencies") or []
            if str(d.get("repository", "")).startswith("file://../")
        ]
    order: list[str] = []

    def visit(chart: str, path: tuple[str, ...]) -> None:
        if chart in order:
            return
        if chart in path:
            raise ValueError(f"file:// dependency cycle: {' -> '.join((*path, chart))}")
        for dep in deps.get(chart, []):
            visit(dep, (*path, chart))
        order.append(chart)

    for chart in deps:
        visit(chart, ())
    return order


def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="ai-agents-charts-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def helm_env(home: Path) -> dict[str, str]:
    """The environment for a helm process whose config, cache and data live under `home`."""
    env = dict(os.environ)
    env.update(
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_DATA_HOME=str(home / "data"),
    )
    return env


def copy_charts(dest: Path) -> Path:
    """Copy charts/ to dest/charts as git tracks it: without built subcharts or Chart.lock files."""
    shutil.copytree(
        CHARTS_DIR,
        dest / "charts",
        ignore=lambda folder, names: (
            [n for n in names if n in ("charts", "Chart.lock")] if Path(folder).parent == CHARTS_DIR else []
        ),
    )
    return dest / "charts"


class PrepareError(RuntimeError):
    """`helm dependency build` failed for a chart; the message carries helm's output."""


@functools.cache
def _snapshot() -> Path:
    """charts/ as it is when first needed: every helm's copy starts from it, so an edit made while the
    tests run cannot make Helm 3 and Helm 4 render different sources."""
    return copy_charts(_scratch())


@functools.cache
def prepared_charts(helm: Path) -> Path:
    """A private copy of charts/ with every chart's file:// dependencies built by this helm.

    Returns the copy's charts folder (same layout as charts/). Built subchart archives and Chart.lock
    files from the work tree are left out, so what is rendered is always the current source.
    """
    root = _scratch()
    charts = root / "charts"
    shutil.copytree(_snapshot(), charts)
    env = helm_env(root / "helm-home")
    for chart in build_order(charts):
        if not (yaml.safe_load((charts / chart / "Chart.yaml").read_text()) or {}).get("dependencies"):
            continue
        proc = subprocess.run(
            [str(helm), "dependency", "build", "--skip-refresh", str(charts / chart)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        if proc.returncode != 0:
            raise PrepareError(f"{helm} dependency build charts/{chart} failed:\n{proc.stdout}{proc.stderr}")
    return charts
