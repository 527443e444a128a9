#!/usr/bin/env bash
# Build the pinned command-line tools into .tools/bin from the Go module proxy.
#
#   hack/install-tools.sh [helm3|helm4|ct|helm-docs|buf ...]   (default: all of them)
#
# Versions come from versions.env (the one place they are pinned). A tool whose binary already reports
# the pinned version is skipped, so running this again is cheap. Each build's wall time is printed and
# appended to .tools/build-times.log.
#
# Every tool is built with `GOBIN=<dir> go install <module>/<cmd>@<version>`, with the -X flags its own
# release build sets so that `<tool> version` reports the pin. `go install pkg@version` cannot build a
# module whose go.mod has replace directives, and it also reads the module's version list from the proxy
# (to report deprecation). For such a tool, a small module under hack/tools/<name>/ requires it at the pin
# (a `tool` line; it would also repeat any replace lines) and this script builds from there instead.
# None of the pins has replace lines; ct has a wrapper because its version list is not always served.
#
# Kubernetes schemas: kubeconform would need the JSON schemas downloaded from GitHub at test time, which
# offline CI cannot reach. Built-in kinds are therefore validated with the `kubernetes-validate` Python
# package (it ships the schemas; see requirements-dev.txt and tests/charts/k8sschema.py), and custom
# resources against the upstream CRDs in CRD_SCHEMA_DIR.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../versions.env
source "${REPO_ROOT}/versions.env"
TOOLS_BIN="${TOOLS_BIN:-${REPO_ROOT}/.tools/bin}"
TIMES_LOG="${TOOLS_BIN%/bin}/build-times.log"

command -v go >/dev/null || { echo "install-tools: go is required (https://go.dev/dl/)" >&2; exit 1; }

# name | binary path | module | package to build | version | -ldflags | command printing the version
tool_spec() {
	case "$1" in
	helm3)
		SPEC_BIN="${TOOLS_BIN}/h3/helm" SPEC_MOD="helm.sh/helm/v3" SPEC_PKG="helm.sh/helm/v3/cmd/helm"
		SPEC_VERSION="${HELM3_VERSION}"
		SPEC_LDFLAGS="-X helm.sh/helm/v3/internal/version.version=${HELM3_VERSION}"
		SPEC_REPORT=(version --template '{{.Version}}') ;;
	helm4)
		SPEC_BIN="${TOOLS_BIN}/h4/helm" SPEC_MOD="helm.sh/helm/v4" SPEC_PKG="helm.sh/helm/v4/cmd/helm"
		SPEC_VERSION="${HELM4_VERSION}"
		SPEC_LDFLAGS="-X helm.sh/helm/v4/internal/version.version=${HELM4_VERSION}"
		SPEC_REPORT=(version --template '{{.Version}}') ;;
	ct)
		SPEC_BIN="${TOOLS_BIN}/ct" SPEC_MOD="github.com/helm/chart-testing/v3"
		SPEC_PKG="github.com/helm/chart-testing/v3/ct" SPEC_VERSION="${CT_VERSION}"
		SPEC_LDFLAGS="-X github.com/helm/chart-testing/v3/ct/cmd.Version=${CT_VERSION}"
		SPEC_REPORT=(version) ;;
	helm-docs)
		SPEC_BIN="${TOOLS_BIN}/helm-docs" SPEC_MOD="github.com/norwoodj/helm-docs"
		SPEC_PKG="github.com/norwoodj/helm-docs/cmd/helm-docs" SPEC_VERSION="${HELM_DOCS_VERSION}"
		# goreleaser's default -X main.version, without the "v": it is printed in every README footer.
		SPEC_LDFLAGS="-X main.version=${HELM_DOCS_VERSION#v}"
		SPEC_REPORT=(--version) ;;
	buf)
		# buf's version is a constant in its source; nothing to inject.
		SPEC_BIN="${TOOLS_BIN}/buf" SPEC_MOD="github.com/bufbuild/buf"
		SPEC_PKG="github.com/bufbuild/buf/cmd/buf" SPEC_VERSION="${BUF_VERSION}" SPEC_LDFLAGS=""
		SPEC_REPORT=(--version) ;;
	*)
		echo "install-tools: unknown tool '$1' (known: helm3 helm4 ct helm-docs buf)" >&2
		return 1 ;;
	esac
}

