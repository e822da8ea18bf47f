#!/usr/bin/env bash
# Builds the three OCI images the local node runs, without Docker and without pulling from any container
# registry, and prints the directory that holds them:
#   pause.tar     localhost/stratarouter-pause:<TAG>           the pod sandbox, Kubernetes' pause.c built static
#   operator.tar  docker.io/library/stratarouter-operator:dev   the wheel with its [operator] extra
#   example.tar   docker.io/library/stratarouter-example:dev    the SDK with its [langgraph] extra (no
#                 [operator] extra), examples/workload.py and examples/langgraph_agent.py
# Each file is an OCI image layout in a tar whose index names the full reference, so
#   ctr -n k8s.io images import --all-platforms FILE.tar
# creates exactly that image. The operator and example images are a Debian bookworm base (mmdebstrap,
# Debian's python3, built once and reused) plus one layer with the packages from PyPI (uv pip --target).
# Everything lands in a cache outside the repository keyed by the hash of its inputs; a second run with the
# same inputs is a no-op. Needs mmdebstrap, umoci, gcc with a static libc, uv (or pip to install it) and Go
# (only to fetch the kubernetes module that carries pause.c, when the module cache lacks it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=/dev/null
source "$here/versions.env"

log() { echo "[images] $*" >&2; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }

suite=bookworm
# What the base gets beyond minbase. python-is-python3: the chart's init container runs `python -c ...`.
packages=python3,python-is-python3
operator_ref=docker.io/library/stratarouter-operator:dev
example_ref=docker.io/library/stratarouter-example:dev
uid=10001
site_env=(PATH=/opt/site/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PYTHONPATH=/opt/site
	PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1)

# pause.c and its image tag come from the kubernetes module the control plane is built from.
k8s=$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBERNETES_VERSION
if [ ! -f "$k8s/build/pause/linux/pause.c" ]; then
	log "fetching k8s.io/kubernetes $KUBERNETES_VERSION for pause.c..."
	(cd "$here/controlplane" && go mod download k8s.io/kubernetes) >&2
fi
pause_c=$k8s/build/pause/linux/pause.c
pause_tag=$(sed -n 's/^TAG ?= *//p' "$k8s/build/pause/Makefile")
pause_ref=localhost/stratarouter-pause:$pause_tag

# The tracked files the wheel and the example are made of; the wheel is built from a copy of exactly these,
# so an untracked file in operator/ can neither leak into an image nor go unnoticed by the key.
inputs() {
	(cd "$root" && git ls-files -z -- operator pyproject.toml README.md examples/workload.py \
		examples/langgraph_agent.py) |
		while IFS= read -r -d '' f; do if [ -f "$root/$f" ]; then printf '%s\0' "$f"; fi; done
}
base_key=$({ cat "$here/build-images.sh"; echo "$suite $packages"; } | sha256sum | cut -c1-12)
key=$({
	echo "base $base_key pause $pause_tag $KUBERNETES_VERSION"
	sha256sum "$pause_c" | cut -d' ' -f1
	inputs | (cd "$root" && xargs -0 sha256sum)
} | sha256sum | cut -c1-12)

cache=${STRATA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stratarouter-tools}
base=$cache/rootfs-$suite-$base_key
out=$cache/images-$key
# Results appear by rename, complete or not at all: an existing directory is a finished build.
if [ -d "$out" ]; then
	echo "$out"
	exit 0
fi
mkdir -p "$cache"
# One build at a time per cache: the others wait, then reuse what the first one made.
exec 9>"$cache/.images.lock"
flock 9
if [ -d "$out" ]; then
	echo "$out"
	exit 0
