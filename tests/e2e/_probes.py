"""Python snippets run inside the cluster by probe pods (the runtime image has python3, grpc and the CLI)."""

from __future__ import annotations

import json
from typing import Any

RESOLVE = """
import json, socket, sys
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = sorted({a[4][0] for a in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)})
    except OSError as exc:
        out[name] = "error: %s" % exc
print("RESULT " + json.dumps(out))
"""

HTTP_GET = """
import json, os, sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1])
if os.environ.get("AI_AGENTS_API_TOKEN"):
    req.add_header("Authorization", "Bearer " + os.environ["AI_AGENTS_API_TOKEN"])
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        out = {"status": r.status}
except urllib.error.HTTPError as exc:
    out = {"status": exc.code}
except Exception as exc:
    out = {"error": "%s: %s" % (type(exc).__name__, exc)}
print("RESULT " + json.dumps(out))
"""

GRPC_HEALTH = """
import json, sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
try:
    with grpc.insecure_channel(sys.argv[1]) as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        out = {"status": health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)}
except grpc.RpcError as exc:
    out = {"error": exc.code().name, "details": exc.details()}
print("RESULT " + json.dumps(out))
"""


def command(snippet: str, *args: str) -> list[str]:
    return ["python3", "-c", snippet, *args]


def result(logs: str) -> Any:
    """The JSON a snippet printed after `RESULT `."""
    for line in reversed(logs.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise AssertionError(f"probe printed no RESULT line; logs:\n{logs[-2000:]}")
