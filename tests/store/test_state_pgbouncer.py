"""Behind PgBouncer in transaction mode (Debian's ``pgbouncer``; skipped where it is not installed).

A transaction-mode pooler hands each transaction to any server connection, so nothing may rely on
session state or on named prepared statements surviving between transactions; the SDK is run with
``statement_cache_size=0``, as such a deployment would configure it.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from stratarouter_dev.ports import free_port
from stratarouter_dev.postgres import PostgresServer
from stratarouter_runtime import StateManager
from stratarouter_runtime.state.migrations import DEFAULT_SCHEMA

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        shutil.which("pgbouncer") is None, reason="pgbouncer is not installed (apt install pgbouncer)"
    ),
]


@pytest.fixture(scope="module")
def bouncer(postgres_server: PostgresServer) -> Iterator[str]:
    """A transaction-mode PgBouncer in front of the session's server; yields its base DSN. PgBouncer
    1.18 refuses a ``search_path`` startup parameter, so it sets the store's schema on each server
    connection itself (``connect_query``) and ignores the SDK's (the README's recipe)."""
    root = Path(tempfile.mkdtemp(prefix="strata-pgb-"))
    port = free_port()
    server = urlparse(postgres_server.dsn)
    (root / "users.txt").write_text(f'"{postgres_server.user}" ""\n')
    (root / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={server.hostname} port={server.port} connect_query='SET search_path = {DEFAULT_SCHEMA}'
[pgbouncer]
ignore_startup_parameters = search_path
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root / "users.txt"}
pool_mode = transaction
default_pool_size = 3
max_client_conn = 100
logfile = {root / "pgbouncer.log"}
"""
    )
    cmd = ["pgbouncer", str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for f in root.iterdir():
            os.chown(f, pw.pw_uid, pw.pw_gid)
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with __import__("socket").create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    raise RuntimeError(f"pgbouncer did not start: {out}") from None
                time.sleep(0.1)
        yield f"postgresql://{postgres_server.user}@127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


async def test_the_sdk_works_through_a_transaction_mode_pooler(bouncer: str, pg_dsn: str) -> None:
    dsn = f"{bouncer}/{pg_dsn.rsplit('/', 1)[1]}"
    async with StateManager(
        db_url=dsn, statement_cache_size=0, pool_max_size=8, checkpoint_retention=3
    ) as state:
        await asyncio.gather(*(state.checkpoint(f"b{n % 4}", n, {"n": n}) for n in range(40)))
        for n in range(4):
            history = await state.get_history(f"b{n}")
            assert len(history) == 3
            assert history[-1].state_data == {"n": 36 + n}
        async with state.transaction() as txn:
            await txn.save("b0", 100, {"n": 100})
            await txn.checkpoint("b1", 100, {"n": 100})
        await state.create_snapshot("b1", "snap")
        await state.checkpoint("b1", 101, {"n": 101})
        assert (await state.restore_snapshot("b1", "snap")).state_data == {"n": 100}
        await state.start_execution("b2", attempt=2)
        await asyncio.sleep(0)
        assert await state.load("b0") == {"n": 100}
        assert sorted(e.execution_id for e in await state.query(status="running")) == ["b0", "b1", "b2", "b3"]
    async with StateManager(db_url=dsn, statement_cache_size=0, batch_writes=True, batch_size=10) as state:
        for step in range(25):
            await state.checkpoint("batched", step, {"s": step})
    async with StateManager(db_url=dsn, statement_cache_size=0) as state:
        assert len(await state.get_history("batched")) == 25
