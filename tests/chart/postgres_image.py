"""A PostgreSQL image for the chart's bundled StatefulSet on the local cluster's real node.

The chart's default is the official ``postgres`` image, which the real node cannot pull (it never pulls).
This builds a stand-in without Docker or a registry, the way ``hack/build-images.sh`` builds the others:
Debian bookworm's ``postgresql-15`` (mmdebstrap) packed as an OCI layout tarball (umoci), imported into
the node's containerd. Its entrypoint does what the chart relies on from the official image's:

* on an empty ``$PGDATA``: ``initdb`` with ``$POSTGRES_USER`` as superuser and ``$POSTGRES_PASSWORD`` as
  its password (scram-sha-256 over TCP from anywhere, trust on the Unix socket), then ``$POSTGRES_DB``;
* on a data directory that already holds a cluster: nothing of that, the environment's password is
  ignored (exactly the official image's behaviour, which is why the chart must keep its password);
* then ``postgres`` in the foreground, listening on every address.

It runs as uid/gid 70 like the alpine variant the chart's securityContext names. The tarball is cached
outside the repository, keyed by everything that goes into it; a second build is a no-op.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

REFERENCE = "localhost/stratarouter-test-postgres:15"
SUITE = "bookworm"
PACKAGES = "postgresql-15"
BINDIR = "/usr/lib/postgresql/15/bin"
UID = 70

ENTRYPOINT = f"""\
#!/bin/sh
# Initialises an empty $PGDATA from POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB, then runs postgres.
set -eu
bin={BINDIR}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
\tmkdir -p "$PGDATA"
\tchmod 0700 "$PGDATA"
\tpwfile=$(mktemp)
\tprintf '%s\\n' "$POSTGRES_PASSWORD" >"$pwfile"
\t"$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \\
\t\t--auth-host=scram-sha-256 --encoding=UTF8 >&2
\trm -f "$pwfile"
\techo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
\tif [ "$POSTGRES_DB" != postgres ]; then
\t\techo "CREATE DATABASE \\"$POSTGRES_DB\\"" | "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
\tfi
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*'
"""

#: Run in the chroot after the packages are in: no cluster of Debian's own, the postgres user as 70:70.
CUSTOMIZE = f"""\
set -e
pg_dropcluster 15 main || true
groupmod -g {UID} postgres
usermod -u {UID} -g {UID} postgres
rm -rf /var/lib/postgresql/15 /etc/postgresql/15 /var/lib/apt/lists/* /var/cache/apt/* /var/log/*
"""


class ImageBuildError(RuntimeError):
    """mmdebstrap or umoci failed; the message holds their output."""


def _cache_dir() -> Path:
    explicit = os.environ.get("STRATA_TOOLS_CACHE", "").strip()
    base = Path(explicit) if explicit else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base if explicit else base / "stratarouter-tools"


def _key() -> str:
    digest = hashlib.sha256("\0".join((REFERENCE, SUITE, PACKAGES, ENTRYPOINT, CUSTOMIZE)).encode())
    return digest.hexdigest()[:12]


def _run(*argv: str, cwd: Path | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise ImageBuildError(f"`{' '.join(argv)}` exited {result.returncode}:\n{result.stderr[-4000:]}")


def image_tarball() -> Path:
    """The OCI layout tarball of :data:`REFERENCE`, built on first use (a minute or two cold)."""
    cache = _cache_dir()
    out = cache / f"chart-postgres-{_key()}"
    tarball = out / "postgres.tar"
    if tarball.is_file():
        return tarball
    for tool in ("mmdebstrap", "umoci"):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"needs {tool} (apt-get install mmdebstrap umoci)")
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".chart-postgres.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.is_file():
            return tarball
        work = cache / f".tmp-chart-postgres-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            _build(work)
            shutil.rmtree(out, ignore_errors=True)
            (work / "out").rename(out)
            # Builds of older versions of this module are of no further use.
            for stale in cache.glob("chart-postgres-*"):
                if stale != out:
                    shutil.rmtree(stale, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return tarball


def _build(work: Path) -> None:
    rootfs, layout = work / "rootfs", work / "layout"
    (work / "out").mkdir(parents=True)
    _run(
        "mmdebstrap", "--variant=minbase", f"--include={PACKAGES}", "--mode=root", "--format=directory",
        "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
        f"--customize-hook=chroot \"$1\" sh -c '{CUSTOMIZE}'",
        SUITE, str(rootfs),
    )  # fmt: skip
    entrypoint = rootfs / "usr" / "local" / "bin" / "postgres-entrypoint"
    entrypoint.write_text(ENTRYPOINT)
    entrypoint.chmod(0o755)
    (rootfs / "etc" / "resolv.conf").write_text("")
    layer = work / "rootfs.tar"
    entries = sorted(p.name for p in rootfs.iterdir())
    _run(
        "tar", "--create", "--file", str(layer), "--directory", str(rootfs), "--sort=name",
        "--numeric-owner", "--anchored", "--exclude=dev/*", *entries,
    )  # fmt: skip
    shutil.rmtree(rootfs)
    image = f"{layout}:{REFERENCE}"
    _run("umoci", "init", "--layout", str(layout))
    _run("umoci", "new", "--image", image)
    _run("umoci", "raw", "add-layer", "--image", image, str(layer))
    _run(
        "umoci", "config", "--image", image,
        "--config.entrypoint", "/usr/local/bin/postgres-entrypoint", "--config.user", f"{UID}:{UID}",
        "--config.env", f"PATH={BINDIR}:/usr/sbin:/usr/bin:/sbin:/bin", "--config.env", "LANG=C.UTF-8",
        "--config.exposedports", "5432/tcp",
    )  # fmt: skip
    _run("umoci", "gc", "--layout", str(layout))
    _run(
        "tar", "--create", "--file", str(work / "out" / "postgres.tar"), "--directory", str(layout),
        "--sort=name", "--numeric-owner", "--owner=0", "--group=0", "oci-layout", "index.json", "blobs",
    )  # fmt: skip


def main() -> None:
    """``python -m tests.chart.postgres_image``: build (or find) the tarball and print its path."""
    print(image_tarball())


if __name__ == "__main__":
    main()
