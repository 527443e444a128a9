##@ Development

.PHONY: setup venv system-packages test test-static test-local lint-code

system-packages: ## Install PostgreSQL and promtool from Debian when missing (root), or name them
	$(REPO_ROOT)/hack/install-system-packages.sh

venv: ## Python virtualenv with the runtime (editable) and the test dependencies
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -r requirements-dev.txt -e agent_image

setup: system-packages venv tools ## Everything the tests need, on a fresh machine
	@echo "setup done: run 'make test'"

test: ## Every tier; cluster tests skip with a reason when no cluster is up. PYTEST_ARGS selects (e.g. -m cluster)
	CRD_SCHEMA_DIR="$(CRD_SCHEMA_DIR)" $(PYTHON) -m pytest tests $(PYTEST_ARGS)

test-static: ## Only the chart tier (helm, schemas, policies)
	CRD_SCHEMA_DIR="$(CRD_SCHEMA_DIR)" $(PYTHON) -m pytest tests/charts

test-local: ## Only the runtime tier (real PostgreSQL, orchestrators, agents)
	$(PYTHON) -m pytest tests/runtime

lint-code: ## ruff and mypy on the runtime and the tests, buf lint on the API
	$(VENV)/bin/ruff check agent_image/src tests bench
	$(VENV)/bin/ruff format --check agent_image/src tests bench
	cd agent_image && $(VENV)/bin/mypy
	$(MAKE) proto-lint
