"""Static tier: the facts the charts share come from charts/ai-agents-lib, so they agree in every chart.

What passing proves:
- `global.agents.<type>.enabled` alone turns an agent type off everywhere: the umbrella's Deployment, Services,
  ServiceAccount and PodDisruptionBudget, its ScaledObject and its mesh policies and DestinationRule, whether
  the subcharts render inside the umbrella or alone;
- an older per-type switch (`agents.<type>.enabled`, `kedaScalers.agents.<type>.enabled`, `mesh.agentTypes`)
  that disagrees with it, or an unknown type, fails the render with a message naming the keys;
- the name prefix is the same in every chart: a release name of the longest allowed length prefixes every
  object name whole in each chart, and one character more fails in each chart naming `global.namePrefix`
  (no chart truncates it into a name the others would not compute);
- the agent-type list of the library is the one the schemas, values and dashboards use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from charttree import CHARTS_DIR, NAMESPACE
from helmrender import HelmError, render

LIB = CHARTS_DIR / "ai-agents-lib"
APPLICATION_CHARTS = ("ai-agents", "mesh", "observability", "keda-scalers")
# Every subchart on, so one umbrella render shows what each chart does with a switch.
ALL_ON = {
    "mesh.enabled": "true",
    "kedaScalers.enabled": "true",
    "observability.enabled": "true",
    "mesh.keda.orchestratorTrigger": "true",
}


def _lib_agent_types() -> list[str]:
    text = (LIB / "templates" / "_agenttypes.tpl").read_text()
    match = re.search(r'define "ai-agents-lib\.agentTypes".*?list ((?:"[a-z]+" ?)+)', text, re.S)
    assert match, "ai-agents-lib.agentTypes is not a literal list"
    return re.findall(r'"([a-z]+)"', match.group(1))


def _lib_max_prefix() -> int:
    text = (LIB / "templates" / "_names.tpl").read_text()
    match = re.search(r'define "ai-agents-lib\.maxPrefixLength" -}}(\d+)', text)
    assert match
    return int(match.group(1))


RBAC_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
AGENT_TYPES = _lib_agent_types()
MAX_PREFIX = _lib_max_prefix()


def _render(helm: Path, chart: str, sets: dict[str, str] | None = None, release: str = "ai-agents") -> list[dict]:
    return render(helm, chart, set_values=sets or {}, release=release, namespace=NAMESPACE)


def _render_error(helm: Path, chart: str, sets: dict[str, str] | None = None, release: str = "ai-agents") -> str:
    with pytest.raises(HelmError) as excinfo:
        _render(helm, chart, sets, release)
    return str(excinfo.value)


def _mentions(objs: list[dict[str, Any]], needle: str) -> list[str]:
    """kind/name of every object whose YAML contains needle anywhere (names, principals, hosts, env)."""
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objs if needle in yaml.safe_dump(o)]


# ---------------------------------------------------------------------------------------------------------
# One switch


def test_one_switch_turns_a_type_off_in_agents_keda_and_mesh(helm: Path) -> None:
    on = _render(helm, "ai-agents", ALL_ON)
    kinds_on = {o["kind"] for o in on if "-agent-discovery" in o["metadata"]["name"]}
    assert {"Deployment", "Service", "ServiceAccount", "ScaledObject", "DestinationRule"} <= kinds_on
    assert _mentions([o for o in on if o["kind"] == "AuthorizationPolicy"], "sa/ai-agents-agent-discovery")

    off = _render(helm, "ai-agents", {**ALL_ON, "global.agents.discovery.enabled": "false"})
    assert not _mentions(off, "agent-discovery"), "nothing may name the discovery agents once they are off"
    assert not [o for o in off if o["metadata"].get("labels", {}).get("ai-agents.io/agent-type") == "discovery"]
    # The other five are untouched.
    for agent_type in set(AGENT_TYPES) - {"discovery"}:
        assert _mentions(off, f"ai-agents-agent-{agent_type}"), agent_type


@pytest.mark.parametrize("chart", ["keda-scalers", "mesh"])
def test_one_switch_turns_a_type_off_in_a_subchart_installed_alone(helm: Path, chart: str) -> None:
    assert _mentions(_render(helm, chart), "agent-discovery")
    assert not _mentions(_render(helm, chart, {"global.agents.discovery.enabled": "false"}), "agent-discovery")


# ---------------------------------------------------------------------------------------------------------
# Mismatches fail


@pytest.mark.parametrize(
    "chart,sets,keys",
    [
        pytest.param(
            "ai-agents",
            {"agents.discovery.enabled": "false"},
            ["agents.discovery.enabled", "global.agents.discovery.enabled"],
            id="umbrella-agents",
        ),
        pytest.param(
            "ai-agents",
            {**ALL_ON, "global.agents.discovery.enabled": "false", "kedaScalers.agents.discovery.enabled": "true"},
            ["kedaScalers.agents.discovery.enabled", "global.agents.discovery.enabled"],
            id="umbrella-keda",
        ),
        pytest.param(
            "ai-agents",
            {**ALL_ON, "mesh.agentTypes": "{coding}"},
            ["mesh.agentTypes", "global.agents.testing.enabled"],
            id="umbrella-mesh",
        ),
        pytest.param(
            "keda-scalers",
            {"agents.discovery.enabled": "false"},
            ["agents.discovery.enabled", "global.agents.discovery.enabled"],
            id="keda-alone",
        ),
        pytest.param(
            "mesh",
            {"global.agents.coding.enabled": "false", "agentTypes": "{coding}"},
            ["agentTypes", "global.agents.coding.enabled"],
            id="mesh-alone",
        ),
    ],
)
def test_a_switch_that_disagrees_fails_naming_the_keys(helm: Path, chart: str, sets: dict, keys: list[str]) -> None:
    message = _render_error(helm, chart, sets)
    for key in keys:
        assert key in message, f"{key!r} not named in:\n{message}"


def test_an_old_switch_that_agrees_still_renders(helm: Path) -> None:
    sets = {
        **ALL_ON,
        "global.agents.discovery.enabled": "false",
        "agents.discovery.enabled": "false",
        "kedaScalers.agents.discovery.enabled": "false",
        "mesh.agentTypes": "{coding,testing,security,compliance,documentation}",
    }
    assert not _mentions(_render(helm, "ai-agents", sets), "agent-discovery")


@pytest.mark.parametrize("chart", ["ai-agents", "keda-scalers", "mesh"])
def test_an_unknown_agent_type_fails(helm: Path, chart: str) -> None:
    message = _render_error(helm, chart, {"global.agents.reviewing.enabled": "true"})
    assert "reviewing" in message and "agents" in message


# ---------------------------------------------------------------------------------------------------------
# The prefix


def _names(objs: list[dict[str, Any]]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_prefix_is_the_same_in_every_chart_for_a_long_release_name(helm: Path) -> None:
    """A release name of exactly the longest allowed length is used whole by every chart, alone or together."""
    release = "r" + "e" * (MAX_PREFIX - 2) + "1"
    assert len(release) == MAX_PREFIX
    renders = {chart: _render(helm, chart, release=release) for chart in APPLICATION_CHARTS}
    renders["ai-agents (all on)"] = _render(helm, "ai-agents", ALL_ON, release=release)
    for chart, objs in renders.items():
        names = _names(objs)
        assert names, chart
        wrong = [n for n in names if n != release and not n.startswith(f"{release}-")]
        assert not wrong, f"{chart}: names not prefixed with the whole release name: {wrong}"
        # RBAC object names are path segments (253 characters); every other name here is a DNS label.
        labels = [o["metadata"]["name"] for o in objs if o["kind"] not in RBAC_KINDS]
        assert all(len(n) <= 63 for n in labels), f"{chart}: {[n for n in labels if len(n) > 63]}"
    # The names one chart refers to are the names another renders.
    umbrella = renders["ai-agents (all on)"]
    deployments = {o["metadata"]["name"] for o in umbrella if o["kind"] == "Deployment"}
    targets = {o["spec"]["scaleTargetRef"]["name"] for o in renders["keda-scalers"] if o["kind"] == "ScaledObject"}
    assert targets <= deployments


@pytest.mark.parametrize("chart", APPLICATION_CHARTS)
@pytest.mark.parametrize("how", ["release", "namePrefix"])
def test_a_prefix_one_character_too_long_fails_in_every_chart(helm: Path, chart: str, how: str) -> None:
    """Where mesh and observability used to cut a prefix to 40 characters, and keda-scalers not at all, every
    chart now stops at the same bound, naming the key."""
    long = "p" * (MAX_PREFIX + 1)
    if how == "release":
        message = _render_error(helm, chart, release=long)
    else:
        message = _render_error(helm, chart, {"global.namePrefix": long})
    assert "global.namePrefix" in message and str(MAX_PREFIX) in message, message


# ---------------------------------------------------------------------------------------------------------
# One list of agent types


def _schema(chart: str) -> dict[str, Any]:
    return json.loads((CHARTS_DIR / chart / "values.schema.json").read_text())


@pytest.mark.parametrize("chart", ["ai-agents", "mesh", "keda-scalers"])
def test_schemas_know_the_library_agent_types(chart: str) -> None:
    schema = _schema(chart)
    switches = schema["properties"]["global"]["properties"]["agents"]
    assert list(switches["properties"]) == AGENT_TYPES and switches["additionalProperties"] is False
    if chart != "mesh":
        assert list(schema["properties"]["agents"]["properties"]) == AGENT_TYPES


def test_umbrella_declares_the_one_switch_for_every_type() -> None:
    values = yaml.safe_load((CHARTS_DIR / "ai-agents" / "values.yaml").read_text())
    assert list(values["global"]["agents"]) == AGENT_TYPES
    assert all(values["global"]["agents"][t] == {"enabled": True} for t in AGENT_TYPES)
    assert not [t for t, v in values["agents"].items() if "enabled" in v], "the old switch has no default"


def test_dashboards_match_the_library_agent_types() -> None:
    """The scaling dashboard finds agent Deployments and pods by name with a regex over the known types."""
    text = (CHARTS_DIR / "observability" / "dashboards" / "scaling.json").read_text()
    alternations = set(re.findall(r"-agent-\(([a-z|]+)\)", text))
    assert alternations == {"|".join(AGENT_TYPES)}
