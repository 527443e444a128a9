##@ Tools (built from the Go module proxy at the versions in versions.env)

CT ?= $(TOOLS_BIN)/ct
HELM_DOCS ?= $(TOOLS_BIN)/helm-docs
BUF ?= $(TOOLS_BIN)/buf
# Which tools `make tools` builds: any of helm3 helm4 ct helm-docs buf.
TOOLS ?= helm3 helm4 ct helm-docs buf

.PHONY: tools
tools: ## Build helm 3, helm 4, ct, helm-docs and buf into .tools/bin (skips each one already at its pin)
	TOOLS_BIN="$(TOOLS_BIN)" $(REPO_ROOT)/hack/install-tools.sh $(TOOLS)
