"""API serving shared by the orchestrator and the agents: the gRPC and HTTP servers, HTTP middleware and limits."""
