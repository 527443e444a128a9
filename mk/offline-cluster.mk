##@ Offline cluster (air-gapped single-node Kubernetes built from the module proxy and Debian; needs root)
# Pins: hack/offline-cluster/versions.env. Built binaries and images are cached in $(OFFLINE_CLUSTER_CACHE),
# outside the repo, and reused by later runs on the same machine. See hack/offline-cluster/README.md.
OFFLINE_CLUSTER_DIR := $(REPO_ROOT)/hack/offline-cluster
OFFLINE_CLUSTER_CACHE ?= /var/cache/ai-agents-offline-cluster
OFFLINE_CLUSTER_STATE ?= /var/lib/ai-agents-offline-cluster
export OFFLINE_CLUSTER_CACHE OFFLINE_CLUSTER_STATE

.PHONY: offline-cluster-build offline-cluster-images offline-cluster-up offline-cluster-down offline-cluster-test
offline-cluster-build: ## Build (or reuse from the cache) Kubernetes, etcd, CoreDNS, metrics-server, KEDA, the Prometheus Operator, Prometheus, Istio ambient and the node's images
	@$(OFFLINE_CLUSTER_DIR)/build-all.sh

offline-cluster-images: ## Build (or reuse) the runtime image from agent_image/Dockerfile and PostgreSQL with buildah, no registry
	@$(OFFLINE_CLUSTER_DIR)/agent-image.sh

offline-cluster-up: ## Start the offline single-node cluster; the last line printed is its KUBECONFIG path
	@$(OFFLINE_CLUSTER_DIR)/up.sh

offline-cluster-down: ## Stop the offline cluster and remove every process, namespace, mount, veth and cgroup it made
	@$(OFFLINE_CLUSTER_DIR)/down.sh

offline-cluster-test: ## Smoke-test a running offline cluster (pod, Service, DNS, HPA, KEDA)
	E2E_KUBECONFIG=$(OFFLINE_CLUSTER_STATE)/kubeconfig $(PYTHON) -m pytest tests/e2e/test_offline_cluster_smoke.py -v
