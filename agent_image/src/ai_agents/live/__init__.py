"""Live configuration: settings a running process takes from a watched file without restarting."""

from ai_agents.live.document import InvalidLiveConfig, LiveDocument, live_part, parse_live_document
from ai_agents.live.holder import LiveConfig

__all__ = ["InvalidLiveConfig", "LiveConfig", "LiveDocument", "live_part", "parse_live_document"]
