"""Reactions to a live change that reading `LiveConfig.current` at the point of use cannot provide."""

from __future__ import annotations

from ai_agents.config import CommonLive
from ai_agents.observability.logs import apply_log_level


def follow_log_level(old: CommonLive, new: CommonLive) -> None:
    """The root logger's level follows `log_level`; untouched while it stays the same (embedded in tests)."""
    if old.log_level != new.log_level:
        apply_log_level(new.log_level)
