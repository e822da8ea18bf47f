#!/usr/bin/env bash
# Shared by kind-up.sh and kind-e2e.sh: names, and kind/helm binaries installed through the Go module
# proxy into the tools cache when they are not on PATH (no control-plane build needed for kind).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"
KIND_VERSION=${KIND_VERSION:-v0.30.0}
KIND_CLUSTER=${KIND_CLUSTER:-stratarouter}
IMAGE_OPERATOR=${IMAGE_OPERATOR:-stratarouter-operator:dev}
IMAGE_EXAMPLE=${IMAGE_EXAMPLE:-stratarouter-example:dev}
RELEASE=${RELEASE:-stratarouter}
RELEASE_NAMESPACE=${RELEASE_NAMESPACE:-stratarouter-system}
KUBECONFIG_KIND=${KUBECONFIG_KIND:-${XDG_CACHE_HOME:-$HOME/.cache}/stratarouter-kind/kubeconfig}

log() { echo "[kind] $*" >&2; }

need_docker() {
	if ! docker info >/dev/null 2>&1; then
		log "needs a running Docker engine (docker info failed); the rest of the suite runs without it: make test"
		exit 1
	fi
}

# tool NAME MODULE VERSION: path of NAME from PATH, else from the cache (go install on first use).
tool() {
	local name=$1 module=$2 version=$3 bin
	if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
	if [ -n "${STRATA_TOOLS_BIN:-}" ] && [ -x "$STRATA_TOOLS_BIN/$name" ]; then echo "$STRATA_TOOLS_BIN/$name"; return; fi
	bin=${STRATA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stratarouter-tools}/kind-$version/bin
	if [ ! -x "$bin/$name" ]; then
		log "installing $name $version..."
		GOBIN="$bin" CGO_ENABLED=0 go install -trimpath "$module@$version"
	fi
	echo "$bin/$name"
}

# Call after need_docker, so a machine without Docker fails before installing anything.
resolve_tools() {
	KIND=$(tool kind sigs.k8s.io/kind "$KIND_VERSION")
	HELM=$(tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION")
}
