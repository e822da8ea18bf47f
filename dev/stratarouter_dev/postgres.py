"""A throwaway PostgreSQL server from the machine's own binaries.

The server lives in a temporary directory on a free loopback port, with fsync
left on (benchmarks must measure durable writes). PostgreSQL refuses to run as
root, so under root the server runs as the ``postgres`` system user.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stratarouter_dev.ports import free_port

SEARCH_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin")


def find_bindir() -> Path:
    """Locate the directory holding ``initdb`` and ``pg_ctl``; newest major version wins."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    for pattern in SEARCH_GLOBS:
        candidates += sorted((Path(p) for p in glob.glob(pattern)), reverse=True)
    for cand in candidates:
        if (cand / "initdb").exists() and (cand / "pg_ctl").exists():
            return cand
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; run `make deps` "
        "(installs Debian's postgresql package) or put them on PATH"
    )


@dataclass
class PostgresServer:
    """A running throwaway server; :meth:`stop` removes all of its data."""

    root: Path
    port: int
    bindir: Path
    user: str = "strata"
    database: str = "strata"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True)

    @classmethod
    def start(
        cls,
        root: Path | None = None,
        port: int | None = None,
        *,
        hosts: tuple[str, ...] = ("127.0.0.1",),
        trusted: tuple[str, ...] = (),
    ) -> PostgresServer:
        """Create a fresh cluster and start it; raises with the server log on failure.

        It listens on ``hosts`` (e.g. also a real node's bridge gateway, for pods) and lets clients
        from the ``trusted`` networks (CIDRs, e.g. that bridge's subnet) in without a password.
        """
        server = cls(
            root=root or Path(tempfile.mkdtemp(prefix="strata-pg-")),
            port=port or free_port(),
            bindir=find_bindir(),
        )
        server.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(server.root, pw.pw_uid, pw.pw_gid)
        server.root.chmod(0o755)
        server._run(
            str(server.bindir / "initdb"),
            "-D",
            str(server.datadir),
            "-U",
            server.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        with (server.datadir / "pg_hba.conf").open("a") as hba:
            hba.writelines(f"host all all {network} trust\n" for network in trusted)
        log = server.root / "server.log"
        try:
            server._run(
                str(server.bindir / "pg_ctl"),
                "-D",
                str(server.datadir),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {server.port} -h {','.join(hosts)} -k {server.root} -c max_connections=300 "
                "-c shared_buffers=256MB -c max_locks_per_transaction=256",
                "start",
            )
        except subprocess.CalledProcessError as exc:
            detail = log.read_text() if log.exists() else exc.stderr
            raise RuntimeError(f"PostgreSQL failed to start:\n{detail}") from exc
        server._run(
            str(server.bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(server.port),
            "-U",
            server.user,
            server.database,
        )
        return server

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m MODE`` (``smart``, ``fast`` or ``immediate``, which skips the shutdown
        checkpoint, so the server runs crash recovery); returns once it accepts connections again.
        Same port and options (pg_ctl reuses them); every client connection is dropped."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"mode must be smart, fast or immediate, got {mode!r}")
        pg_ctl = str(self.bindir / "pg_ctl")
        log = str(self.root / "server.log")
        self._run(pg_ctl, "-D", str(self.datadir), "-l", log, "-m", mode, "-w", "-t", "60", "restart")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        if (self.datadir / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


STATE_FILE = Path(tempfile.gettempdir()) / "stratarouter-db.env"


def main(argv: list[str] | None = None) -> int:
    """``python -m stratarouter_dev.postgres up|down``: the Makefile's db-up/db-down."""
    parser = argparse.ArgumentParser(prog="stratarouter-dev-postgres")
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    if args.action == "up":
        if STATE_FILE.exists():
            print(STATE_FILE.read_text().strip())
            return 0
        server = PostgresServer.start()
        STATE_FILE.write_text(f"export STRATA_DB_URL={server.dsn}\n# root={server.root} port={server.port}\n")
        print(f"export STRATA_DB_URL={server.dsn}")
        return 0
    if not STATE_FILE.exists():
        print("no throwaway PostgreSQL is running", file=sys.stderr)
        return 0
    fields = dict(kv.split("=", 1) for kv in STATE_FILE.read_text().split("# ", 1)[1].split())
    PostgresServer(root=Path(fields["root"]), port=int(fields["port"]), bindir=find_bindir()).stop()
    STATE_FILE.unlink()
    print("PostgreSQL stopped and its data removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