fi
# remove DIR...: rm -rf that never leaves the directory's filesystem, after unmounting whatever an
# interrupted mmdebstrap may have left mounted inside (its chroot's /proc, /sys, /dev).
remove() {
	local d m
	for d in "$@"; do
		[ -e "$d" ] || continue
		d=$(realpath "$d")
		awk -v d="$d/" 'index($5 "/", d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
			while read -r m; do umount -l "$m"; done
		rm -rf --one-file-system "$d"
	done
}
# Holding the lock, no other build is running: leftovers of an interrupted one can go.
remove "$cache"/.tmp-images-* "$cache"/.tmp-rootfs-*
tmp=$cache/.tmp-images-$key.$$
work=$cache/.tmp-rootfs-$base_key.$$
trap 'remove "$tmp" "$work"' EXIT
mkdir -p "$tmp/out"
for tool in mmdebstrap umoci gcc flock; do
	command -v "$tool" >/dev/null || { log "needs $tool (apt-get install mmdebstrap umoci gcc util-linux)"; exit 1; }
done
command -v uv >/dev/null || python3 -m pip install --quiet "uv>=0.5" >&2
started=$EPOCHREALTIME

# tar_layer OUT DIR ENTRY...: an uncompressed layer of DIR's ENTRY paths, sorted, numeric owners.
tar_layer() {
	local file=$1 dir=$2
	shift 2
	tar --create --file "$file" --directory "$dir" --sort=name --numeric-owner \
		--xattrs --xattrs-include=security.capability "$@"
}

