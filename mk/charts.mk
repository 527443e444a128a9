##@ Charts (offline: helm lint, chart-testing, helm-docs)

# Every charts/<name>/Chart.yaml, and the helms that lint them (Helm 3 and Helm 4).
CHARTS := $(patsubst charts/%/Chart.yaml,%,$(wildcard charts/*/Chart.yaml))
LINT_HELMS ?= $(HELM3) $(HELM)
# helm-docs reads each chart's README.md.gotmpl (its default template when absent); tests/charts/test_lint.py
# runs the same command.
HELM_DOCS_ARGS ?= --chart-search-root charts

.PHONY: lint chart-deps ct-lint docs docs-check crds-download

# A chart's archive in its parent carries the dependencies built into its own charts/ folder (the subcharts
# need ai-agents-lib too), so each chart is built only after every chart it names as file://../<name>.
chart-deps: ## Build the file:// subcharts of every chart that has dependencies (into charts/*/charts/, untracked), dependencies first
	@set -e; done_=" "; todo="$(CHARTS)"; \
	while [ -n "$$todo" ]; do \
		left=""; \
		for chart in $$todo; do \
			ready=1; \
			for dep in $$(sed -n 's|^ *repository: *file://\.\./||p' charts/$$chart/Chart.yaml); do \
				case "$$done_" in *" $$dep "*) ;; *) ready=;; esac; \
			done; \
			if [ -z "$$ready" ]; then left="$$left $$chart"; continue; fi; \
			if grep -q '^dependencies:' charts/$$chart/Chart.yaml; then \
				$(HELM) dependency build --skip-refresh charts/$$chart; \
			fi; \
			done_="$$done_$$chart "; \
		done; \
		if [ "$$(echo $$left)" = "$$(echo $$todo)" ]; then echo "file:// dependency cycle or missing chart among:$$left" >&2; exit 1; fi; \
		todo="$$(echo $$left)"; \
	done

lint: chart-deps ## helm lint --strict every chart with its defaults and each ci/*-values.yaml, Helm 3 and Helm 4
	@set -e; for helm in $(LINT_HELMS); do \
		for chart in $(CHARTS); do \
			for values in "" charts/$$chart/ci/*-values.yaml; do \
				[ -z "$$values" ] || [ -f "$$values" ] || continue; \
				echo "$$($$helm version --template '{{.Version}}') lint --strict charts/$$chart $${values:+--values $$values}"; \
				$$helm lint --strict --quiet charts/$$chart $${values:+--values $$values}; \
			done; \
		done; \
	done

# ct lint --all needs no git history (it lints every chart, and version-increment checks are off in
# ct.yaml); plain `ct lint` would compare with origin/main and needs that remote branch. ct runs `helm`,
# `yamllint` and `yamale` from PATH: each helm in turn, then the venv's scripts.
ct-lint: ## chart-testing: ct lint --all --config ct.yaml (yamale, yamllint, helm lint), with Helm 3 and Helm 4
	@test -x $(CT) || { echo "ct not found at $(CT): run make tools" >&2; exit 1; }
	@set -e; for helm in $(LINT_HELMS); do \
		echo "ct lint --all with $$($$helm version --template '{{.Version}}')"; \
		PATH="$$(dirname $$helm):$(VENV)/bin:$$PATH" $(CT) lint --all --config ct.yaml; \
	done

docs: ## Regenerate every chart's README.md with helm-docs from values.yaml `# --` comments
	@test -x $(HELM_DOCS) || { echo "helm-docs not found at $(HELM_DOCS): run make tools" >&2; exit 1; }
	$(HELM_DOCS) $(HELM_DOCS_ARGS)

docs-check: ## Fail when a chart's README.md differs from what `make docs` would generate
	@test -x $(HELM_DOCS) || { echo "helm-docs not found at $(HELM_DOCS): run make tools" >&2; exit 1; }
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	mkdir -p "$$tmp/charts"; \
	for chart in $(CHARTS); do \
		cp -R charts/$$chart "$$tmp/charts/"; rm -rf "$$tmp/charts/$$chart/charts" "$$tmp/charts/$$chart/Chart.lock"; \
	done; \
	(cd "$$tmp" && $(HELM_DOCS) $(HELM_DOCS_ARGS) --log-level warning); \
	status=0; for chart in $(CHARTS); do \
		diff -u --label charts/$$chart/README.md --label "helm-docs output" \
			charts/$$chart/README.md "$$tmp/charts/$$chart/README.md" || status=1; \
	done; \
	[ $$status -eq 0 ] || echo "README drift: run make docs" >&2; exit $$status

crds-download: ## On a connected machine: fetch the pinned upstream CRDs into CRD_SCHEMA_DIR (verifies files already there)
	CRD_SCHEMA_DIR="$(CRD_SCHEMA_DIR)" $(REPO_ROOT)/hack/crds-download.sh
