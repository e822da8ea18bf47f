"""Migration 0005: a version-4 store, with its current states in every place version 4 kept them,
migrates and reads back the same states, steps, history and audit trail."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from stratarouter_runtime import StateManager
from stratarouter_runtime.state.backends import pg_delta
from stratarouter_runtime.state.backends.base import WriteOp
from stratarouter_runtime.state.codec import StateCodec
from stratarouter_runtime.state.migrations import MIGRATIONS, Conn, connect, migrate

pytestmark = pytest.mark.postgres

BIG = {"transcript": [f"message {i}: " + "words " * 20 for i in range(40)]}
BIGGER = {"transcript": [*BIG["transcript"], "one more message"]}


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


async def _row(
    conn: Conn, execution_id: str, step: int, last: int | None, state: Any, *, in_checkpoint: bool = False
) -> None:
    """A version-4 executions row whose state is ``state``: whole in the row, or (``in_checkpoint``) NULL
    there and in the checkpoint at ``step``; its sha256 is ``state``'s either way, as writes recorded it."""
    whole = _json(state)
    data = None if in_checkpoint else whole
    await conn.execute(
        "INSERT INTO executions (id, status, current_step, last_checkpoint_step,"
        " state, state_codec, state_size, state_hash) VALUES ($1, 'running', $2, $3, $4, 'json', 0, $5)",
        execution_id,
        step,
        last,
        data,
        hashlib.sha256(whole).digest(),
    )


async def _checkpoint(conn: Conn, execution_id: str, step: int, state: Any, *, fast: bool = False) -> None:
    data = _json(state)
    await conn.execute(
        "INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt, codec, size_bytes,"
        " hash, state, fast) SELECT id, created_at, $2, 1, 'json', $3, $4, $5, $6 FROM executions"
        " WHERE id = $1",
        execution_id,
        step,
        len(data),
        hashlib.sha256(data).digest(),
        data,
        fast,
    )


async def _save(conn: Conn, execution_id: str, step: int, state: Any) -> None:
    """A version-4 save: the row takes the state and a new state_seq (it absorbs a FAST head)."""
    await conn.execute(
        "UPDATE executions SET current_step = $2, state = $3, state_hash = $4,"
        " state_seq = nextval('events_seq'),"
        " last_checkpoint_step = (SELECT max(step) FROM checkpoints WHERE execution_id = $1) WHERE id = $1",
        execution_id,
        step,
        _json(state),
        hashlib.sha256(_json(state)).digest(),
    )


async def _delta(conn: Conn, execution_id: str, step: int, base_step: int, base: Any, state: Any) -> None:
    """A version-4 delta save: the row holds ``state`` as a zstd delta against checkpoint ``base_step``."""
    encoder = StateCodec(compress=False, threshold=0, max_bytes=10_000_000)
    bases = pg_delta.DeltaBases(0)
    bases.remember(WriteOp(execution_id, base_step, encoder.encode(base), None, True))
    whole = encoder.encode(state)
    delta = bases.encode(WriteOp(execution_id, step, whole, None, False))
    assert delta is not None
    await conn.execute(
        "UPDATE executions SET current_step = $2, state = $3, state_codec = $4, state_hash = $5,"
        " state_base_step = $6, state_seq = nextval('events_seq') WHERE id = $1",
        execution_id,
        step,
        delta.data,
        pg_delta.DELTA,
        whole.digest,
        base_step,
    )


async def _version_4_store(conn: Conn) -> None:
    await _row(conn, "whole", 2, 1, {"at": 2})  # a save after a checkpoint
    await _checkpoint(conn, "whole", 1, {"at": 1})
    await _row(
        conn, "in-checkpoint", 3, 3, {"at": 3}, in_checkpoint=True
    )  # a checkpoint that rewrote the row
    await _checkpoint(conn, "in-checkpoint", 3, {"at": 3})
    await _row(conn, "fast-head", 4, None, {"at": 4})  # a FAST checkpoint newer than the row
    await _checkpoint(conn, "fast-head", 5, {"at": 5}, fast=True)
    await _row(conn, "fast-absorbed", 4, None, {"at": 4})  # a save after a FAST checkpoint
    await _checkpoint(conn, "fast-absorbed", 5, {"at": 5}, fast=True)
    await _save(conn, "fast-absorbed", 6, {"at": 6})
    await _row(
        conn, "rewound", 2, 2, {"at": 2}, in_checkpoint=True
    )  # a checkpoint at a step below the highest one
    for step in (2, 5):
        await _checkpoint(conn, "rewound", step, {"at": step})
    await _row(
        conn, "delta", 7, 7, BIG, in_checkpoint=True
    )  # a large save stored as a delta against checkpoint 7
    await _checkpoint(conn, "delta", 7, BIG)
    await _delta(conn, "delta", 8, 7, BIG, BIGGER)
    await _row(conn, "fast-over-delta", 7, 7, BIG, in_checkpoint=True)  # a FAST checkpoint after a delta save
    await _checkpoint(conn, "fast-over-delta", 7, BIG)
    await _delta(conn, "fast-over-delta", 8, 7, BIG, BIGGER)
    await _checkpoint(conn, "fast-over-delta", 9, {"at": 9}, fast=True)


EXPECTED: dict[str, tuple[Any, int, int | None, list[int]]] = {
    # execution: (current state, current step, last checkpoint step, history steps)
    "whole": ({"at": 2}, 2, 1, [1]),
    "in-checkpoint": ({"at": 3}, 3, 3, [3]),
    "fast-head": ({"at": 5}, 5, 5, [5]),
    "fast-absorbed": ({"at": 6}, 6, 5, [5]),
    "rewound": ({"at": 2}, 2, 2, [2, 5]),
    "delta": (BIGGER, 8, 7, [7]),
    "fast-over-delta": ({"at": 9}, 9, 9, [7, 9]),
}


async def test_a_version_4_store_migrates_and_reads_back_identical_states(pg_dsn: str) -> None:
    conn = await connect(pg_dsn)
    try:
        assert await migrate(conn, MIGRATIONS[:4]) == 4
        await _version_4_store(conn)
        assert await migrate(conn) == len(MIGRATIONS) - 4
    finally:
        await conn.close()
    async with StateManager(db_url=pg_dsn) as state:
        for execution_id, (current, step, last, history) in EXPECTED.items():
            assert await state.load(execution_id) == current, execution_id
            execution = await state.get_execution(execution_id)
            assert execution is not None
            assert (execution.current_step, execution.last_checkpoint_step) == (step, last), execution_id
            assert [c.step for c in await state.get_history(execution_id)] == history, execution_id
            audit = [e.step for e in await state.get_audit(execution_id) if e.kind == "checkpoint"]
            assert audit == history, execution_id
        await state.save("fast-head", 6, {"at": 6})  # the migrated rows take new writes as any other
        assert await state.load("fast-head") == {"at": 6}
        assert (await state.get_metrics()).total_checkpoints == sum(len(e[3]) for e in EXPECTED.values())
