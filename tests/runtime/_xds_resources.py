"""The orchestrator's xDS resources (listener, route, cluster, endpoints) in Envoy v3 protobuf JSON.

The shapes a proxyless gRPC client accepts (gRFC A27): an api_listener whose HttpConnectionManager takes its
route from RDS and ends with the router filter; an EDS cluster; endpoints grouped in weighted localities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_ADS = {"ads": {}, "resourceApiVersion": "V3"}


@dataclass(frozen=True, slots=True)
class Locality:
    """One locality of the cluster: gRPC splits calls between localities by `weight` (0 would drop it)."""

    zone: str
    weight: int
    ports: Sequence[int] = field(default_factory=tuple)


def orchestrator_resources(
    listener: str,
    localities: Sequence[Locality],
    *,
    retry_policy: dict[str, Any] | None = None,
    outlier_detection: dict[str, Any] | None = None,
    cluster: str = "cluster",
) -> dict[str, list[dict[str, Any]]]:
    """One snapshot: `listener` is the client's target without the scheme (`xds:///<listener>`); the route sends
    every call to the cluster `<listener>/<cluster>`."""
    route_name, cluster_name = f"{listener}/route", f"{listener}/{cluster}"
    route: dict[str, Any] = {"cluster": cluster_name}
    if retry_policy is not None:
        route["retryPolicy"] = retry_policy
    eds_cluster: dict[str, Any] = {
        "name": cluster_name,
        "type": "EDS",
        "edsClusterConfig": {"edsConfig": _ADS, "serviceName": cluster_name},
        "lbPolicy": "ROUND_ROBIN",
    }
    if outlier_detection is not None:
        eds_cluster["outlierDetection"] = outlier_detection
    return {
        "listeners": [
            {
                "name": listener,
                "apiListener": {
                    "apiListener": {
                        "@type": _HCM,
                        "rds": {"routeConfigName": route_name, "configSource": _ADS},
                        "httpFilters": [{"name": "router", "typedConfig": {"@type": _ROUTER}}],
                    }
                },
            }
        ],
        "routes": [
            {
                "name": route_name,
                "virtualHosts": [
                    {"name": "orchestrator", "domains": ["*"], "routes": [{"match": {"prefix": ""}, "route": route}]}
                ],
            }
        ],
        "clusters": [eds_cluster],
        "endpoints": [
            {
                "clusterName": cluster_name,
                "endpoints": [
                    {
                        "locality": {"zone": locality.zone},
                        "loadBalancingWeight": locality.weight,
                        "lbEndpoints": [
                            {"endpoint": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": port}}}}
                            for port in locality.ports
                        ],
                    }
                    for locality in localities
                ],
            }
        ],
    }
