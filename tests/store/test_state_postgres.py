"""PostgreSQL specifics: migrations, indexes, partitions, pooler mode, lost connections."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from stratarouter_dev.ports import free_port
from stratarouter_runtime import ExecutionStatus, SchemaVersionError, StateManager, StoreUnavailableError
from stratarouter_runtime.state.backends.postgres import PostgresBackend
from stratarouter_runtime.state.migrations import (
    LATEST,
    MIGRATIONS,
    Migration,
    connect,
    current_version,
    migrate,
    migrate_url,
)

pytestmark = pytest.mark.postgres


async def test_migrations_are_idempotent_and_safe_to_run_concurrently(pg_dsn: str) -> None:
    applied = await asyncio.gather(*(migrate_url(pg_dsn) for _ in range(5)))
    assert sum(applied) == LATEST  # each migration applied exactly once, whoever got there first
    assert await migrate_url(pg_dsn) == 0
    conn = await connect(pg_dsn)
    try:
        assert await current_version(conn) == LATEST
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in MIGRATIONS]
    finally:
        await conn.close()


async def test_version_2_upgrades_a_version_1_store_without_losing_audit_rows(pg_dsn: str) -> None:
    conn = await connect(pg_dsn)
    try:
        assert await migrate(conn, MIGRATIONS[:1]) == 1
        # what a version-1 SDK wrote: checkpoint rows plus one checkpoint event each
        await conn.execute(
            "INSERT INTO executions (id, status, current_step, last_checkpoint_step)"
            " VALUES ('v1', 'running', 2, 2)"
        )
        for step in (1, 2):
            await conn.execute(
                "INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt, codec,"
                " size_bytes, hash, state) SELECT 'v1', created_at, $1, 1, 'json', 2, $2, '{}'"
                " FROM executions",
                step,
                hashlib.sha256(b"{}").digest(),  # what that SDK recorded: reads verify it
            )
            await conn.execute(
                "INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, size_bytes,"
                " hash) SELECT 'v1', created_at, 'checkpoint', $1, 1, 2, '\\x01' FROM executions",
                step,
            )
        assert await migrate(conn) == LATEST - 1
    finally:
        await conn.close()
    async with StateManager(db_url=pg_dsn) as state:
        await state.checkpoint("v1", 3, {"v": 3})
        assert [(e.kind, e.step) for e in await state.get_audit("v1")] == [
            ("checkpoint", s) for s in (1, 2, 3)
        ]
        assert [c.step for c in await state.get_history("v1")] == [1, 2, 3]


async def test_version_4_upgrade_keeps_a_saved_state_newer_than_its_checkpoints(pg_dsn: str) -> None:
    conn = await connect(pg_dsn)
    try:
        assert await migrate(conn, MIGRATIONS[:3]) == 3
        # what a version-3 SDK wrote: checkpoints 1 and 2, then a save at step 3 in the row
        await conn.execute(
            "INSERT INTO executions (id, status, current_step, last_checkpoint_step, checkpoint_count,"
            " state, state_codec, state_size, state_hash) VALUES ('v3', 'running', 3, 2, 2, $1, 'json', 8,"
            " $2)",
            b'{"at":3}',
            hashlib.sha256(b'{"at":3}').digest(),
        )
        for step in (1, 2):
            await conn.execute(
                "INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt, codec,"
                " size_bytes, hash, state) SELECT 'v3', created_at, $1, 1, 'json', 8, $3, $2"
                " FROM executions",
                step,
                f'{{"at":{step}}}'.encode(),
                hashlib.sha256(f'{{"at":{step}}}'.encode()).digest(),
            )
        assert await migrate(conn) == LATEST - 3
    finally:
        await conn.close()
    async with StateManager(db_url=pg_dsn) as state:
        assert await state.load("v3") == {"at": 3}
        execution = await state.get_execution("v3")
        assert execution is not None
        assert (execution.current_step, execution.last_checkpoint_step) == (3, 2)
        assert (await state.get_metrics()).total_checkpoints == 2
        await state.checkpoint("v3", 4, {"at": 4})
        assert await state.load("v3") == {"at": 4}


async def test_a_failed_migration_does_not_bump_the_version(pg_dsn: str) -> None:
    broken = [*MIGRATIONS, Migration(LATEST + 1, "broken", "CREATE TABLE executions (id int)")]
    conn = await connect(pg_dsn)
    try:
        with pytest.raises(asyncpg.DuplicateTableError):
            await migrate(conn, broken)
        assert await current_version(conn) == LATEST
    finally:
        await conn.close()


async def test_without_auto_migrate_an_empty_database_is_refused(pg_dsn: str) -> None:
    state = StateManager(db_url=pg_dsn, auto_migrate=False)
    try:
        with pytest.raises(SchemaVersionError, match="stratarouter migrate"):
            await state.save("x", 1, {})
    finally:
        await state.close()
    await migrate_url(pg_dsn)
    async with StateManager(db_url=pg_dsn, auto_migrate=False) as state:
        await state.save("x", 1, {})


async def test_state_is_stored_once_per_execution_and_history_only_on_checkpoints(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn, checkpoint_interval=10) as state:
        for step in range(95):
            await state.save("grow", step, {"step": step})
    conn = await connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM executions") == 1
        assert await conn.fetchval("SELECT count(*) FROM checkpoints") == 10
        # a live checkpoint row is its own audit row: no second row per checkpoint
        assert await conn.fetchval("SELECT count(*) FROM events WHERE kind = 'checkpoint'") == 0
        # step 94 was a plain save: the current state sits in the executions row
        assert await conn.fetchval("SELECT state IS NOT NULL FROM executions") is True
    finally:
        await conn.close()
    async with StateManager(db_url=pg_dsn) as state:
        assert [e.step for e in await state.get_audit("grow")] == list(range(0, 95, 10))
        await state.checkpoint("grow", 95, {"step": 95})
        assert await state.load("grow") == {"step": 95}
        conn = await connect(pg_dsn)
        try:
            # a checkpoint rewrites the row: the state is then stored once, in the checkpoint row
            row = await conn.fetchrow("SELECT current_step, state IS NOT NULL AS whole FROM executions")
            assert (row["current_step"], row["whole"]) == (95, False)
            execution = await state.get_execution("grow")
            assert execution is not None
            assert (execution.current_step, execution.last_checkpoint_step) == (95, 95)
            # and so does a rewrite of its step
            await state.checkpoint("grow", 95, {"step": 95, "again": True})
            assert await conn.fetchval("SELECT state IS NULL FROM executions") is True
            assert await state.load("grow") == {"step": 95, "again": True}
        finally:
            await conn.close()


async def test_writers_racing_on_one_new_step_all_succeed(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn, group_commit=False, pool_max_size=8) as state:
        await state.checkpoint("race", 0, {"w": -1})
        for step in range(1, 6):
            await asyncio.gather(*(state.checkpoint("race", step, {"w": w}) for w in range(8)))
        history = await state.get_history("race")
        assert [c.step for c in history] == list(range(6))
        audit = [e for e in await state.get_audit("race") if e.kind == "checkpoint"]
        assert len(audit) == 1 + 5 * 8  # every write is audited, the step holds one checkpoint
    async with StateManager(db_url=pg_dsn, pool_max_size=8) as grouped:  # group commit: batched rewrites race
        for step in range(1, 6):
            await asyncio.gather(*(grouped.checkpoint("race", step, {"g": w}) for w in range(16)))
        assert [c.step for c in await grouped.get_history("race")] == list(range(6))
        audit = [e for e in await grouped.get_audit("race", limit=10_000) if e.kind == "checkpoint"]
        assert len(audit) == 1 + 5 * 8 + 5 * 16
        assert len({e.seq for e in audit}) == len(audit)


async def test_query_is_served_by_an_index_never_by_checkpoint_data(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn) as state:
        await state.save("q", 1, {})
        statuses = [ExecutionStatus.COMPLETED]
        start = datetime(2026, 1, 1, tzinfo=UTC)
        end = datetime(2026, 1, 31, tzinfo=UTC)
        cases = [
            PostgresBackend.query_sql(statuses, start, end, 100),
            PostgresBackend.query_sql(None, start, end, 100),
            PostgresBackend.query_sql(statuses, None, None, 100),
        ]
    conn = await connect(pg_dsn)
    try:
        await conn.execute("SET enable_seqscan = off")  # a 1-row table would be scanned otherwise
        for text, args in cases:
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {text}", *args))
            assert "Index" in plan, plan
            assert "executions_status_created_idx" in plan or "executions_created_idx" in plan, plan
            assert "checkpoints" not in plan, plan  # an execution row says all a query returns
            assert "Seq Scan" not in plan, plan
    finally:
        await conn.close()


async def test_pooler_mode_without_prepared_statement_cache(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn, statement_cache_size=0, checkpoint_retention=2) as state:
        await asyncio.gather(*(state.checkpoint(f"p{n % 3}", n, {"n": n}) for n in range(30)))
        async with state.transaction() as txn:
            await txn.save("p0", 100, {"n": 100})
            await txn.checkpoint("p1", 100, {"n": 100})
        assert await state.load("p0") == {"n": 100}
        assert len(await state.get_history("p1")) == 2
        await state.create_snapshot("p1", "s")
        assert (await state.restore_snapshot("p1", "s")).step == 100


async def test_compressed_rows_name_their_codec(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn, enable_compression=True, compression_threshold=1000) as state:
        await state.checkpoint("z", 1, {"text": "abc " * 5000})
        await state.checkpoint("z", 2, {"text": "small"})
    conn = await connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT step, codec, size_bytes, length(state) AS stored FROM checkpoints ORDER BY step"
        )
        assert [(r["step"], r["codec"]) for r in rows] == [(1, "zstd"), (2, "json")]
        assert rows[0]["stored"] < rows[0]["size_bytes"] // 10
    finally:
        await conn.close()


async def _create_month(conn: asyncpg.Connection, start: datetime) -> None:
    end = datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)
    for table in ("checkpoints", "events"):
        await conn.execute(
            f"CREATE TABLE {table}_p{start:%Y%m} PARTITION OF {table} "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )


async def test_partitions_are_made_ahead_and_cleanup_drops_whole_months(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn, enable_partitioning=True) as state:
        await state.checkpoint("now", 1, {"v": 1})
        conn = await connect(pg_dsn)
        try:
            parts = {
                r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE '%_p2%'")
            }
            this_month = datetime.now(UTC)
            assert f"checkpoints_p{this_month:%Y%m}" in parts
            assert len([p for p in parts if p.startswith("checkpoints_p")]) == 4  # this month + 3 ahead
            where = await conn.fetchval(
                "SELECT tableoid::regclass::text FROM checkpoints WHERE execution_id = 'now'"
            )
            assert where == f"checkpoints_p{this_month:%Y%m}"
            # An old month, as a deployment running since then would have: one finished run in it.
            old = datetime(2020, 3, 1, tzinfo=UTC)
            await _create_month(conn, old)
            at = datetime(2020, 3, 10, tzinfo=UTC)
            await conn.execute(
                "INSERT INTO executions (id, status, created_at, updated_at, finished_at) "
                "VALUES ('old', 'completed', $1, $1, $1)",
                at,
            )
            await conn.execute(
                "INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt, codec,"
                " size_bytes, hash, state) VALUES ('old', $1, 1, 1, 'json', 2, '\\x00', '{}')",
                at,
            )
            # A second old month still holding a live run cannot be dropped.
            busy = datetime(2020, 4, 1, tzinfo=UTC)
            await _create_month(conn, busy)
            await conn.execute(
                "INSERT INTO executions (id, status, created_at, updated_at)"
                " VALUES ('busy', 'running', $1, $1)",
                datetime(2020, 4, 2, tzinfo=UTC),
            )
            assert await state.cleanup(older_than_days=30) == 1
            parts = {
                r[0]
                for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE '%_p2020%'")
            }
            assert parts == {"checkpoints_p202004", "events_p202004"}
            assert await state.get_execution("old") is None
            assert (await state.get_execution("busy")) is not None
            assert await state.load("now") == {"v": 1}
        finally:
            await conn.close()


async def test_a_lost_connection_is_retried(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn, pool_min_size=2, pool_max_size=2) as state:
        await state.save("r", 1, {"v": 1})
        admin = await connect(pg_dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert killed >= 1
        finally:
            await admin.close()
        await state.save("r", 2, {"v": 2})
        assert await state.load("r") == {"v": 2}


async def test_an_unreachable_database_raises_after_the_retry_window() -> None:
    state = StateManager(db_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none", retry_timeout=0.5)
    try:
        with pytest.raises(StoreUnavailableError, match="unreachable"):
            await state.save("x", 1, {})
    finally:
        await state.close()


async def test_recovery_window_uses_server_time(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn, recovery_timeout=3600) as state:
        await state.save("old-run", 1, {})
        conn = await connect(pg_dsn)
        try:
            await conn.execute(
                "UPDATE executions SET updated_at = now() - interval '2 hours' WHERE id = 'old-run'"
            )
        finally:
            await conn.close()
        recovered = await state.recover_all()
        assert [(e.execution_id, e.attempt) for e in recovered] == [("old-run", 2)]
        assert (await state.get_execution("old-run")).updated_at > datetime.now(UTC) - timedelta(minutes=5)  # type: ignore[union-attr]


async def test_pool_min_size_connections_are_open_after_the_first_call(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn, pool_min_size=3, pool_max_size=5) as state:
        await state.save("warm", 1, {})
        conn = await connect(pg_dsn)
        try:
            database = await conn.fetchval("SELECT current_database()")
            opened = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        finally:
            await conn.close()
        assert opened >= 3
