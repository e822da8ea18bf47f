#!/usr/bin/env bash
# Makes sure the machine has what the local cluster, its real node and the tests run on, and installs
# Debian's packages for whatever is missing. Never starts or relies on a system service.
#   PostgreSQL server binaries (initdb, pg_ctl) and PgBouncer: the throwaway store and its pooler;
#   containerd, runc and the CNI plugins: the real node's container runtime and pod network;
#   nftables (the nft command): kube-proxy's Services on the real node, and the filter that keeps them there;
#   mmdebstrap and umoci: the images, built without Docker (hack/build-images.sh);
#   chromium and chromium-driver: the headless browser the web timeline's tests (tests/ui) drive.
# containerd and runc are pinned to an upstream version (hack/versions.env); Debian's revision may move,
# since the mirror keeps only the newest one and its revisions are security fixes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
command -v pgbouncer >/dev/null || missing+=(pgbouncer)
command -v containerd >/dev/null || missing+=("containerd=$CONTAINERD_VERSION*")
[ -x /usr/sbin/runc ] || missing+=("runc=$RUNC_VERSION*")
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v nft >/dev/null || missing+=(nftables)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v umoci >/dev/null || missing+=(umoci)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
	echo "[deps] installing ${missing[*]} with apt-get..." >&2
	sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# The packages' post-install scripts may start system services; we never use them.
	for service in postgresql pgbouncer containerd nftables; do
		$sudo service "$service" stop >/dev/null 2>&1 || true
	done
fi
for pin in "containerd $CONTAINERD_VERSION" "runc $RUNC_VERSION"; do
	set -- $pin
	installed=$(dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo none)
	case "$installed" in
	"$2"*) ;;
	*) echo "[deps] $1 $installed is installed, but the real node is pinned to $2 (hack/versions.env)" >&2; exit 1 ;;
	esac
done