# --- the Debian base: minbase + python3, once per (script, package list) ---
if [ ! -d "$base" ]; then
	log "building the $suite base rootfs with mmdebstrap ($packages; about a minute cold)..."
	t=$EPOCHREALTIME
	mkdir -p "$work"
	# No mirror given: deb.debian.org with $suite-updates and $suite-security. No docs, man pages or locales
	# (copyright files stay); mmdebstrap's own cleanup removes the apt lists and caches.
	mmdebstrap --variant=minbase --include="$packages" --mode=root --format=directory \
		--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
		--dpkgopt='path-exclude=/usr/share/lintian/*' \
		"$suite" "$work/rootfs" </dev/null >&2
	r=$work/rootfs
	chroot "$r" dpkg-query -W >"$work/packages.txt"
	if awk -v d="$(realpath "$r")/" 'index($5 "/", d) == 1 { bad = 1 } END { exit !bad }' /proc/self/mountinfo; then
		log "mmdebstrap left mounts under $r; not packing it"
		exit 1
	fi
	rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old \
		"$r"/var/log/* "$r"/tmp/*
	# The host's resolver and name do not belong in an image (runtimes mount their own).
	: >"$r/etc/resolv.conf"
	echo localhost >"$r/etc/hostname"
	chmod 0644 "$r/etc/resolv.conf" "$r/etc/hostname"
	# A named user for the uid/gid the images and the chart run as (kopf and getpass look it up).
	echo "strata:x:$uid:$uid::/nonexistent:/usr/sbin/nologin" >>"$r/etc/passwd"
	echo "strata:x:$uid:" >>"$r/etc/group"
	if [ -f "$r/etc/shadow" ]; then echo "strata:!*:19000::::::" >>"$r/etc/shadow"; fi
	if [ -f "$r/etc/gshadow" ]; then echo "strata:!::" >>"$r/etc/gshadow"; fi
	# Device nodes stay out (runtimes provide /dev); the directory itself stays.
	# shellcheck disable=SC2046 # top-level names of a Debian root have no spaces
	tar_layer "$work/rootfs.tar" "$r" --anchored --exclude='dev/*' $(ls -A "$r")
	umoci init --layout "$work/layout"
	umoci new --image "$work/layout:base"
	umoci raw add-layer --image "$work/layout:base" \
		--history.created_by "mmdebstrap --variant=minbase --include=$packages $suite" "$work/rootfs.tar"
	remove "$r" "$work/rootfs.tar"
	# Bases of older versions of this script are of no further use.
	remove "$cache"/rootfs-*
	mv "$work" "$base"
	log "base rootfs built in $(since "$t") ($(wc -l <"$base/packages.txt") packages, list in $base/packages.txt)"
fi

# image LAYOUT REF: a fresh layout holding the base image under REF (blobs shared with the base by hardlink;
# umoci only ever adds blobs or replaces index.json, it never writes into one).
from_base() {
	mkdir -p "$1"
	cp -al "$base/layout/blobs" "$1/blobs"
	cp "$base/layout/oci-layout" "$base/layout/index.json" "$1/"
	umoci tag --image "$1:base" "$2"
	umoci rm --image "$1:base"
}
# pack LAYOUT NAME: drop unreferenced blobs and write the layout as NAME.tar into the result.
pack() {
	umoci gc --layout "$1"
	tar --create --file "$tmp/out/$2.tar" --directory "$1" --sort=name --numeric-owner --owner=0 --group=0 \
		oci-layout index.json blobs
}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml")

# --- pause: the pod sandbox, a static binary alone in its image (like upstream's FROM scratch) ---
t=$EPOCHREALTIME
mkdir -p "$tmp/pause/root"
# Upstream's flags (build/pause/Makefile) with -s; VERSION is what `pause -v` prints.
gcc -Os -Wall -Werror -static -s -DVERSION="v$pause_tag-$KUBERNETES_VERSION" -o "$tmp/pause/root/pause" "$pause_c"
"$tmp/pause/root/pause" -v >&2
tar_layer "$tmp/pause/layer.tar" "$tmp/pause/root" --owner=0 --group=0 pause
umoci init --layout "$tmp/pause/layout"
umoci new --image "$tmp/pause/layout:$pause_ref"
umoci raw add-layer --image "$tmp/pause/layout:$pause_ref" \
	--history.created_by "gcc -Os -static pause.c (k8s.io/kubernetes $KUBERNETES_VERSION)" "$tmp/pause/layer.tar"
umoci config --image "$tmp/pause/layout:$pause_ref" --history.comment "entrypoint /pause" \
	--config.entrypoint /pause --config.user 65535:65535 \
	--config.label org.opencontainers.image.title=stratarouter-pause \
	--config.label org.opencontainers.image.version="$pause_tag" \
	--config.label org.opencontainers.image.description="Kubernetes pause $pause_tag from build/pause/linux/pause.c of $KUBERNETES_VERSION" \
	--config.label org.opencontainers.image.licenses=Apache-2.0
pack "$tmp/pause/layout" pause
log "pause image packed in $(since "$t")"

# --- the wheel and the two site-packages trees ---
t=$EPOCHREALTIME
mkdir -p "$tmp/src" "$tmp/dist"
inputs | (cd "$root" && tar --create --null --files-from=- --file=-) | tar --extract --directory "$tmp/src"
uv build --quiet --wheel --out-dir "$tmp/dist" "$tmp/src" >&2
wheel=$(echo "$tmp"/dist/stratarouter_runtime-*.whl)
# Wheels for the image's interpreter (Debian's python3 and glibc), whatever the host runs. The bytecode is
# compiled here by a host python of the same minor version (the root filesystem is read-only in the chart).
image_python=$(awk '$1 == "python3.11" { split($2, v, "-"); print v[1] }' "$base/packages.txt")
host_python=
for p in /usr/bin/python3.11 python3.11; do
	if command -v "$p" >/dev/null; then host_python=$(command -v "$p"); break; fi
done
[ -n "$host_python" ] || { log "needs a python3.11 on the host (the image's minor version) for the bytecode"; exit 1; }
# site DIR REQUIREMENT NAME: REQUIREMENT and its dependencies installed for the image under DIR/opt/site.
site() {
	uv pip install --quiet --target "$1/opt/site" --python "$host_python" --python-version "$image_python" \
		--python-platform x86_64-manylinux_2_36 --only-binary :all: --compile-bytecode "$2" >&2
	rm -f "$1/opt/site/.lock"
	# Console scripts point at the host's interpreter: point them at the image's.
	if [ -d "$1/opt/site/bin" ]; then
		grep -l -r '^#!.*python' "$1/opt/site/bin" | xargs -r sed -i '1s|^#!.*python.*$|#!/usr/bin/python3|'
	fi
	(cd "$1/opt/site" && ls -d -- *.dist-info | sed 's/\.dist-info$//') >"$tmp/out/$3-packages.txt"
}
site "$tmp/operator/root" "$wheel[operator]" operator
# The example image runs both examples: workload.py needs the SDK alone, langgraph_agent.py also LangGraph.
site "$tmp/example/root" "$wheel[langgraph]" example
mkdir -p "$tmp/example/root/app"
cp "$root/examples/workload.py" "$root/examples/langgraph_agent.py" "$tmp/example/root/app/"
chmod -R u=rwX,go=rX "$tmp/operator/root" "$tmp/example/root"
log "wheel and site-packages built in $(since "$t") ($(wc -l <"$tmp/out/operator-packages.txt") packages for the operator, $(wc -l <"$tmp/out/example-packages.txt") for the example)"

# config LAYOUT REF TITLE ARGS...: the config both Python images share, plus ARGS.
config() {
	local layout=$1 ref=$2 title=$3
	shift 3
	local env=()
	for e in "${site_env[@]}"; do env+=(--config.env "$e"); done
	umoci config --image "$layout:$ref" "${env[@]}" --config.user "$uid:$uid" \
		--config.label org.opencontainers.image.title="$title" \
		--config.label org.opencontainers.image.version="$version" \
		--config.label org.opencontainers.image.licenses=Apache-2.0 \
		--config.label org.opencontainers.image.base.name="debian:$suite (mmdebstrap $packages)" "$@"
}

t=$EPOCHREALTIME
tar_layer "$tmp/operator/layer.tar" "$tmp/operator/root" --owner=0 --group=0 opt
from_base "$tmp/operator/layout" "$operator_ref"
umoci raw add-layer --image "$tmp/operator/layout:$operator_ref" \
	--history.created_by "uv pip install --target /opt/site stratarouter-runtime[operator]" "$tmp/operator/layer.tar"
# The same command line as the Dockerfile's `stratarouter operator`; the chart passes `args: [operator, ...]`.
config "$tmp/operator/layout" "$operator_ref" stratarouter-operator --history.comment "stratarouter operator" \
	--config.entrypoint python3 --config.entrypoint -m --config.entrypoint stratarouter_runtime.cli \
	--config.cmd operator --config.workingdir / --config.exposedports 8080/tcp \
	--config.label org.opencontainers.image.description="StrataRouter Runtime operator"
pack "$tmp/operator/layout" operator
log "operator image packed in $(since "$t")"

t=$EPOCHREALTIME
tar_layer "$tmp/example/layer.tar" "$tmp/example/root" --owner=0 --group=0 app opt
from_base "$tmp/example/layout" "$example_ref"
umoci raw add-layer --image "$tmp/example/layout:$example_ref" \
	--history.created_by "uv pip install --target /opt/site stratarouter-runtime[langgraph]; examples/*.py" \
	"$tmp/example/layer.tar"
config "$tmp/example/layout" "$example_ref" stratarouter-example --history.comment "python3 /app/workload.py" \
	--config.entrypoint python3 --config.entrypoint /app/workload.py --config.workingdir /app \
	--config.label org.opencontainers.image.description="StrataRouter Runtime example workloads"
pack "$tmp/example/layout" example
log "example image packed in $(since "$t")"

cp "$base/packages.txt" "$tmp/out/base-packages.txt"
printf 'IMAGE_PAUSE=%s\nIMAGE_OPERATOR=%s\nIMAGE_EXAMPLE=%s\n' "$pause_ref" "$operator_ref" "$example_ref" \
	>"$tmp/out/images.env"
mv "$tmp/out" "$out"
# Keep the three newest results (a caller may still be importing a slightly older one).
ls -dt "$cache"/images-* | tail -n +4 | xargs -r rm -rf --one-file-system
log "images built in $(since "$started"): $(cd "$out" && du -h ./*.tar | tr '\t\n' ' ')"
echo "$out"
