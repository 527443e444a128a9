#!/usr/bin/env bash
# Fetch the upstream CRDs that the chart tests validate custom resources against, at the versions pinned
# in versions.env, into CRD_SCHEMA_DIR with this layout (the one tests/charts/crdschema.py reads):
#
#   istio-<ISTIO_VERSION>/crd-all.gen.yaml                 istio/istio manifests/charts/base/files
#   gateway-api-<GATEWAY_API_VERSION>/{standard,experimental}/*.yaml   kubernetes-sigs/gateway-api config/crd
#   keda-v<KEDA_CHART_VERSION>/*.yaml                      kedacore/keda config/crd/bases (the KEDA chart
#                                                          and KEDA itself share version numbers)
#   prometheus-operator-kps-<KUBE_PROMETHEUS_STACK_VERSION>/crd-*.yaml
#                                                          prometheus-community/helm-charts, the CRDs that
#                                                          kube-prometheus-stack ships (charts/crds/crds)
#
# `hack/crds-download.sh --list` prints each destination and URL without fetching anything.
# Needs internet access to raw.githubusercontent.com. Files are downloaded to a temporary folder first;
# a file absent from CRD_SCHEMA_DIR is installed, an identical one is left alone, and one that differs is
# reported and the script fails (CRDS_FORCE=1 overwrites it), so running it against an existing copy
# also verifies that copy.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../versions.env
source "${REPO_ROOT}/versions.env"
RAW="${RAW_BASE_URL:-https://raw.githubusercontent.com}"

GATEWAY_API_FILES=(
	gateway.networking.k8s.io_backendtlspolicies.yaml gateway.networking.k8s.io_gatewayclasses.yaml
	gateway.networking.k8s.io_gateways.yaml gateway.networking.k8s.io_grpcroutes.yaml
	gateway.networking.k8s.io_httproutes.yaml gateway.networking.k8s.io_listenersets.yaml
	gateway.networking.k8s.io_referencegrants.yaml gateway.networking.k8s.io_tcproutes.yaml
	gateway.networking.k8s.io_tlsroutes.yaml gateway.networking.k8s.io_udproutes.yaml
	gateway.networking.k8s.io_vap_safeupgrades.yaml
)
GATEWAY_API_EXPERIMENTAL_ONLY=(
	gateway.networking.x-k8s.io_xbackends.yaml gateway.networking.x-k8s.io_xbackendtrafficpolicies.yaml
	gateway.networking.x-k8s.io_xmeshes.yaml
)
KEDA_FILES=(
	eventing.keda.sh_cloudeventsources.yaml eventing.keda.sh_clustercloudeventsources.yaml
	keda.sh_clustertriggerauthentications.yaml keda.sh_scaledjobs.yaml keda.sh_scaledobjects.yaml
	keda.sh_triggerauthentications.yaml
)
KPS_FILES=(
	crd-alertmanagerconfigs.yaml crd-alertmanagers.yaml crd-podmonitors.yaml crd-probes.yaml
	crd-prometheusagents.yaml crd-prometheuses.yaml crd-prometheusrules.yaml crd-scrapeconfigs.yaml
	crd-servicemonitors.yaml crd-thanosrulers.yaml
)

# "<destination relative to CRD_SCHEMA_DIR> <URL>" per line.
sources() {
	echo "istio-${ISTIO_VERSION}/crd-all.gen.yaml" \
		"${RAW}/istio/istio/${ISTIO_VERSION}/manifests/charts/base/files/crd-all.gen.yaml"
	local gw="gateway-api-${GATEWAY_API_VERSION}" f
	for f in "${GATEWAY_API_FILES[@]}"; do
		echo "${gw}/standard/${f} ${RAW}/kubernetes-sigs/gateway-api/${GATEWAY_API_VERSION}/config/crd/standard/${f}"
	done
	for f in "${GATEWAY_API_FILES[@]}" "${GATEWAY_API_EXPERIMENTAL_ONLY[@]}"; do
		echo "${gw}/experimental/${f} ${RAW}/kubernetes-sigs/gateway-api/${GATEWAY_API_VERSION}/config/crd/experimental/${f}"
	done
	for f in "${KEDA_FILES[@]}"; do
		echo "keda-v${KEDA_CHART_VERSION}/${f} ${RAW}/kedacore/keda/v${KEDA_CHART_VERSION}/config/crd/bases/${f}"
	done
	local kps="kube-prometheus-stack-${KUBE_PROMETHEUS_STACK_VERSION}"
	for f in "${KPS_FILES[@]}"; do
		echo "prometheus-operator-kps-${KUBE_PROMETHEUS_STACK_VERSION}/${f}" \
			"${RAW}/prometheus-community/helm-charts/${kps}/charts/kube-prometheus-stack/charts/crds/crds/${f}"
	done
}

if [[ "${1:-}" == "--list" ]]; then
	sources # what would be fetched, and where to: no network
	exit 0
fi

: "${CRD_SCHEMA_DIR:?set CRD_SCHEMA_DIR to the folder to fill}"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

while read -r dest url; do
	mkdir -p "$(dirname "${tmp}/${dest}")"
	echo "fetch ${url}"
	curl --fail --silent --show-error --location --retry 3 --output "${tmp}/${dest}" "${url}"
done < <(sources)

installed=0 unchanged=0 differ=0
while read -r dest _; do
	target="${CRD_SCHEMA_DIR}/${dest}"
	if [[ ! -e "${target}" ]]; then
		mkdir -p "$(dirname "${target}")"
		cp "${tmp}/${dest}" "${target}"
		installed=$((installed + 1))
	elif cmp -s "${tmp}/${dest}" "${target}"; then
		unchanged=$((unchanged + 1))
	elif [[ "${CRDS_FORCE:-0}" == 1 ]]; then
		cp "${tmp}/${dest}" "${target}"
		installed=$((installed + 1))
	else
		echo "crds-download: ${target} differs from upstream (CRDS_FORCE=1 replaces it)" >&2
		differ=$((differ + 1))
	fi
done < <(sources)

echo "crds-download: ${installed} installed, ${unchanged} already identical, ${differ} differing, in ${CRD_SCHEMA_DIR}"
[[ ${differ} -eq 0 ]]
