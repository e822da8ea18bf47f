#!/usr/bin/env bash
# Builds the local cluster's binaries from source through the Go module proxy,
# once, into a cache outside the repository keyed by the pinned versions, and
# prints the bin directory. A second run with the same versions is a no-op.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"

# The key covers this script too: a change to how a tool is built must not reuse the old binary.
key=$(cat "$here/versions.env" "$here/build-tools.sh" "$here/controlplane/go.mod" "$here/controlplane/go.sum" \
	"$here/controlplane/main.go" | sha256sum | cut -c1-12)
cache=${STRATA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stratarouter-tools}
bin="$cache/$KUBERNETES_VERSION-$key/bin"
mkdir -p "$bin"
# One build at a time per cache (make, pytest and the demo may all ask at once): the others wait, then reuse it.
if command -v flock >/dev/null; then
	exec 9>"$cache/.build.lock"
	flock 9
fi

log() { echo "[tools] $*" >&2; }
major=${KUBERNETES_VERSION#v}; major=${major%%.*}
minor=${KUBERNETES_VERSION#v*.}; minor=${minor%%.*}

if [ ! -x "$bin/controlplane" ]; then
	log "building etcd $ETCD_VERSION + kubernetes $KUBERNETES_VERSION control plane and kubelet (cold: ~8 minutes on 2 cores)..."
	start=$(date +%s)
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
for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
	ln -sf controlplane "$bin/$c"
done

if [ ! -x "$bin/kwok" ]; then
	log "building kwok $KWOK_VERSION..."
	GOBIN="$bin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi
if [ ! -x "$bin/helm" ]; then
	log "building helm $HELM_VERSION..."
	# Offline renders (`helm template`, `helm lint`) assume the pinned cluster's version, not helm's v1.20 default.
	hv="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
	for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
		hv="$hv -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"
	done
	GOBIN="$bin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w $hv" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
if [ ! -x "$bin/promtool" ]; then
	# The chart's alert rules are checked and unit-tested with promtool (tests/chart/test_alerts.py). Pinned
	# here, not in versions.env: no part of the cluster runs it. The Prometheus Go module's version.
	PROMETHEUS_VERSION=v0.316.0
	log "building promtool (prometheus $PROMETHEUS_VERSION)..."
	GOBIN="$bin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
		"github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
fi
# Keep the three most recently used builds (a running cluster may still use an older one), not every
# one ever made.
touch "$cache/$KUBERNETES_VERSION-$key"
ls -dt "$cache"/v[0-9]*-* | tail -n +4 | xargs -r rm -rf --one-file-system
echo "$bin"
