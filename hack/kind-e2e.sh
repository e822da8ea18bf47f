#!/usr/bin/env bash
# `make kind-e2e` (needs Docker; run after kind-up.sh): the end-to-end tests against the kind cluster,
# where the operator runs from its image and the example workload runs in real containers.
set -euo pipefail
source "$(dirname "$0")/kind-lib.sh"
need_docker
resolve_tools
[ -f "$KUBECONFIG_KIND" ] || { log "no kind cluster yet: make kind-up"; exit 1; }

cd "$root"
STRATA_E2E_KUBECONFIG="$KUBECONFIG_KIND" \
STRATA_E2E_EXAMPLE_IMAGE="$IMAGE_EXAMPLE" \
STRATA_E2E_RELEASE="$RELEASE" \
STRATA_E2E_RELEASE_NAMESPACE="$RELEASE_NAMESPACE" \
	.venv/bin/python -m pytest tests/chart/test_e2e.py -v "$@"
