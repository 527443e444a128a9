# ai-agents: every target the rollout document names, plus setup/test for developers.
# Fragments per area live in mk/*.mk; pinned versions in versions.env.
SHELL := /bin/bash
.DEFAULT_GOAL := help

include versions.env
export

REPO_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
TOOLS_BIN := $(REPO_ROOT)/.tools/bin
VENV := $(REPO_ROOT)/.venv
PYTHON := $(VENV)/bin/python
HELM ?= $(TOOLS_BIN)/h4/helm
HELM3 ?= $(TOOLS_BIN)/h3/helm
CRD_SCHEMA_DIR ?= $(abspath $(REPO_ROOT)/../shared/crds)

include $(sort $(wildcard mk/*.mk))

.PHONY: help
help: ## List targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-24s %s\n", $$1, $$2}'
