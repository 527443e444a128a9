##@ Platform (needs Docker, kind or a kube-context, kubectl and internet; see docs/platform.md)
# The rollout document's deployment commands. Upstream platform charts are installed from their official
# repositories at the versions pinned in versions.env; they are never dependencies of charts/ai-agents.

# kind: create (or reuse) the kind cluster $(KIND_CLUSTER_NAME); existing: use the current kube-context as it is.
CLUSTER ?= kind
KIND_CLUSTER_NAME ?= ai-agents
KIND_CONFIG ?= $(REPO_ROOT)/hack/kind-config.yaml
KIND ?= $(TOOLS_BIN)/kind
# kubectl comes from the PATH (Debian's kubernetes-client package is far too old for these clusters).
KUBECTL ?= kubectl

# The runtime image: built by `make image`, loaded into kind by `make ai-agents-up`. With CLUSTER=existing,
# point IMAGE at a registry the cluster can pull from and push it first. IMAGE must carry a tag.
IMAGE ?= ai-agents/runtime:0.1.0
BASE_IMAGE ?= python:3.11-slim-bookworm
IMAGE_TAG = $(lastword $(subst :, ,$(IMAGE)))
IMAGE_REPOSITORY = $(patsubst %:$(IMAGE_TAG),%,$(IMAGE))
IMAGE_REVISION = $(shell git -C $(REPO_ROOT) rev-parse HEAD 2>/dev/null)

AI_AGENTS_RELEASE ?= ai-agents
AI_AGENTS_NAMESPACE ?= ai-agents
ISTIO_NAMESPACE ?= istio-system
MONITORING_NAMESPACE ?= monitoring
KEDA_NAMESPACE ?= keda
HELM_TIMEOUT ?= 10m
# Extra arguments for the ai-agents release, e.g. AI_AGENTS_HELM_ARGS="-f my-values.yaml".
AI_AGENTS_HELM_ARGS ?=

# Official chart repositories and release artefacts.
ISTIO_CHART_REPO ?= https://istio-release.storage.googleapis.com/charts
KEDA_CHART_REPO ?= https://kedacore.github.io/charts
PROMETHEUS_COMMUNITY_CHART_REPO ?= https://prometheus-community.github.io/helm-charts
JAEGER_CHART_REPO ?= https://jaegertracing.github.io/helm-charts
KIALI_CHART_REPO ?= https://kiali.org/helm-charts
METRICS_SERVER_CHART_REPO ?= https://kubernetes-sigs.github.io/metrics-server/
# metrics-server serves the resource metrics that KEDA's CPU trigger reads (kind has none).
METRICS_SERVER_CHART_VERSION ?= 3.13.1
# `standard`, or `experimental` for the HTTPRoute retry field (see charts/mesh/values.yaml).
GATEWAY_API_CHANNEL ?= standard
GATEWAY_API_INSTALL_URL ?= https://github.com/kubernetes-sigs/gateway-api/releases/download/$(GATEWAY_API_VERSION)/$(GATEWAY_API_CHANNEL)-install.yaml

# In-cluster addresses of the prerequisites, as the releases below name them.
KPS_RELEASE := kube-prometheus-stack
PROMETHEUS_URL := http://$(KPS_RELEASE)-prometheus.$(MONITORING_NAMESPACE).svc:9090
GRAFANA_URL := http://$(KPS_RELEASE)-grafana.$(MONITORING_NAMESPACE).svc:80
JAEGER_OTLP_ENDPOINT := http://jaeger-collector.$(ISTIO_NAMESPACE).svc:4317
JAEGER_QUERY_GRPC_URL := http://jaeger-query.$(ISTIO_NAMESPACE).svc:16685
JAEGER_QUERY_HTTP_URL := http://jaeger-query.$(ISTIO_NAMESPACE).svc:16686
# Istio's tracing extension provider; charts/mesh refers to it by this name (telemetry.tracing.provider).
ISTIO_TRACING_PROVIDER ?= otel-tracing

PLATFORM_CHECK := CLUSTER=$(CLUSTER) KUBECTL=$(KUBECTL) HELM=$(HELM) KIND=$(KIND) $(REPO_ROOT)/hack/platform-check.sh
HELM_INSTALL := $(HELM) upgrade --install --wait --timeout $(HELM_TIMEOUT)

