#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (initdb, pg_ctl) and PgBouncer (the
# transaction-mode pooler the store is tested behind) exist; installs Debian's
# packages when they do not. Never starts or relies on a system service.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
command -v pgbouncer >/dev/null || missing+=(pgbouncer)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "[deps] installing ${missing[*]} with apt-get..." >&2
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages' post-install scripts may start system services; we never use them.
$sudo service postgresql stop >/dev/null 2>&1 || true
$sudo service pgbouncer stop >/dev/null 2>&1 || true