# True when the installed binary prints the pinned version (with or without the leading "v").
reports_version() {
	[[ -x "${SPEC_BIN}" ]] || return 1
	local out pattern="${SPEC_VERSION#v}"
	out="$("${SPEC_BIN}" "${SPEC_REPORT[@]}" 2>&1)" || return 1
	grep -qE "(^|[^0-9.])v?${pattern//./\\.}([^0-9.]|$)" <<<"${out}"
}

# Tools are run, never debugged: no DWARF written by the compiler (-dwarf=false) nor kept by the linker (-s -w),
# which takes a tenth off a build from an empty cache.
NO_DEBUG_INFO=(-gcflags=all=-dwarf=false)

# Build the tool described by tool_spec into folder $1.
build_into() {
	local out="$1" name="$2"
	if [[ -f "${REPO_ROOT}/hack/tools/${name}/go.mod" ]]; then
		# A wrapper module (see the header); its require line must match the pin in versions.env.
		if ! grep -qE "^[[:space:]]*${SPEC_MOD//./\\.} ${SPEC_VERSION//./\\.}( |$)" \
			"${REPO_ROOT}/hack/tools/${name}/go.mod"; then
			echo "install-tools: hack/tools/${name}/go.mod does not require ${SPEC_MOD} ${SPEC_VERSION};" \
				"run there: go get -tool ${SPEC_PKG}@${SPEC_VERSION}" >&2
			return 1
		fi
		(cd "${REPO_ROOT}/hack/tools/${name}" && go build "${NO_DEBUG_INFO[@]}" -ldflags "-s -w ${SPEC_LDFLAGS}" -o "${out}/" "${SPEC_PKG}")
	else
		GOBIN="${out}" go install "${NO_DEBUG_INFO[@]}" -ldflags "-s -w ${SPEC_LDFLAGS}" "${SPEC_PKG}@${SPEC_VERSION}"
	fi
}

install_tool() {
	local name="$1" start elapsed dir out
	tool_spec "${name}"
	if reports_version; then
		echo "install-tools: ${name} ${SPEC_VERSION} already at ${SPEC_BIN#"${REPO_ROOT}"/}"
		return 0
	fi
	dir="$(dirname "${SPEC_BIN}")"
	mkdir -p "${dir}"
	# Build next to the target, then rename over it: a stale binary stays usable until the new one is
	# complete (and go refuses to overwrite a file it did not build).
	out="$(mktemp -d "${dir}/.build-${name}.XXXXXX")"
	echo "install-tools: building ${name} ${SPEC_VERSION} (${SPEC_PKG}) ..."
	start=$(date +%s)
	if ! build_into "${out}" "${name}"; then
		rm -rf "${out}"
		echo "install-tools: building ${name} failed" >&2
		return 1
	fi
	mv -f "${out}/$(basename "${SPEC_PKG}")" "${SPEC_BIN}"
	rm -rf "${out}"
	elapsed=$(($(date +%s) - start))
	if ! reports_version; then
		echo "install-tools: ${SPEC_BIN} was built but does not report ${SPEC_VERSION}:" >&2
		"${SPEC_BIN}" "${SPEC_REPORT[@]}" >&2 || true
		return 1
	fi
	echo "install-tools: ${name} ${SPEC_VERSION} built in ${elapsed}s"
	printf '%s\t%s\t%s\t%ss\t%s\n' "$(date -u +%FT%TZ)" "${name}" "${SPEC_VERSION}" "${elapsed}" \
		"$(go env GOVERSION)" >>"${TIMES_LOG}"
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(helm3 helm4 ct helm-docs buf)
for tool in "${tools[@]}"; do
	install_tool "${tool}"
done
