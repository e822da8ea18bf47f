"""The store lives in a PostgreSQL schema of its own (``db_schema``, default ``stratarouter``): its
tables never collide with an application's in ``public``, stores in different schemas of one database
never mix, and a store an older release left in ``public`` is refused with the command that moves it,
never silently started over."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from stratarouter_runtime import InvalidArgumentError, SchemaVersionError, StateError, StateManager, cli
from stratarouter_runtime.state.config import config_from_env
from stratarouter_runtime.state.migrations import DEFAULT_SCHEMA, connect, migrate, move_store

pytestmark = pytest.mark.postgres

STORE_TABLES = {"schema_migrations", "executions", "checkpoints", "events", "snapshots"}


async def tables_in(dsn: str, schema: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
        return {r[0] for r in rows}
    finally:
        await conn.close()


async def test_the_store_has_its_own_schema_and_leaves_the_applications_tables_alone(pg_dsn: str) -> None:
    app = await asyncpg.connect(pg_dsn)
    try:  # an application of the same database with a table of the same name
        await app.execute("CREATE TABLE executions (id int PRIMARY KEY, what text)")
        await app.execute("INSERT INTO executions VALUES (1, 'the application''s own')")
    finally:
        await app.close()
    async with StateManager(backend="postgresql", db_url=pg_dsn) as state:
        await state.checkpoint("run", 1, {"n": 1})
        assert await state.load("run") == {"n": 1}
    assert await tables_in(pg_dsn, DEFAULT_SCHEMA) >= STORE_TABLES
    assert await tables_in(pg_dsn, "public") == {"executions"}
    app = await asyncpg.connect(pg_dsn)
    try:
        assert await app.fetch("SELECT id, what FROM executions") == [(1, "the application's own")]
    finally:
        await app.close()


async def test_stores_in_two_schemas_of_one_database_never_mix(pg_dsn: str) -> None:
    async with (
        StateManager(backend="postgresql", db_url=pg_dsn) as sdk,
        StateManager(backend="postgresql", db_url=pg_dsn, db_schema="operator_store") as operator,
    ):
        await sdk.checkpoint("mine", 1, {"sdk": True})
        await operator.checkpoint("team/run", 1, {"operator": True})
        assert [e.execution_id for e in await sdk.query()] == ["mine"]
        assert [e.execution_id for e in await operator.query()] == ["team/run"]
        assert await sdk.get_execution("team/run") is None


async def test_a_store_left_in_public_is_refused_then_moved_with_its_data(pg_dsn: str) -> None:
    async with StateManager(
        backend="postgresql", db_url=pg_dsn, db_schema="public", enable_partitioning=True
    ) as old:  # what an earlier release made: the store in public, with monthly partitions
        await old.start_execution("run", checkpoint_retention=5)
        for step in range(3):
            await old.checkpoint("run", step, {"step": step})
        await old.create_snapshot("run", "before")
    in_public = await tables_in(pg_dsn, "public")
    assert in_public >= STORE_TABLES
    assert any(t.startswith("checkpoints_") for t in in_public)

    with pytest.raises(SchemaVersionError, match=r"--move-from public"):
        async with StateManager(backend="postgresql", db_url=pg_dsn) as new:
            await new.get_execution("run")
    assert not await tables_in(pg_dsn, DEFAULT_SCHEMA)  # refused before any table was made

    conn = await connect(pg_dsn)
    try:
        moved = await move_store(conn, "public", DEFAULT_SCHEMA)
    finally:
        await conn.close()
    assert "public.executions" in moved
    assert await tables_in(pg_dsn, "public") == set()
    async with StateManager(backend="postgresql", db_url=pg_dsn, enable_partitioning=True) as new:
        assert await new.load("run") == {"step": 2}
        assert [c.step for c in await new.get_history("run")] == [0, 1, 2]
        assert [s.name for s in await new.list_snapshots("run")] == ["before"]
        await new.checkpoint("run", 3, {"step": 3})  # the sequence and functions moved too
        assert (await new.get_execution("run")).last_checkpoint_step == 3  # type: ignore[union-attr]


async def test_moving_is_refused_when_there_is_nothing_to_move_or_the_target_is_taken(pg_dsn: str) -> None:
    async with StateManager(backend="postgresql", db_url=pg_dsn) as state:
        await state.save("run", 1, {})
    async with StateManager(backend="postgresql", db_url=pg_dsn, db_schema="other") as other:
        await other.save("theirs", 1, {})
    conn = await connect(pg_dsn)
    try:
        with pytest.raises(InvalidArgumentError, match="holds no store"):
            await move_store(conn, "public", "elsewhere")
        with pytest.raises(InvalidArgumentError, match="holds a store already"):
            await move_store(conn, "other", DEFAULT_SCHEMA)
    finally:
        await conn.close()
    assert await tables_in(pg_dsn, "other") >= STORE_TABLES  # nothing moved


async def test_a_connection_whose_search_path_misses_the_schema_is_refused(pg_dsn: str) -> None:
    """What a transaction pooler that drops the search_path startup parameter would do."""
    conn = await asyncpg.connect(pg_dsn)  # no search_path: public
    try:
        with pytest.raises(StateError, match="connect_query"):
            await migrate(conn, schema=DEFAULT_SCHEMA)
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "bad", ["", "Upper", "has-dash", "1starts_with_digit", "x" * 64, 'quote"d', "a;drop"]
)
def test_a_schema_name_must_be_a_plain_identifier(bad: str) -> None:
    with pytest.raises(InvalidArgumentError, match="db_schema"):
        StateManager(backend="postgresql", db_url="postgresql://unused", db_schema=bad)
    with pytest.raises(InvalidArgumentError, match="db_schema"):
        config_from_env({"STRATA_DB_URL": "postgresql://unused", "STRATA_DB_SCHEMA": bad or "B"})


def test_the_schema_comes_from_the_environment() -> None:
    assert config_from_env({"STRATA_DB_URL": "postgresql://x"}).db_schema == DEFAULT_SCHEMA
    assert (
        config_from_env({"STRATA_DB_URL": "postgresql://x", "STRATA_DB_SCHEMA": "team_a"}).db_schema
        == "team_a"
    )


async def test_stratarouter_migrate_moves_a_store_out_of_public(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with StateManager(backend="postgresql", db_url=pg_dsn, db_schema="public") as old:
        await old.checkpoint("run", 1, {"kept": True})
    assert await asyncio.to_thread(cli.main, ["migrate", "--db-url", pg_dsn]) == 1  # refused, says how
    assert "--move-from public" in capsys.readouterr().err
    assert await asyncio.to_thread(cli.main, ["migrate", "--db-url", pg_dsn, "--move-from", "public"]) == 0
    assert "moved the store from schema public to stratarouter" in capsys.readouterr().out
    async with StateManager(backend="postgresql", db_url=pg_dsn) as new:
        assert await new.load("run") == {"kept": True}
    assert await asyncio.to_thread(cli.main, ["migrate", "--db-url", pg_dsn, "--move-from", "public"]) == 2
    assert "holds no store" in capsys.readouterr().err
