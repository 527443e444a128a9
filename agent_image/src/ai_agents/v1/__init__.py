"""Generated protobuf and gRPC code for ai_agents.v1 (do not edit: `make proto-generate`)."""
