"""Kubernetes client configuration shared by the parts that call the API (chaos monkey, TokenReview)."""

from __future__ import annotations

from collections.abc import Callable


def load_kubernetes_config() -> None:
    """In-cluster config (the pod's service account) when running in a pod, else the local kubeconfig."""
    # Imported here: only processes that talk to the Kubernetes API pay for loading the client.
    from kubernetes import config

    # kubernetes ships py.typed but leaves these loaders unannotated: called with no arguments, they return None.
    load_incluster_config: Callable[[], None] = config.load_incluster_config
    load_kube_config: Callable[[], None] = config.load_kube_config
    try:
        load_incluster_config()
    except config.ConfigException:
        load_kube_config()
