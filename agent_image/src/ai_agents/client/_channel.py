"""The one channel factory: dns:/// with round_robin, xds:/// when GRPC_XDS_BOOTSTRAP is set, retry policy."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.experimental

_SERVICES = ("TaskService", "AgentService", "MessagingService", "MonitoringService", "ResourceService")


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """Retry and keepalive settings; defaults suit a fleet behind a Kubernetes headless Service."""

    max_attempts: int = 5
    initial_backoff_seconds: float = 0.05
    max_backoff_seconds: float = 2.0
    backoff_multiplier: float = 2.0
    keepalive_seconds: int = 30
    max_message_bytes: int = 4 * 1024 * 1024


def service_config(options: ChannelOptions) -> dict[str, Any]:
    """Client-side LB and retries. Only UNAVAILABLE is retried: the request never reached a handler.

    (SubmitTask is also safe to retry more broadly because the client always sends an idempotency key.)
    """
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": f"ai_agents.v1.{name}"} for name in _SERVICES],
                "retryPolicy": {
                    "maxAttempts": options.max_attempts,
                    "initialBackoff": f"{options.initial_backoff_seconds}s",
                    "maxBackoff": f"{options.max_backoff_seconds}s",
                    "backoffMultiplier": options.backoff_multiplier,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }


def resolve_target(target: str, *, environ: dict[str, str] | None = None) -> str:
    """Add the dns:/// scheme to host:port; switch dns:/// to xds:/// when an xDS bootstrap is configured."""
    env = os.environ if environ is None else environ
    if "://" not in target and not target.startswith(("dns:", "unix:", "ipv4:", "ipv6:")):
        target = f"dns:///{target}"
    xds = bool(env.get("GRPC_XDS_BOOTSTRAP") or env.get("GRPC_XDS_BOOTSTRAP_CONFIG"))
    if xds and target.startswith("dns:///"):
        target = "xds:///" + target[len("dns:///") :]
    return target


def create_channel(
    target: str,
    *,
    options: ChannelOptions | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    extra_args: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """A channel to `target`; `extra_args` are added to the channel arguments (ChannelPool's own connections)."""
    options = options or ChannelOptions()
    resolved = resolve_target(target)
    channel_args: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(service_config(options))),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", options.keepalive_seconds * 1000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.max_receive_message_length", options.max_message_bytes),
        ("grpc.max_send_message_length", options.max_message_bytes),
        # DNS answers change as pods come and go: re-resolve soon after a connection drops.
        ("grpc.dns_min_time_between_resolutions_ms", 1000),
        *extra_args,
    ]
    if resolved.startswith("xds:"):
        # The control plane decides endpoints, LB, retries and security: the resolver's service config replaces the
        # one above (tests/runtime/test_xds_client.py). Fall back to plaintext as the mesh does mTLS.
        # grpc.experimental has no stubs in types-grpcio and no annotations in grpcio: its real signature.
        insecure_channel_credentials: Callable[[], grpc.ChannelCredentials] = (
            grpc.experimental.insecure_channel_credentials
        )
        credentials = grpc.xds_channel_credentials(fallback_credentials=insecure_channel_credentials())
        return grpc.aio.secure_channel(resolved, credentials, options=channel_args, interceptors=interceptors)
    return grpc.aio.insecure_channel(resolved, options=channel_args, interceptors=interceptors)
