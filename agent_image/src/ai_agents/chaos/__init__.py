"""The chaos monkey: delete random agent pods (Kubernetes) or kill random local agent processes."""

from ai_agents.chaos._monkey import ChaosMonkey, KubernetesTargets, LocalProcessTargets, Victim

__all__ = ["ChaosMonkey", "KubernetesTargets", "LocalProcessTargets", "Victim"]
