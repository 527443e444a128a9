"""The orchestrator: stateless gRPC and HTTP APIs over the PostgreSQL store."""
