##@ API
PROTO_FILES := $(sort $(wildcard proto/ai_agents/v1/*.proto))
GEN_DIR := agent_image/src

.PHONY: proto-generate proto-lint proto-check
proto-generate: ## Regenerate the committed Python gRPC code from proto/
	rm -f $(GEN_DIR)/ai_agents/v1/*_pb2*.py $(GEN_DIR)/ai_agents/v1/*_pb2*.pyi
	PATH="$(VENV)/bin:$$PATH" $(PYTHON) -m grpc_tools.protoc -I proto --python_out=$(GEN_DIR) --grpc_python_out=$(GEN_DIR) \
		--mypy_out=$(GEN_DIR) --mypy_grpc_out=$(GEN_DIR) $(PROTO_FILES)

proto-lint: ## buf lint the API
	cd proto && $(TOOLS_BIN)/buf lint

proto-check: proto-generate ## Fail when the committed generated code drifts from proto/
	git diff --exit-code -- $(GEN_DIR)/ai_agents/v1
