#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries exist (initdb, pg_ctl); installs Debian's
# package when they do not. Never starts or relies on a system service.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then
	exit 0
fi
echo "[deps] installing PostgreSQL server binaries with apt-get..." >&2
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# The package's post-install may start a system cluster; we never use it.
$sudo service postgresql stop >/dev/null 2>&1 || true
