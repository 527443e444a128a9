"""The chaos monkey: delete random agent pods (Kubernetes) or kill random local agent processes."""

from ai_agents.chaos._app import ChaosMonkeyProcess, main, targets_from_settings
from ai_agents.chaos._monkey import ChaosMonkey, KubernetesTargets, LocalProcessTargets, Victim

__all__ = [
    "ChaosMonkey",
    "ChaosMonkeyProcess",
    "KubernetesTargets",
    "LocalProcessTargets",
    "Victim",
    "main",
    "targets_from_settings",
]
