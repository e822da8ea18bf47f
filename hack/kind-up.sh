#!/usr/bin/env bash
# `make kind-up` (needs Docker): a kind cluster, the operator and example images built and loaded into
# it, and the chart installed with the bundled PostgreSQL. Idempotent: reruns rebuild and upgrade.
set -euo pipefail
source "$(dirname "$0")/kind-lib.sh"
need_docker
resolve_tools

mkdir -p "$(dirname "$KUBECONFIG_KIND")"
if ! "$KIND" get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
	log "creating kind cluster $KIND_CLUSTER..."
	"$KIND" create cluster --name "$KIND_CLUSTER" --config "$here/kind-config.yaml" \
		${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --kubeconfig "$KUBECONFIG_KIND" --wait 120s
else
	"$KIND" export kubeconfig --name "$KIND_CLUSTER" --kubeconfig "$KUBECONFIG_KIND"
fi

log "building $IMAGE_OPERATOR and $IMAGE_EXAMPLE..."
docker build -t "$IMAGE_OPERATOR" "$root"
docker build -t "$IMAGE_EXAMPLE" -f "$root/examples/Dockerfile" "$root"
"$KIND" load docker-image --name "$KIND_CLUSTER" "$IMAGE_OPERATOR" "$IMAGE_EXAMPLE"

log "installing the chart as $RELEASE in $RELEASE_NAMESPACE..."
# pullPolicy Never: the images exist only inside the kind node, loaded above.
KUBECONFIG="$KUBECONFIG_KIND" "$HELM" upgrade --install "$RELEASE" "$root/charts/stratarouter-operator" \
	--namespace "$RELEASE_NAMESPACE" --create-namespace \
	--set image.repository="${IMAGE_OPERATOR%:*}" --set image.tag="${IMAGE_OPERATOR##*:}" \
	--set image.pullPolicy=Never \
	--wait --timeout 5m
log "ready; use it with: export KUBECONFIG=$KUBECONFIG_KIND"
echo "KUBECONFIG=$KUBECONFIG_KIND"
