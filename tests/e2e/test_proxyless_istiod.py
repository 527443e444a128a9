"""Proxyless gRPC against istiod: an `xds:///` client whose bootstrap names istiod (no Envoy, no istio-agent)
reaches the orchestrators through the listener, route, cluster and endpoints istiod's gRPC generator serves.

gRPC accepts only ROUND_ROBIN and RING_HASH in a Cluster's `lb_policy`; the mesh chart's default for the
orchestrator, LEAST_REQUEST, is refused ("LB policy is not supported") and the call fails UNAVAILABLE. This
release sets ROUND_ROBIN for the orchestrator, as docs/contracts.md ("Proxyless xDS") tells a proxyless user to.
"""

from __future__ import annotations

import itertools
import json

import pytest
from waits import eventually

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.release(extra_set=("mesh.destinationRules.services.orchestrator.loadBalancer=ROUND_ROBIN",)),
]

# The bootstrap names istiod's plaintext xDS port and asks for its gRPC generator, with an Istio-style node id
# built from the pod's own address; written inside the pod, where that address is known.
_ISTIOD_BOOTSTRAP = r"""
import json, os, socket, sys
ip = socket.gethostbyname(socket.gethostname())
ns, istiod = sys.argv[1], sys.argv[2]
os.environ["GRPC_XDS_BOOTSTRAP_CONFIG"] = json.dumps({
    "xds_servers": [{"server_uri": istiod, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
    "node": {
        "id": f"sidecar~{ip}~{socket.gethostname()}.{ns}~{ns}.svc.cluster.local",
        "metadata": {"GENERATOR": "grpc", "NAMESPACE": ns, "INSTANCE_IPS": ip},
    },
})
os.execvp("ai-agents", ["ai-agents", "agents", "--json", "--target", sys.argv[3]])
"""


def test_proxyless_grpc_through_istiod_lists_the_agents(release, image, need, e2e_note) -> None:
    need("istio")
    ns = release.namespace
    istiod = f"istiod.{release.cfg.istio_namespace}.svc:15010"
    target = f"xds:///{release.prefix}-orchestrator.{ns}.svc.cluster.local:9090"
    attempts = itertools.count(1)

    def run() -> tuple[str, str]:
        return release.kube.run_pod(
            ns,
            f"e2e-xds-istiod-{next(attempts)}",
            image=image,
            command=["python3", "-c", _ISTIOD_BOOTSTRAP, ns, istiod, target],
            env_from_secret={"AI_AGENTS_API_TOKEN": (f"{release.prefix}-api-token", "token")}
            if release.token()
            else None,
            service_account="e2e-client",
            labels=release.client_labels,
        )

    _phase, logs = eventually(
        run,
        lambda r: r[0] == "Succeeded",
        timeout_sec=120,
        interval_sec=5,
        expectation="`ai-agents agents` over xds:/// through istiod to succeed",
    )
    agents = json.loads(logs[logs.index("[") :])
    assert {a["agent_type"] for a in agents} >= set(release.enabled_agent_types), agents
    e2e_note(f"{len(agents)} agents listed over xds:/// with istiod as the control plane")
