"""The live configuration file: its sections, how each is validated, and what one process takes from it.

    common:        {log_level: ...}                         every process
    orchestrator:  {lease_seconds: ..., ...}                orchestrators (OrchestratorLive)
    agents:        {concurrency: ..., ...}                  agents of every type (AgentLive)
    agent_types:   {coding: {concurrency: ...}, ...}        agents of one type, over `agents`
    chaos_monkey:  {chaos_interval_seconds: ..., ...}       the chaos monkey (ChaosMonkeyLive)

Keys are the settings' names (AI_AGENTS_<KEY> in lower case). A key the file leaves out keeps its value from the
environment, so deleting a line undoes it. The whole document is validated by every process, not only the
sections it reads: the same file is then accepted or refused by the whole fleet alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ai_agents.config import AgentLive, ChaosMonkeyLive, CommonLive, OrchestratorLive
from ai_agents.domain import AGENT_TYPES

Live = TypeVar("Live", bound=CommonLive)

_SECTIONS: Mapping[str, type[CommonLive]] = {
    "common": CommonLive,
    "orchestrator": OrchestratorLive,
    "agents": AgentLive,
    "chaos_monkey": ChaosMonkeyLive,
}
# Which sections a process of each live model reads, in order (later ones win).
_READS: Mapping[type[CommonLive], tuple[str, ...]] = {
    OrchestratorLive: ("common", "orchestrator"),
    AgentLive: ("common", "agents"),
    ChaosMonkeyLive: ("common", "chaos_monkey"),
}


class InvalidLiveConfig(ValueError):
    """The file is not a live configuration; `str()` says where and why, in one line per problem."""


@dataclass(frozen=True)
class LiveDocument:
    """The values a file sets explicitly, per section, already validated and converted."""

    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    agent_types: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def apply(self, start: Live, agent_type: str | None = None) -> Live:
        """`start` (the values from the environment) with this document's overrides for one process."""
        model = type(start)
        values = start.model_dump()
        for section in _READS.get(model, ("common",)):
            values.update(self.sections.get(section, {}))
        if agent_type is not None:
            values.update(self.agent_types.get(agent_type, {}))
        # Validated again as a whole: each section passed alone, this checks the combination.
        return model.model_validate(values)


def live_part(settings: CommonLive, model: type[Live]) -> Live:
    """The live fields of a process's settings (its values at start, from the environment) as `model`."""
    return model.model_validate(settings.model_dump(include=set(model.model_fields)))


def _overrides(model: type[BaseModel], raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidLiveConfig(f"{where}: expected a mapping, got {type(raw).__name__}")
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidLiveConfig(problems) from None
    # Only what the file names: the rest must keep the process's own start values, not the model's defaults.
    return parsed.model_dump(include=parsed.model_fields_set)


def parse_live_document(text: str) -> LiveDocument:
    """Parse and validate a whole file; raise InvalidLiveConfig on anything not exactly right."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidLiveConfig(f"not YAML: {' '.join(str(exc).split())}") from None
    if raw is None:
        return LiveDocument()  # an empty file: every process runs on its start values
    if not isinstance(raw, dict):
        raise InvalidLiveConfig(f"expected a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key not in (*_SECTIONS, "agent_types"))
    if unknown:
        raise InvalidLiveConfig(f"unknown sections {unknown}; expected {[*_SECTIONS, 'agent_types']}")
    sections = {name: _overrides(model, raw.get(name), name) for name, model in _SECTIONS.items()}
    per_type = raw.get("agent_types") or {}
    if not isinstance(per_type, dict):
        raise InvalidLiveConfig(f"agent_types: expected a mapping, got {type(per_type).__name__}")
    unknown = sorted(str(key) for key in per_type if key not in AGENT_TYPES)
    if unknown:
        raise InvalidLiveConfig(f"agent_types: unknown agent types {unknown}; expected {list(AGENT_TYPES)}")
    agent_types = {name: _overrides(AgentLive, value, f"agent_types.{name}") for name, value in per_type.items()}
    document = LiveDocument(sections=sections, agent_types=agent_types)
    # Each section passed alone; a combination a process would read must pass too (model validators).
    for model in _READS:
        document.apply(model())
    for name in agent_types:
        document.apply(AgentLive(), name)
    return document
