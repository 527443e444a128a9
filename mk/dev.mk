##@ Development

.PHONY: setup venv system-packages xds-control-plane test test-static test-local lint-code

system-packages: ## Install PostgreSQL and promtool from Debian when missing (root), or name them
	$(REPO_ROOT)/hack/install-system-packages.sh

venv: ## Python virtualenv with the runtime (editable) and the test dependencies
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -r requirements-dev.txt -e agent_image

# The test xDS management server (tests/xds-control-plane: go-control-plane, pinned by its go.mod/go.sum), built from
# the Go module proxy. tests/runtime/test_xds_client.py rebuilds it the same way (a no-op on a warm Go cache).
XDS_CONTROL_PLANE_BIN ?= $(REPO_ROOT)/build/bin/xds-control-plane

xds-control-plane: ## Build the test xDS management server into build/bin
	cd tests/xds-control-plane && go build -o $(XDS_CONTROL_PLANE_BIN) .

setup: system-packages venv tools xds-control-plane ## Everything the tests need, on a fresh machine
	@echo "setup done: run 'make test'"

TEST_PATHS ?= tests
test: ## Every tier; cluster tests skip with a reason when no cluster is up. PYTEST_ARGS selects (e.g. -m cluster), TEST_PATHS narrows
	CRD_SCHEMA_DIR="$(CRD_SCHEMA_DIR)" $(PYTHON) -m pytest $(TEST_PATHS) $(PYTEST_ARGS)

test-static: ## Only the chart tier (helm, schemas, policies)
	CRD_SCHEMA_DIR="$(CRD_SCHEMA_DIR)" $(PYTHON) -m pytest tests/charts

test-local: ## Only the runtime tier (real PostgreSQL, orchestrators, agents)
	$(PYTHON) -m pytest tests/runtime

lint-code: ## ruff and mypy on the runtime and the tests, gofmt and go vet on the Go test server and bench floor, buf lint on the API
	$(VENV)/bin/ruff check agent_image/src tests bench
	$(VENV)/bin/ruff format --check agent_image/src tests bench
	cd agent_image && $(VENV)/bin/mypy
	cd tests/xds-control-plane && test -z "$$(gofmt -l .)" && go vet ./...
	cd bench/native_echo && test -z "$$(gofmt -l .)" && go vet ./...
	$(MAKE) proto-lint
