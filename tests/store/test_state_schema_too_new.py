"""Rolling upgrades: code older than the store's schema refuses to start and writes nothing."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from stratarouter_runtime import SchemaTooNewError, SchemaVersionError, StateError, StateManager
from stratarouter_runtime.cli import main as cli_main
from stratarouter_runtime.state.migrations import LATEST, connect, migrate_url

pytestmark = pytest.mark.postgres

NEWER = LATEST + 1
_TABLES = ("executions", "checkpoints", "events", "snapshots", "schema_migrations")


async def _census(dsn: str) -> dict[str, int]:
    """Row counts of every store table, and how many relations and functions the schema has."""
    conn = await connect(dsn)
    try:
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in _TABLES}
        counts["relations"] = await conn.fetchval(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        )
        counts["functions"] = await conn.fetchval(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
        )
        return counts
    finally:
        await conn.close()


@pytest.fixture
async def newer_store(pg_dsn: str) -> str:
    """A store migrated by this code, holding one run, then migrated further by a newer release."""
    async with StateManager(db_url=pg_dsn) as state:
        await state.checkpoint("before", 1, {"v": 1})
    conn = await connect(pg_dsn)
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_a_newer_release')", NEWER
        )
    finally:
        await conn.close()
    return pg_dsn


def _names_both_versions(exc: BaseException) -> None:
    message = str(exc)
    assert f"version {NEWER}" in message
    assert f"version {LATEST}" in message


@pytest.mark.parametrize("options", [{}, {"auto_migrate": False}, {"enable_partitioning": True}])
async def test_start_up_refuses_a_schema_newer_than_the_code(
    newer_store: str, options: dict[str, bool]
) -> None:
    before = await _census(newer_store)
    state = StateManager(db_url=newer_store, **options)
    try:
        with pytest.raises(SchemaTooNewError) as info:
            await state.checkpoint("after", 1, {"v": 2})
        _names_both_versions(info.value)
        assert (info.value.store_version, info.value.code_version) == (NEWER, LATEST)
        assert isinstance(info.value, SchemaVersionError)
        assert isinstance(info.value, StateError)
        with pytest.raises(SchemaTooNewError):  # every later call too: it never gets to serve
            await state.load("before")
    finally:
        await state.close()
    assert await _census(newer_store) == before


async def test_migrate_refuses_a_schema_newer_than_the_code(
    newer_store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = await _census(newer_store)
    with pytest.raises(SchemaTooNewError) as info:
        await migrate_url(newer_store)
    _names_both_versions(info.value)
    assert await _census(newer_store) == before
    assert await asyncio.to_thread(cli_main, ["migrate", "--db-url", newer_store]) == 1
    err = capsys.readouterr().err
    assert f"version {NEWER}" in err
    assert f"version {LATEST}" in err
    assert await _census(newer_store) == before


async def test_a_running_replica_names_the_newer_schema_that_broke_its_statements(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn) as state:
        await state.checkpoint("X", 1, {"v": 1})
        conn = await connect(pg_dsn)
        try:  # what a newer release's migration could do under a replica that is still running
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, 'renames_attempt')", NEWER
            )
            await conn.execute("ALTER TABLE executions RENAME COLUMN attempt TO attempt_number")
        finally:
            await conn.close()
        with pytest.raises(SchemaTooNewError) as info:
            await state.checkpoint("X", 2, {"v": 2})
        _names_both_versions(info.value)
        assert isinstance(info.value.__cause__, asyncpg.UndefinedColumnError)
