"""The operator's store probe against a real PostgreSQL: stratarouter_store_bytes is the store's real size
and grows with what is written; a connection the server dropped is replaced."""

from __future__ import annotations

import base64
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stratarouter_runtime import StateManager
from stratarouter_runtime.operator import metrics
from stratarouter_runtime.operator.store_size import StoreSize
from stratarouter_runtime.state.migrations import connect

pytestmark = pytest.mark.postgres

SCHEMA = "stratarouter"


def scraped(name: str) -> float:
    """The value of an unlabelled sample as /metrics shows it."""
    payload, _ = metrics.render()
    for family in text_string_to_metric_families(payload.decode()):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


async def independent_size(dsn: str) -> int:
    """The same size computed another way: every table and partition the store knows by name."""
    conn = await connect(dsn, SCHEMA)
    try:
        value = await conn.fetchval(
            """
            SELECT sum(pg_total_relation_size(relid))
            FROM (SELECT relid FROM pg_partition_tree('checkpoints')
                  UNION SELECT relid FROM pg_partition_tree('events')
                  UNION SELECT 'executions'::regclass UNION SELECT 'snapshots'::regclass
                  UNION SELECT 'schema_migrations'::regclass UNION SELECT 'workers'::regclass) t
            """
        )
        return int(value)
    finally:
        await conn.close()


async def sampled(probe: StoreSize, dsn: str) -> int:
    """One probe, checked against the size computed another way just before and just after it (autovacuum
    may add a table's free-space and visibility maps meanwhile: sizes only grow while nothing is written)."""
    low = await independent_size(dsn)
    size = await probe.sample()
    high = await independent_size(dsn)
    assert size is not None
    assert low <= size <= high, (low, size, high)
    return size


def incompressible(nbytes: int) -> str:
    return base64.b64encode(os.urandom(nbytes)).decode()


async def test_store_bytes_is_the_real_size_and_grows_with_writes(pg_dsn: str) -> None:
    probe = StoreSize(pg_dsn, SCHEMA)
    async with StateManager(backend="postgresql", db_url=pg_dsn, db_schema=SCHEMA) as state:
        await state.start_execution("grow")
        await state.checkpoint("grow", 0, {"blob": "x"})
        try:
            before = await sampled(probe, pg_dsn)
            assert scraped("stratarouter_store_bytes") == before
            assert scraped("stratarouter_store_up") == 1

            written = 0
            for step in range(1, 201):  # 200 history checkpoints of ~8 KiB each that do not compress
                blob = incompressible(6 * 1024)
                await state.checkpoint("grow", step, {"blob": blob})
                written += len(blob)
            await state.flush()

            after = await sampled(probe, pg_dsn)
            assert scraped("stratarouter_store_bytes") == after
            assert after - before >= written // 2, (before, after, written)
        finally:
            await probe.close()


async def test_a_connection_the_server_dropped_is_replaced_by_the_next_probe(pg_dsn: str) -> None:
    probe = StoreSize(pg_dsn, SCHEMA)
    async with StateManager(backend="postgresql", db_url=pg_dsn, db_schema=SCHEMA) as state:
        await state.start_execution("one")
        try:
            assert await probe.sample() is not None
            assert probe._conn is not None
            pid = probe._conn.get_server_pid()
            admin = await connect(pg_dsn, SCHEMA)
            try:  # waits (up to 5 s) until the backend has exited
                assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
            finally:
                await admin.close()

            assert await sampled(probe, pg_dsn) > 0
            assert probe._conn is not None
            assert probe._conn.get_server_pid() != pid
            assert scraped("stratarouter_store_up") == 1
        finally:
            await probe.close()
        assert probe._conn is None
