"""Integrity on read: states whose bytes changed in storage raise CorruptCheckpointError (load,
get_checkpoint, history, snapshots), and ``on_corrupt="previous"`` resumes from the newest checkpoint
that verifies. PostgreSQL rows are corrupted directly with SQL; the memory store's bytes in place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from stratarouter_runtime import CorruptCheckpointError, StateManager
from stratarouter_runtime.state.backends.memory import MemoryBackend

BIG = {"transcript": [f"message {i}: " + "lorem ipsum dolor sit amet " * 4 for i in range(60)]}
"""Over the compression threshold (about 7 KiB of JSON), and compressible."""


def grown(extra: str) -> dict[str, Any]:
    return {"transcript": [*BIG["transcript"], extra]}


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    async with StateManager(db_url=pg_dsn) as state:
        await state.get_metrics()  # migrate the new database
    conn = await asyncpg.connect(pg_dsn, server_settings={"search_path": "stratarouter"})
    yield conn
    await conn.close()


FLIP_A_BYTE = """
UPDATE checkpoints SET state = set_byte(state, 2, get_byte(state, 2) # 1)
WHERE execution_id = $1 AND step = $2
"""
TRUNCATE = """
UPDATE checkpoints SET state = substring(state FROM 1 FOR length(state) / 2)
WHERE execution_id = $1 AND step = $2
"""


async def assert_falls_back(
    dsn: str, execution_id: str, bad_step: int, used_step: int, expected: Any
) -> None:
    """The default raises naming the run and step; ``on_corrupt="previous"`` returns ``expected`` and
    audits the fallback."""
    async with StateManager(db_url=dsn) as state:
        with pytest.raises(CorruptCheckpointError, match=f"'{execution_id}'.*step {bad_step}") as raised:
            await state.load(execution_id)
        assert (raised.value.execution_id, raised.value.step) == (execution_id, bad_step)
    async with StateManager(db_url=dsn, on_corrupt="previous") as state:
        assert await state.load(execution_id) == expected
        fallback = [e for e in await state.get_audit(execution_id) if e.kind == "corrupt_fallback"]
        assert [e.detail for e in fallback] == [{"bad_step": bad_step, "used_step": used_step}]


@pytest.mark.postgres
async def test_flipped_bytes_in_a_plain_state(pg_dsn: str, db: asyncpg.Connection[Any]) -> None:
    async with StateManager(db_url=pg_dsn) as state:
        await state.checkpoint("plain", 1, {"a": 1})
        await state.checkpoint("plain", 2, {"a": 2})
    await db.execute(FLIP_A_BYTE, "plain", 2)  # {"a":2} becomes {"`":2}: valid JSON, wrong state
    await assert_falls_back(pg_dsn, "plain", 2, 1, {"a": 1})
    async with StateManager(db_url=pg_dsn) as state:
        with pytest.raises(CorruptCheckpointError):
            await state.get_checkpoint("plain", 2)
        with pytest.raises(CorruptCheckpointError):
            await state.get_history("plain")
        assert (await state.get_checkpoint("plain", 1)).state_data == {"a": 1}


@pytest.mark.postgres
async def test_a_truncated_zstd_state(pg_dsn: str, db: asyncpg.Connection[Any]) -> None:
    async with StateManager(db_url=pg_dsn, enable_compression=True) as state:
        await state.checkpoint("packed", 1, grown("one"))
        await state.checkpoint("packed", 2, grown("two"))
    assert (
        await db.fetchval("SELECT codec FROM checkpoints WHERE execution_id = 'packed' AND step = 2")
        == "zstd"
    )
    await db.execute(TRUNCATE, "packed", 2)
    await assert_falls_back(pg_dsn, "packed", 2, 1, grown("one"))


@pytest.mark.postgres
async def test_a_broken_delta_base(pg_dsn: str, db: asyncpg.Connection[Any]) -> None:
    async with StateManager(db_url=pg_dsn, enable_compression=True) as state:
        await state.checkpoint("delta", 1, {"small": True})
        await state.checkpoint("delta", 2, grown("base"))
        await state.save("delta", 3, grown("base and more"))  # stored as a delta against step 2
    row = await db.fetchrow("SELECT state_codec, state_base_step FROM executions WHERE id = 'delta'")
    assert (row["state_codec"], row["state_base_step"]) == ("zstd-delta", 2)
    await db.execute(FLIP_A_BYTE, "delta", 2)  # the base the delta is applied to
    await assert_falls_back(pg_dsn, "delta", 3, 1, {"small": True})  # step 2 is corrupt too


@pytest.mark.postgres
async def test_a_corrupt_snapshot_is_not_restored(pg_dsn: str, db: asyncpg.Connection[Any]) -> None:
    async with StateManager(db_url=pg_dsn) as state:
        await state.checkpoint("snap", 1, {"a": 1})
        await state.create_snapshot("snap", "before")
        await state.checkpoint("snap", 2, {"a": 2})
        await db.execute("UPDATE snapshots SET state = set_byte(state, 2, get_byte(state, 2) # 1)")
        with pytest.raises(CorruptCheckpointError):
            await state.restore_snapshot("snap", "before")
        with pytest.raises(CorruptCheckpointError):
            await state.load_snapshot("snap", "before")
        assert await state.load("snap") == {"a": 2}  # nothing changed
        assert [c.step for c in await state.get_history("snap")] == [1, 2]


@pytest.mark.postgres
async def test_a_clean_store_never_raises(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn, enable_compression=True, on_corrupt="raise") as state:
        await state.checkpoint("clean", 1, {"a": 1})
        await state.checkpoint("clean", 2, grown("two"))
        await state.save("clean", 3, grown("three"))  # a delta
        assert await state.load("clean") == grown("three")
        assert [c.state_data for c in await state.get_history("clean")] == [{"a": 1}, grown("two")]
        assert (await state.get_checkpoint("clean", 2)).state_data == grown("two")
        await state.create_snapshot("clean", "s")
        await state.restore_snapshot("clean", "s")
        assert await state.load("clean") == grown("three")
        assert not [e for e in await state.get_audit("clean") if e.kind == "corrupt_fallback"]


async def test_the_memory_store_verifies_the_bytes_it_keeps() -> None:
    async with StateManager(on_corrupt="previous", enable_compression=True) as state:
        await state.checkpoint("m", 1, {"a": 1})
        await state.checkpoint("m", 2, grown("two"))
        backend = state.backend
        assert isinstance(backend, MemoryBackend)
        blob = backend._execs["m"].history[2]  # the current state is this checkpoint's bytes
        blob.data = blob.data[: len(blob.data) // 2]
        assert await state.load("m") == {"a": 1}
        with pytest.raises(CorruptCheckpointError, match=r"'m'.*step 2"):
            await state.get_checkpoint("m", 2)
        fallback = [e.detail for e in await state.get_audit("m") if e.kind == "corrupt_fallback"]
        assert fallback == [{"bad_step": 2, "used_step": 1}]
    async with StateManager() as state:
        await state.checkpoint("m", 1, {"a": 1})
        blob = state.backend._execs["m"].history[1]  # type: ignore[attr-defined]
        blob.data = b'{"b":1}'
        with pytest.raises(CorruptCheckpointError):
            await state.load("m")  # on_corrupt="raise", the default


async def assert_rewound(state: StateManager, execution_id: str, used_step: int, expected: Any) -> None:
    """After a fallback the run is at ``used_step``: load() returns its state without a second event,
    resume_step names it, and the run goes on from there."""
    assert await state.load(execution_id) == expected
    execution = await state.get_execution(execution_id)
    assert execution is not None
    assert (execution.current_step, execution.resume_step) == (used_step, used_step)
    assert execution.attempt == 1
    fallbacks = [e for e in await state.get_audit(execution_id) if e.kind == "corrupt_fallback"]
    assert len(fallbacks) == 1
    await state.checkpoint(execution_id, used_step + 1, {"after": "rewind"})
    assert await state.load(execution_id) == {"after": "rewind"}
    assert (await state.get_checkpoint(execution_id, used_step + 1)).state_data == {"after": "rewind"}


@pytest.mark.postgres
async def test_a_fallback_rewinds_the_run_in_postgres(pg_dsn: str, db: asyncpg.Connection[Any]) -> None:
    async with StateManager(db_url=pg_dsn, enable_compression=True) as state:
        await state.start_execution("rewind")
        await state.checkpoint("rewind", 1, {"a": 1})
        await state.checkpoint("rewind", 2, grown("base"))
        await state.save("rewind", 3, grown("base and more"))  # a delta against step 2
    await db.execute(FLIP_A_BYTE, "rewind", 2)
    async with StateManager(db_url=pg_dsn, on_corrupt="previous", enable_compression=True) as state:
        assert await state.load("rewind") == {"a": 1}
        await assert_rewound(state, "rewind", 1, {"a": 1})


async def test_a_fallback_rewinds_the_run_in_memory() -> None:
    async with StateManager(on_corrupt="previous") as state:
        await state.start_execution("m")
        await state.checkpoint("m", 1, {"a": 1})
        await state.checkpoint("m", 2, {"a": 2})
        backend = state.backend
        assert isinstance(backend, MemoryBackend)
        backend._execs["m"].history[2].data = b'{"a":3}'
        assert await state.load("m") == {"a": 1}
        await assert_rewound(state, "m", 1, {"a": 1})


async def assert_fork_refused(state: StateManager, **source: Any) -> None:
    """A fork of a corrupt state raises naming the source, and makes no run."""
    with pytest.raises(CorruptCheckpointError, match="'src'"):
        await state.fork("src", "dst", **source)
    assert await state.get_execution("dst") is None


@pytest.mark.postgres
async def test_a_fork_verifies_its_source_in_postgres(pg_dsn: str, db: asyncpg.Connection[Any]) -> None:
    async with StateManager(db_url=pg_dsn) as state:
        await state.checkpoint("src", 1, {"a": 1})
        await state.checkpoint("src", 2, {"a": 2})
        await state.create_snapshot("src", "two")
        await db.execute(FLIP_A_BYTE, "src", 2)
        await db.execute("UPDATE snapshots SET state = set_byte(state, 2, get_byte(state, 2) # 1)")
        await assert_fork_refused(state)  # the newest checkpoint
        await assert_fork_refused(state, step=2)
        await assert_fork_refused(state, snapshot="two")
        forked = await state.fork("src", "dst", step=1)
        assert forked.current_step == 1
        assert await state.load("dst") == {"a": 1}


async def test_a_fork_verifies_its_source_in_memory() -> None:
    async with StateManager() as state:
        await state.checkpoint("src", 1, {"a": 1})
        await state.checkpoint("src", 2, {"a": 2})
        await state.create_snapshot("src", "two")
        backend = state.backend
        assert isinstance(backend, MemoryBackend)
        backend._execs["src"].history[2].data = b'{"a":3}'
        backend._snapshots[("src", "two")].data = b'{"a":3}'
        await assert_fork_refused(state)
        await assert_fork_refused(state, snapshot="two")
        await state.fork("src", "dst", step=1)
        assert await state.load("dst") == {"a": 1}
