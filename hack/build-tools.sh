#!/usr/bin/env bash
# Builds the local cluster's binaries from source through the Go module proxy,
# once, into a cache outside the repository keyed by the pinned versions, and
# prints the bin directory. A second run with the same versions is a no-op.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"

key=$(cat "$here/versions.env" "$here/controlplane/go.mod" "$here/controlplane/go.sum" "$here/controlplane/main.go" \
	| sha256sum | cut -c1-12)
cache=${STRATA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stratarouter-tools}
bin="$cache/$KUBERNETES_VERSION-$key/bin"
mkdir -p "$bin"

log() { echo "[tools] $*" >&2; }

if [ ! -x "$bin/controlplane" ]; then
	log "building etcd $ETCD_VERSION + kubernetes $KUBERNETES_VERSION control plane (cold: many minutes on 2 cores)..."
	start=$(date +%s)
	major=${KUBERNETES_VERSION#v}; major=${major%%.*}
	minor=${KUBERNETES_VERSION#v*.}; minor=${minor%%.*}
	pkg=k8s.io/component-base/version
	ldflags="-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	(cd "$here/controlplane" && CGO_ENABLED=0 go build -v -trimpath -ldflags "$ldflags" \
		-o "$bin/controlplane.tmp" . 2>&1 | awk '
			# `go build -v` prints one package path per line: count those, pass everything else (errors) through.
			/^[A-Za-z0-9_.~+\/-]+$/ { n++; if (n % 50 == 0) { printf "[tools] compiled %d packages (last: %s)\n", n, $0; fflush() }; next }
			{ print; fflush() }' >&2)
	mv "$bin/controlplane.tmp" "$bin/controlplane"
	log "control plane built in $(( $(date +%s) - start ))s"
fi
for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
	ln -sf controlplane "$bin/$c"
done

if [ ! -x "$bin/kwok" ]; then
	log "building kwok $KWOK_VERSION..."
	GOBIN="$bin" CGO_ENABLED=0 go install -trimpath "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi
if [ ! -x "$bin/helm" ]; then
	log "building helm $HELM_VERSION..."
	GOBIN="$bin" CGO_ENABLED=0 go install -trimpath \
		-ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
echo "$bin"
