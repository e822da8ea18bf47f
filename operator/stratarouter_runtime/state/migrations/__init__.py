"""Versioned schema migrations: ``NNNN_<what>.sql`` files in this package, append-only.

Each migration runs in its own transaction together with its row in ``schema_migrations``, under
a transaction-level advisory lock, so many processes starting at once are safe and a failed
migration leaves the version where it was. Transaction-level locks (not session locks) keep this
working behind a transaction-mode pooler.

Compatibility between a store and this code is one rule, :func:`check_compatible`: a schema newer
than the newest migration shipped here is refused (:class:`SchemaTooNewError`, nothing written),
whether this process migrates (``auto_migrate``, ``stratarouter migrate``) or only checks; a schema
behind it is migrated, or refused when this process may not migrate.

The store lives in a PostgreSQL schema of its own (``db_schema``, default ``stratarouter``), so its
tables never mix with an application's in ``public``. Every connection names it as its
``search_path`` (:func:`connection_settings`), and the statements stay unqualified. A store that an
older release created in ``public`` is not silently started over: it is refused with the command that
moves it (:func:`move_store`, ``stratarouter migrate --move-from public``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from stratarouter_runtime.state.errors import (
    InvalidArgumentError,
    SchemaTooNewError,
    SchemaVersionError,
    StateError,
)

Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
"""A plain or pooled connection."""

LOCK_KEY: Final = 0x5354_5241_5441  # "STRATA": the advisory lock all migrators share
DEFAULT_SCHEMA: Final = "stratarouter"
LEGACY_SCHEMA: Final = "public"
"""Where releases before the store had a schema of its own created it."""
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Every migration shipped with the SDK, in version order (versions must be 1, 2, 3, ...)."""
    found: list[Migration] = []
    for entry in resources.files(__package__).iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(int(m[1]), m[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    for expected, mig in enumerate(found, start=1):
        if mig.version != expected:
            raise RuntimeError(
                f"migration versions must be contiguous: expected {expected:04d}, got {mig.version:04d}"
            )
    return found


MIGRATIONS: Final = load_migrations()
LATEST: Final = MIGRATIONS[-1].version

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


def schema_name(value: object) -> str:
    """A store schema name: a lowercase SQL identifier (no quoting needed anywhere), else
    :class:`InvalidArgumentError`."""
    if not isinstance(value, str) or not _SCHEMA_NAME.fullmatch(value):
        raise InvalidArgumentError(
            f"db_schema must be a lowercase SQL identifier (a-z, 0-9, _; at most 63), got {value!r}"
        )
    return value


def connection_settings(schema: str) -> dict[str, str]:
    """The server settings every store connection starts with: the store's schema is its search_path."""
    return {"search_path": schema_name(schema)}


async def _in_schema(conn: Conn, schema: str, *, create: bool) -> None:
    """Make sure ``conn`` resolves unqualified names in ``schema`` (creating it if ``create``).

    A transaction-mode pooler that drops the ``search_path`` startup parameter would send every
    statement to ``public``: refuse that with what to configure instead."""
    if create:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    elif not await conn.fetchval("SELECT to_regnamespace($1) IS NOT NULL", schema):
        return  # nothing migrated yet: the version check says so
    current = await conn.fetchval("SELECT current_schema()")
    if current != schema:
        raise StateError(
            f"this connection's search_path resolves to schema {current!r}, not the store's {schema!r}: "
            f"a pooler must pass the search_path startup parameter, or set it per database "
            f"(PgBouncer: connect_query='SET search_path = {schema}' and "
            f"ignore_startup_parameters = search_path)"
        )


async def _refuse_a_store_left_in_public(conn: Conn, schema: str) -> None:
    """An empty ``schema`` while a store of an older release is in ``public``: never start over."""
    if schema == LEGACY_SCHEMA:
        return
    found = await conn.fetchval(
        "SELECT to_regclass('public.schema_migrations') IS NOT NULL"
        " AND to_regclass('public.executions') IS NOT NULL"
    )
    if found:
        raise SchemaVersionError(
            f"schema {schema!r} has no store, but schema public has one (created by an earlier release): "
            f"move it with `stratarouter migrate --db-url ... --move-from public` (into {schema!r}), "
            "or keep using it with db_schema='public' (STRATA_DB_SCHEMA=public)"
        )


async def current_version(conn: Conn) -> int:
    """The highest applied version, 0 for an empty database."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    version: int = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return version


def check_compatible(version: int, *, known: int = LATEST, migrating: bool) -> None:
    """The compatibility rule between a store at schema ``version`` and code whose newest migration
    is ``known``: newer than ``known`` is refused (:class:`SchemaTooNewError`: the code would not
    understand what a newer release writes, nor it what this code writes); behind ``known`` is
    refused unless the caller is ``migrating``; equal is fine."""
    if version > known:
        raise SchemaTooNewError(version, known)
    if version < known and not migrating:
        raise SchemaVersionError(
            f"database schema is at version {version}, this SDK needs {known}: "
            "run `stratarouter migrate --db-url ...` (or enable auto_migrate)"
        )


async def migrate(
    conn: Conn, migrations: list[Migration] | None = None, *, schema: str = DEFAULT_SCHEMA
) -> int:
    """Apply pending migrations to the store in ``schema`` (created if missing), one transaction
    each; returns how many this call applied. ``conn`` must have been opened with
    :func:`connection_settings` of ``schema``.

    A schema newer than the last of ``migrations`` raises :class:`SchemaTooNewError`, and the
    transaction that found it rolls back: nothing is written."""
    migrations = MIGRATIONS if migrations is None else migrations
    known = migrations[-1].version if migrations else 0
    applied = 0
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
            await _in_schema(conn, schema, create=True)
            if not await current_version(conn):
                await _refuse_a_store_left_in_public(conn, schema)
            await conn.execute(_CREATE_TABLE)
            version = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
            check_compatible(version, known=known, migrating=True)
            pending = [m for m in migrations if m.version > version]
            if not pending:
                return applied
            mig = pending[0]
            await conn.execute(mig.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", mig.version, mig.name
            )
            applied += 1


async def check_version(conn: Conn, *, schema: str = DEFAULT_SCHEMA) -> int:
    """For roles without DDL rights: refuse a store behind this SDK, or newer than it (reads only)."""
    await _in_schema(conn, schema, create=False)
    version = await current_version(conn)
    if not version:
        await _refuse_a_store_left_in_public(conn, schema)
    check_compatible(version, migrating=False)
    return version


async def connect(db_url: str, schema: str = DEFAULT_SCHEMA, **options: Any) -> asyncpg.Connection[Any]:
    """A connection to the store in ``schema`` (its search_path)."""
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        db_url, server_settings=connection_settings(schema), **options
    )
    return conn


async def migrate_url(db_url: str, schema: str = DEFAULT_SCHEMA) -> int:
    """Connect, migrate, disconnect: what ``stratarouter migrate`` runs. Returns the number applied."""
    conn = await connect(db_url, schema, statement_cache_size=0)
    try:
        return await migrate(conn, schema=schema)
    finally:
        await conn.close()


_STORE_TABLES = """
SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
  AND (c.relname IN ('schema_migrations', 'executions', 'checkpoints', 'events', 'snapshots', 'workers')
       OR c.oid IN (SELECT inhrelid FROM pg_inherits
                    WHERE inhparent IN (to_regclass(quote_ident($1) || '.checkpoints'),
                                        to_regclass(quote_ident($1) || '.events'))))
ORDER BY 1
"""
_STORE_VIEWS = """
SELECT c.oid::regclass::text AS view FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind = 'v' AND c.relname = 'current_states'
"""
_STORE_FUNCTIONS = """
SELECT p.oid::regprocedure::text AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = $1 AND p.proname LIKE 'strata\\_%'
"""


async def move_store(conn: Conn, source: str, target: str) -> list[str]:
    """Move the store in schema ``source`` (e.g. ``public``, where older releases made it) into
    ``target``, in one transaction under the migration lock: its tables with their partitions,
    indexes and data, its sequence, its view and its functions. Returns what was moved. Refused,
    with nothing changed, when ``source`` holds no store or ``target`` already holds one."""
    source, target = schema_name(source), schema_name(target)
    if source == target:
        raise InvalidArgumentError(f"the store is in {source!r} already")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{source}.schema_migrations"):
            raise InvalidArgumentError(f"schema {source!r} holds no store (no {source}.schema_migrations)")
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {target}")
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{target}.schema_migrations"):
            raise InvalidArgumentError(f"schema {target!r} holds a store already; nothing was moved")
        moved = [row["name"] for row in await conn.fetch(_STORE_TABLES, source)]
        for table in moved:
            await conn.execute(f"ALTER TABLE {table} SET SCHEMA {target}")
        await conn.execute(f"ALTER SEQUENCE {source}.events_seq SET SCHEMA {target}")
        views = [row["view"] for row in await conn.fetch(_STORE_VIEWS, source)]
        for view in views:
            await conn.execute(f"ALTER VIEW {view} SET SCHEMA {target}")
        functions = [row["name"] for row in await conn.fetch(_STORE_FUNCTIONS, source)]
        for function in functions:
            await conn.execute(f"ALTER FUNCTION {function} SET SCHEMA {target}")
        return [*moved, f"{source}.events_seq", *views, *functions]


async def move_store_url(db_url: str, source: str, target: str) -> list[str]:
    """Connect, :func:`move_store`, disconnect: ``stratarouter migrate --move-from``."""
    conn = await connect(db_url, target, statement_cache_size=0)
    try:
        return await move_store(conn, source, target)
    finally:
        await conn.close()
