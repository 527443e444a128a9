"""API serving shared by the orchestrator and the agents: gRPC server assembly and HTTP middleware."""
