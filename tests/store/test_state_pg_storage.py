"""PostgreSQL storage economy: large saves stored as deltas, execution rows updated in place (HOT)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from stratarouter_runtime import StateManager
from stratarouter_runtime.state.migrations import connect

pytestmark = pytest.mark.postgres


def transcript(n: int) -> dict[str, object]:
    messages = [{"role": "user", "content": f"turn {i} " + "word " * (i % 23)} for i in range(n)]
    return {"step": n, "messages": messages}


async def row(dsn: str, execution_id: str) -> asyncpg.Record:
    conn = await connect(dsn)
    try:
        found = await conn.fetchrow(
            "SELECT state_codec, state_base_step, octet_length(state) AS stored, state_size "
            "FROM executions WHERE id = $1",
            execution_id,
        )
        assert found is not None
        return found
    finally:
        await conn.close()


async def test_a_growing_state_is_saved_as_a_small_delta_and_loads_exactly(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn, checkpoint_interval=10, enable_compression=True) as state:
        for step in range(200, 236):
            await state.save("grow", step, transcript(step))
            assert await state.load("grow") == transcript(step)
        stored = await row(pg_dsn, "grow")
        assert stored["state_codec"] == "zstd-delta"
        assert stored["state_base_step"] == 230
        assert stored["stored"] * 20 < stored["state_size"]
        snap = await state.create_snapshot("grow", "mid")
        assert snap.step == 235
        assert await state.load_snapshot("grow", "mid") == transcript(235)
        await state.save("grow", 236, transcript(236))
        restored = await state.restore_snapshot("grow", "mid")
        assert restored.state_data == transcript(235)
        assert await state.load("grow") == transcript(235)
    async with StateManager(db_url=pg_dsn) as fresh:  # another process, compression off, reads it too
        await fresh.save("grow", 237, transcript(237))
        assert await fresh.load("grow") == transcript(237)
        assert (await row(pg_dsn, "grow"))["state_base_step"] is None


async def test_a_delta_whose_base_was_rewritten_meanwhile_is_written_whole(pg_dsn: str) -> None:
    async with (
        StateManager(db_url=pg_dsn, enable_compression=True) as a,
        StateManager(db_url=pg_dsn, enable_compression=True) as b,
    ):
        await a.checkpoint("e", 10, transcript(300))
        await a.save("e", 11, transcript(301))
        assert (await row(pg_dsn, "e"))["state_codec"] == "zstd-delta"
        other = {**transcript(290), "rewritten": True}
        await b.checkpoint("e", 10, other)  # a's cached base no longer matches the stored step 10
        assert await a.load("e") == other
        await a.save("e", 12, transcript(302))
        assert (await row(pg_dsn, "e"))["state_base_step"] is None  # written whole
        assert await b.load("e") == transcript(302)
        await a.checkpoint("e", 20, transcript(310))
        await asyncio.gather(*(a.save(f"e{i}", 1, transcript(1 + i)) for i in range(4)))  # grouped saves
        await a.save("e", 21, transcript(311))
        assert await b.load("e") == transcript(311)
        assert await b.get_latest_checkpoint("e") is not None


async def test_a_write_may_ask_for_compression_the_manager_does_not_default_to(pg_dsn: str) -> None:
    big = transcript(300)
    async with StateManager(db_url=pg_dsn) as state:  # compression off
        await state.write("z", 1, big, history=True, compress=True)
        await state.write("z", 2, big, history=True)
        await state.write("z", 3, big, history=True, compress=False)
        assert [c.state_data for c in await state.get_history("z")] == [big, big, big]
    conn = await connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT step, codec FROM checkpoints WHERE execution_id = 'z' ORDER BY step")
        assert [(r["step"], r["codec"]) for r in rows] == [(1, "zstd"), (2, "json"), (3, "json")]
    finally:
        await conn.close()


async def test_saves_update_the_execution_row_in_place(pg_dsn: str) -> None:
    async with StateManager(db_url=pg_dsn, checkpoint_interval=10) as state:
        for step in range(60):
            await state.save("hot", step, {"step": step, "notes": "x" * 500})
    conn = await connect(pg_dsn)
    try:  # statistics reach pg_stat_user_tables when the writers' sessions end
        deadline = time.monotonic() + 30
        while True:
            stats = await conn.fetchrow(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'executions'"
            )
            assert stats is not None
            upd, hot = stats
            if upd >= 59 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        # step 0 inserts the row; the other 59 writes (saves and history checkpoints) update it
        assert upd == 59
        assert hot == upd  # no indexed column changes on save: every update is HOT
    finally:
        await conn.close()
