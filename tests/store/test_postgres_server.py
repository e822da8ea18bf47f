"""The throwaway PostgreSQL is a real server: transactions commit and roll back."""

import asyncpg
import pytest

pytestmark = pytest.mark.postgres


async def test_commit_and_rollback_behave(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE t (v int)")
        async with conn.transaction():
            await conn.execute("INSERT INTO t VALUES (1)")
        tx = conn.transaction()
        await tx.start()
        await conn.execute("INSERT INTO t VALUES (2)")
        await tx.rollback()
        assert await conn.fetch("SELECT v FROM t") == [(1,)]
        assert (await conn.fetchval("SHOW fsync")) == "on"
    finally:
        await conn.close()
