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

HTTP_GETS = """
import json, os, sys, urllib.request, urllib.error
out = {}
for url in sys.argv[1:]:
    req = urllib.request.Request(url)
    if os.environ.get("AI_AGENTS_API_TOKEN"):
        req.add_header("Authorization", "Bearer " + os.environ["AI_AGENTS_API_TOKEN"])
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            out[url] = {"status": r.status}
    except urllib.error.HTTPError as exc:
        out[url] = {"status": exc.code}
    except Exception as exc:
        out[url] = {"error": "%s: %s" % (type(exc).__name__, exc)}
print("RESULT " + json.dumps(out))
"""

# PostgreSQL's first exchange: an SSLRequest, answered by one byte (S or N) from a server that was reached.
PG_SSL_REQUEST = """
import json, socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(5)
        s.sendall(struct.pack("!ii", 8, 80877103))
        answer = s.recv(1)
        out = {"answer": answer.decode()} if answer else {"error": "closed without an answer"}
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
