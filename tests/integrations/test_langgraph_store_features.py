"""What the store adds to a LangGraph thread: retention, fencing, snapshots and compression."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from bench.sdk_workload import transcript_message

from stratarouter_runtime import StaleAttemptError, StateManager
from stratarouter_runtime.integrations.langgraph import StrataCheckpointSaver
from tests.integrations.conftest import MakeState
from tests.integrations.counting_graph import counting_graph, thread


def start(target: int) -> dict[str, object]:
    return {"target": target, "count": 0, "log": []}


async def test_retention_keeps_the_newest_checkpoints(make_state: MakeState) -> None:
    state = make_state()
    saver = StrataCheckpointSaver(state)
    await saver.start_thread("kept", checkpoint_retention=3)
    await counting_graph(saver).ainvoke(start(10), thread("kept"))

    listed = [t async for t in saver.alist(thread("kept"))]
    assert [t.metadata["step"] for t in listed] == [10, 9, 8]  # of the 12 the run made
    assert listed[0].checkpoint["channel_values"]["count"] == 10
    audit = await state.get_audit(saver.run_id("kept"))
    assert len({e.step for e in audit if e.kind == "checkpoint"}) == 12  # the audit trail is not pruned


async def test_a_stale_writer_is_fenced_and_the_new_one_continues(make_state: MakeState) -> None:
    old_saver = StrataCheckpointSaver(make_state())
    await old_saver.start_thread("fenced", attempt=1)
    graph = counting_graph(old_saver)
    await graph.ainvoke(start(3), thread("fenced"))

    new_saver = StrataCheckpointSaver(make_state())
    taken = await new_saver.start_thread("fenced", attempt=2)
    assert taken.attempt == 2
    with pytest.raises(StaleAttemptError):  # the zombie's next step is refused
        await graph.ainvoke({"target": 6}, thread("fenced"))

    final = await counting_graph(new_saver).ainvoke({"target": 6}, thread("fenced"))
    assert final["count"] == 6
    assert final["log"] == [f"step {n}" for n in range(1, 7)]  # no step lost or repeated


async def test_a_snapshot_of_a_thread_restores(make_state: MakeState) -> None:
    state = make_state()
    saver = StrataCheckpointSaver(state)
    graph = counting_graph(saver)
    await graph.ainvoke(start(3), thread("snap"))
    await state.create_snapshot(saver.run_id("snap"), "after-3")
    await graph.ainvoke({"target": 7}, thread("snap"))
    assert (await graph.aget_state(thread("snap"))).values["count"] == 7

    await state.restore_snapshot(saver.run_id("snap"), "after-3")
    restored = await graph.aget_state(thread("snap"))
    assert restored.values["count"] == 3
    assert restored.values["log"] == ["step 1", "step 2", "step 3"]
    final = await graph.ainvoke({"target": 5}, thread("snap"))  # the thread continues from there
    assert final["log"] == [f"step {n}" for n in range(1, 6)]


async def schema_bytes(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        size = await conn.fetchval(
            """SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'""",
            schema,
        )
    finally:
        await conn.close()
    return int(size)


@pytest.mark.postgres
async def test_compression_shrinks_a_threads_bytes_on_disk(pg_dsn: str) -> None:
    """zstd against PostgreSQL's own TOAST compression (pglz) of the plain JSON: about a fifth less."""
    sizes: dict[bool, int] = {}
    for compress in (False, True):
        schema = f"lg_{'zstd' if compress else 'json'}_{uuid.uuid4().hex[:6]}"
        async with StateManager(db_url=pg_dsn, db_schema=schema, enable_compression=compress) as state:
            saver = StrataCheckpointSaver(state)
            graph = counting_graph(saver)
            notes = [transcript_message(n)["content"] for n in range(60)]  # an agent's kind of text
            await graph.ainvoke({"target": 100, "count": 0, "log": notes}, thread("long"))
            final = await graph.aget_state(thread("long"))
            assert len(final.values["log"]) == 160
        sizes[compress] = await schema_bytes(pg_dsn, schema)
    assert sizes[True] < 0.9 * sizes[False], sizes