# Values of the ai-agents release: the three subcharts on (KEDA, in the mesh since keda-install, admitted to the
# orchestrator's queue), the image built above, tracing to Jaeger (and the NetworkPolicy egress it needs), and the
# label that kube-prometheus-stack's selectors match.
AI_AGENTS_OTLP_EGRESS := [{"to":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"$(ISTIO_NAMESPACE)"}},"podSelector":{"matchLabels":{"app.kubernetes.io/instance":"jaeger"}}}],"ports":[{"port":4317,"protocol":"TCP"}]}]
AI_AGENTS_VALUES := \
	--set mesh.enabled=true,observability.enabled=true,kedaScalers.enabled=true \
	--set mesh.keda.orchestratorTrigger=true,mesh.keda.namespace=$(KEDA_NAMESPACE) \
	--set observability.additionalLabels.release=$(KPS_RELEASE) \
	--set kedaScalers.prometheus.serverAddress=$(PROMETHEUS_URL) \
	--set image.repository=$(IMAGE_REPOSITORY),image.tag=$(IMAGE_TAG) \
	--set tracing.otlpEndpoint=$(JAEGER_OTLP_ENDPOINT) \
	--set-json 'networkPolicy.orchestrator.extraEgress=$(AI_AGENTS_OTLP_EGRESS)' \
	--set-json 'networkPolicy.agents.extraEgress=$(AI_AGENTS_OTLP_EGRESS)'

.PHONY: platform-check kind image ai-agents-up platform-crds ambient-up keda-install ai-agents-services keda-scalers \
	ai-agents-test ai-agents-status keda-status mesh-dashboard ai-agents-scaling ai-agents-down

platform-check: ## Fail early, saying what is missing (docker, kind, kubectl, helm, internet, a reachable cluster)
	@$(PLATFORM_CHECK) tools internet $(if $(filter kind,$(CLUSTER)),docker)

kind: ## Build kind (KIND_VERSION in versions.env) into .tools/bin with go install
	@if [ -x "$(KIND)" ] && "$(KIND)" version 2>/dev/null | grep -q " $(KIND_VERSION) "; then \
		echo "kind $(KIND_VERSION) is already in $(TOOLS_BIN)"; \
	else \
		echo "go install sigs.k8s.io/kind@$(KIND_VERSION)"; \
		GOBIN="$(TOOLS_BIN)" go install sigs.k8s.io/kind@$(KIND_VERSION) && "$(KIND)" version; \
	fi

image: ## Build the runtime image (IMAGE) from agent_image/ (BASE_IMAGE=ai-agents/base:bookworm builds without a registry)
	@$(PLATFORM_CHECK) docker
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg VERSION=$(IMAGE_TAG) \
		--build-arg REVISION=$(IMAGE_REVISION) -t $(IMAGE) $(REPO_ROOT)/agent_image

ai-agents-up: ## Phase A: create the kind cluster (CLUSTER=existing: use the current kube-context) and load the image
ifeq ($(CLUSTER),existing)
	@$(PLATFORM_CHECK) kubectl cluster
	@echo "Using kube-context $$($(KUBECTL) config current-context); the cluster must be able to pull $(IMAGE)."
else
	@$(PLATFORM_CHECK) docker internet
	@$(MAKE) --no-print-directory kind
	@if "$(KIND)" get clusters 2>/dev/null | grep -qx "$(KIND_CLUSTER_NAME)"; then \
		echo "kind cluster $(KIND_CLUSTER_NAME) exists; reusing it"; \
		"$(KIND)" export kubeconfig --name "$(KIND_CLUSTER_NAME)"; \
	else \
		"$(KIND)" create cluster --name "$(KIND_CLUSTER_NAME)" --image "$(KIND_NODE_IMAGE)" \
			--config "$(KIND_CONFIG)" --wait 5m; \
	fi
	@$(MAKE) --no-print-directory image
	"$(KIND)" load docker-image "$(IMAGE)" --name "$(KIND_CLUSTER_NAME)"
	@$(PLATFORM_CHECK) kubectl cluster
