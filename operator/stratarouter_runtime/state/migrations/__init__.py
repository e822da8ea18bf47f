"""Versioned schema migrations: ``NNNN_<what>.sql`` files in this package, append-only.

Each migration runs in its own transaction together with its row in ``schema_migrations``, under
a transaction-level advisory lock, so many processes starting at once are safe and a failed
migration leaves the version where it was. Transaction-level locks (not session locks) keep this
working behind a transaction-mode pooler.

Compatibility between a store and this code is one rule, :func:`check_compatible`: a schema newer
than the newest migration shipped here is refused (:class:`SchemaTooNewError`, nothing written),
whether this process migrates (``auto_migrate``, ``stratarouter migrate``) or only checks; a schema
behind it is migrated, or refused when this process may not migrate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from stratarouter_runtime.state.errors import SchemaTooNewError, SchemaVersionError

Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
"""A plain or pooled connection."""

LOCK_KEY: Final = 0x5354_5241_5441  # "STRATA": the advisory lock all migrators share
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


async def migrate(conn: Conn, migrations: list[Migration] | None = None) -> int:
    """Apply pending migrations one transaction each; returns how many this call applied.

    A schema newer than the last of ``migrations`` raises :class:`SchemaTooNewError`, and the
    transaction that found it rolls back: nothing is written."""
    migrations = MIGRATIONS if migrations is None else migrations
    known = migrations[-1].version if migrations else 0
    applied = 0
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
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


async def check_version(conn: Conn) -> int:
    """For roles without DDL rights: refuse a schema behind this SDK, or newer than it (reads only)."""
    version = await current_version(conn)
    check_compatible(version, migrating=False)
    return version


async def migrate_url(db_url: str) -> int:
    """Connect, migrate, disconnect: what ``stratarouter migrate`` runs. Returns the number applied."""
    conn = await asyncpg.connect(db_url, statement_cache_size=0)
    try:
        return await migrate(conn)
    finally:
        await conn.close()