endif

platform-crds: ## Install only the upstream CRDs (Gateway API, Istio, KEDA, Prometheus Operator) at the pinned versions
	@$(PLATFORM_CHECK) kubectl cluster internet
	$(KUBECTL) apply --server-side -f $(GATEWAY_API_INSTALL_URL)
	$(KUBECTL) apply --server-side -f https://raw.githubusercontent.com/istio/istio/$(ISTIO_VERSION)/manifests/charts/base/files/crd-all.gen.yaml
	$(KUBECTL) apply --server-side $(foreach crd,keda.sh_scaledobjects keda.sh_scaledjobs keda.sh_triggerauthentications \
		keda.sh_clustertriggerauthentications eventing.keda.sh_cloudeventsources eventing.keda.sh_clustercloudeventsources,\
		-f https://raw.githubusercontent.com/kedacore/keda/v$(KEDA_CHART_VERSION)/config/crd/bases/$(crd).yaml)
	$(KUBECTL) apply --server-side $(foreach crd,alertmanagerconfigs alertmanagers podmonitors probes prometheusagents \
		prometheuses prometheusrules scrapeconfigs servicemonitors thanosrulers,\
		-f https://raw.githubusercontent.com/prometheus-community/helm-charts/kube-prometheus-stack-$(KUBE_PROMETHEUS_STACK_VERSION)/charts/kube-prometheus-stack/charts/crds/crds/crd-$(crd).yaml)

ambient-up: ## Phase B: Gateway API CRDs, Istio ambient, kube-prometheus-stack, Jaeger, Kiali; label the namespace
	@$(PLATFORM_CHECK) tools cluster internet
	$(KUBECTL) apply --server-side -f $(GATEWAY_API_INSTALL_URL)
	$(HELM_INSTALL) istio-base base --repo $(ISTIO_CHART_REPO) --version $(ISTIO_VERSION) \
		--namespace $(ISTIO_NAMESPACE) --create-namespace
	$(HELM_INSTALL) istiod istiod --repo $(ISTIO_CHART_REPO) --version $(ISTIO_VERSION) \
		--namespace $(ISTIO_NAMESPACE) --set profile=ambient \
		--set-json 'meshConfig.extensionProviders=[{"name":"$(ISTIO_TRACING_PROVIDER)","opentelemetry":{"service":"jaeger-collector.$(ISTIO_NAMESPACE).svc.cluster.local","port":4317}}]'
	$(HELM_INSTALL) istio-cni cni --repo $(ISTIO_CHART_REPO) --version $(ISTIO_VERSION) \
		--namespace $(ISTIO_NAMESPACE) --set profile=ambient
	$(HELM_INSTALL) ztunnel ztunnel --repo $(ISTIO_CHART_REPO) --version $(ISTIO_VERSION) \
		--namespace $(ISTIO_NAMESPACE)
	@# Prometheus selects every ServiceMonitor, PodMonitor and PrometheusRule (the ai-agents ones also carry
	@# `release: $(KPS_RELEASE)`); Grafana's sidecar loads dashboards from every namespace.
	$(HELM_INSTALL) $(KPS_RELEASE) kube-prometheus-stack --repo $(PROMETHEUS_COMMUNITY_CHART_REPO) \
		--version $(KUBE_PROMETHEUS_STACK_VERSION) --namespace $(MONITORING_NAMESPACE) --create-namespace \
		--set prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues=false \
		--set prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues=false \
		--set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false \
		--set grafana.sidecar.dashboards.searchNamespace=ALL \
		--set-json 'grafana.additionalDataSources=[{"name":"Jaeger","type":"jaeger","uid":"jaeger","access":"proxy","url":"$(JAEGER_QUERY_HTTP_URL)"}]'
	@# Jaeger all-in-one with in-memory storage: OTLP on jaeger-collector:4317/4318, UI on jaeger-query:16686.
	$(HELM_INSTALL) jaeger jaeger --repo $(JAEGER_CHART_REPO) --version $(JAEGER_CHART_VERSION) \
		--namespace $(ISTIO_NAMESPACE) \
		--set provisionDataStore.cassandra=false,allInOne.enabled=true,storage.type=memory \
		--set agent.enabled=false,collector.enabled=false,query.enabled=false
	$(HELM_INSTALL) kiali-server kiali-server --repo $(KIALI_CHART_REPO) --version $(KIALI_SERVER_CHART_VERSION) \
		--namespace $(ISTIO_NAMESPACE) --set auth.strategy=anonymous \
		--set external_services.prometheus.url=$(PROMETHEUS_URL) \
		--set external_services.tracing.enabled=true,external_services.tracing.use_grpc=true \
		--set external_services.tracing.internal_url=$(JAEGER_QUERY_GRPC_URL) \
		--set external_services.tracing.external_url=http://localhost:16686 \
		--set external_services.grafana.enabled=true,external_services.grafana.internal_url=$(GRAFANA_URL) \
		--set external_services.grafana.external_url=http://localhost:3000
	$(KUBECTL) create namespace $(AI_AGENTS_NAMESPACE) --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) label namespace $(AI_AGENTS_NAMESPACE) istio.io/dataplane-mode=ambient --overwrite

keda-install: ## Phase E: install KEDA (and metrics-server when the cluster has no metrics API)
	@$(PLATFORM_CHECK) tools cluster internet
	@if $(KUBECTL) get apiservice v1beta1.metrics.k8s.io >/dev/null 2>&1; then \
		echo "The metrics API is served already; not installing metrics-server"; \
	else \
		set -x; $(HELM_INSTALL) metrics-server metrics-server --repo $(METRICS_SERVER_CHART_REPO) \
			--version $(METRICS_SERVER_CHART_VERSION) --namespace kube-system \
			$(if $(filter kind,$(CLUSTER)),--set 'args={--kubelet-insecure-tls}'); \
	fi
	@# KEDA's own ServiceMonitors only when the Prometheus Operator CRDs exist (kube-prometheus-stack installed).
	$(HELM_INSTALL) keda keda --repo $(KEDA_CHART_REPO) --version $(KEDA_CHART_VERSION) \
		--namespace $(KEDA_NAMESPACE) --create-namespace \
		$$($(KUBECTL) get crd servicemonitors.monitoring.coreos.com >/dev/null 2>&1 && echo \
			--set prometheus.operator.enabled=true,prometheus.operator.serviceMonitor.enabled=true \
			--set prometheus.metricServer.enabled=true,prometheus.metricServer.serviceMonitor.enabled=true)
	@# KEDA's queue trigger asks the orchestrator, whose port admits only mesh identities under STRICT mTLS.
	$(KUBECTL) label namespace $(KEDA_NAMESPACE) istio.io/dataplane-mode=ambient --overwrite

ai-agents-services: ## Phase A: helm upgrade --install ai-agents with the mesh, observability and KEDA subcharts
	@$(PLATFORM_CHECK) tools cluster crds
	$(HELM) dependency build $(REPO_ROOT)/charts/ai-agents
	$(HELM_INSTALL) $(AI_AGENTS_RELEASE) $(REPO_ROOT)/charts/ai-agents \
		--namespace $(AI_AGENTS_NAMESPACE) --create-namespace $(AI_AGENTS_VALUES) $(AI_AGENTS_HELM_ARGS)

keda-scalers: ## Phase E: turn on the keda-scalers subchart of the installed release (keeps its other values)
	@$(PLATFORM_CHECK) tools cluster crds
	$(HELM) dependency build $(REPO_ROOT)/charts/ai-agents
	$(HELM) upgrade $(AI_AGENTS_RELEASE) $(REPO_ROOT)/charts/ai-agents --namespace $(AI_AGENTS_NAMESPACE) \
		--reuse-values --set kedaScalers.enabled=true --wait --timeout $(HELM_TIMEOUT)
	$(KUBECTL) get scaledobjects --namespace $(AI_AGENTS_NAMESPACE)

# The e2e suite targets the current kube-context by default; these tell it where the release is.
E2E_CLUSTER ?= existing
PYTEST_ARGS ?=
ai-agents-test: ## Phase F: run the e2e harness (tests/e2e) against the cluster (E2E_CLUSTER=existing)
	@test -x "$(PYTHON)" || { echo "$(PYTHON) is missing: run 'make setup' first" >&2; exit 1; }
	@$(if $(filter existing,$(E2E_CLUSTER)),$(PLATFORM_CHECK) kubectl cluster,true)
	E2E_CLUSTER=$(E2E_CLUSTER) E2E_RELEASE=$(AI_AGENTS_RELEASE) E2E_NAMESPACE=$(AI_AGENTS_NAMESPACE) \
		E2E_MONITORING_NAMESPACE=$(MONITORING_NAMESPACE) E2E_ISTIO_NAMESPACE=$(ISTIO_NAMESPACE) \
		E2E_KEDA_NAMESPACE=$(KEDA_NAMESPACE) E2E_IMAGE=$(IMAGE) HELM=$(HELM) \
		$(PYTHON) -m pytest $(REPO_ROOT)/tests/e2e $(PYTEST_ARGS)

ai-agents-status: ## Show the release, its pods, Services, routes and the platform's pods
	@$(PLATFORM_CHECK) kubectl cluster
	@echo "== kube-context: $$($(KUBECTL) config current-context)"
	-@$(HELM) list --all-namespaces
	@echo "== $(AI_AGENTS_NAMESPACE)"
	-@$(KUBECTL) get deployments,statefulsets,pods,services --namespace $(AI_AGENTS_NAMESPACE) -o wide
	-@$(KUBECTL) get gateways.gateway.networking.k8s.io,httproutes,grpcroutes --namespace $(AI_AGENTS_NAMESPACE) 2>/dev/null
	-@$(KUBECTL) get peerauthentications,authorizationpolicies,destinationrules --namespace $(AI_AGENTS_NAMESPACE) 2>/dev/null
	@for ns in $(ISTIO_NAMESPACE) $(MONITORING_NAMESPACE) $(KEDA_NAMESPACE); do \
		echo "== $$ns"; $(KUBECTL) get pods --namespace $$ns 2>/dev/null || true; done

keda-status: ## Show ScaledObjects, their HPAs, the agents' replicas and KEDA's pods
	@$(PLATFORM_CHECK) kubectl cluster
	-@$(KUBECTL) get scaledobjects,triggerauthentications,hpa --namespace $(AI_AGENTS_NAMESPACE) -o wide
	-@$(KUBECTL) get deployments --namespace $(AI_AGENTS_NAMESPACE) -l app.kubernetes.io/name=agent
	-@$(KUBECTL) get pods --namespace $(KEDA_NAMESPACE)
	-@$(KUBECTL) get apiservice v1beta1.external.metrics.k8s.io v1beta1.metrics.k8s.io

mesh-dashboard: ## Port-forward Grafana, Kiali, Jaeger and Prometheus, print their URLs; Ctrl-C stops them
	@$(PLATFORM_CHECK) kubectl cluster
	@KUBECTL=$(KUBECTL) MONITORING_NAMESPACE=$(MONITORING_NAMESPACE) ISTIO_NAMESPACE=$(ISTIO_NAMESPACE) \
		KPS_RELEASE=$(KPS_RELEASE) $(REPO_ROOT)/hack/mesh-dashboard.sh

ai-agents-scaling: ## Everything in order: cluster, mesh and observability, KEDA, the release, its scalers, status
	@$(MAKE) --no-print-directory ai-agents-up
	@$(MAKE) --no-print-directory ambient-up
	@$(MAKE) --no-print-directory keda-install
	@$(MAKE) --no-print-directory ai-agents-services
	@$(MAKE) --no-print-directory keda-scalers
	@$(MAKE) --no-print-directory ai-agents-status

ai-agents-down: ## Delete the kind cluster (CLUSTER=existing: uninstall only the ai-agents release)
ifeq ($(CLUSTER),existing)
	$(HELM) uninstall $(AI_AGENTS_RELEASE) --namespace $(AI_AGENTS_NAMESPACE) --wait
else
	@$(PLATFORM_CHECK) tools docker
	"$(KIND)" delete cluster --name "$(KIND_CLUSTER_NAME)"
endif
