"""Property-based tests (hypothesis): random states, ids, steps, labels and operation sequences.

The same random program runs against a memory-backed and a PostgreSQL-backed StateManager, and
after every operation:

1. both backends agree: the same result, or the same error type;
2. every rejection is a StateError subclass with a message (never a raw asyncpg, ValueError or
   TypeError from below the SDK);
3. a rejected operation leaves nothing half-written: the observable state of every execution the
   program touches (get_execution, load, get_history, list_snapshots, get_audit) is unchanged.

Both run with the defaults and with compression (PostgreSQL's delta saves), a checkpoint interval and
a retention, transactions included.

The managers (and the PostgreSQL database) live for one test function; each example prefixes its
execution ids with a fresh uuid, so examples never see each other's executions.
"""

from __future__ import annotations

import math
import os
import struct
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stratarouter_runtime import StateManager
from stratarouter_runtime.state import validation as check
from stratarouter_runtime.state.codec import MAX_DEPTH
from stratarouter_runtime.state.errors import InvalidStateError, StateError
from stratarouter_runtime.state.models import Checkpoint, Execution, Snapshot

pytestmark = pytest.mark.postgres

SCALE = float(os.environ.get("STRATA_PROPERTY_SCALE", "1"))
"""Multiplies every test's example count: ``STRATA_PROPERTY_SCALE=20`` for a long fuzzing run."""
SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

NAN_PAYLOAD = b"\x01\x00\x00\x00\x00\x00\xf8\x7f"
"""A NaN with a payload, not the canonical one."""

# -- strategies -----------------------------------------------------------------------------------


def mostly(good: st.SearchStrategy[Any], *bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` nine times in ten, else one of ``bad``: bad input everywhere, but most programs do work."""
    return weighted((9, good), (1, st.one_of(*bad)))


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each ``weight`` times as often (one_of would merge repeats of a strategy)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(min_value=0, max_value=len(pool) - 1).flatmap(pool.__getitem__)


_I64_MIN, _U64_MAX = -(2**63), 2**64 - 1
ints = st.one_of(
    st.integers(min_value=-1000, max_value=1000),
    st.integers(min_value=_I64_MIN, max_value=_U64_MAX),
    st.sampled_from([_I64_MIN, 2**63 - 1, 2**63, _U64_MAX, 2**53 + 1]),
)
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", "\x00", "a\x00b", "\u2603", "\U0001f600", "\u202e", "'; DROP TABLE x; --", "\\u0000"]
    ),
)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_leaves = st.one_of(st.none(), st.booleans(), ints, finite_floats, texts)


def _containers(kids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(kids, max_size=4), st.dictionaries(texts, kids, max_size=4))


json_values = st.recursive(json_leaves, _containers, max_leaves=12)
states = st.one_of(st.dictionaries(texts, json_values, max_size=5), json_values)
"""Plain JSON states the codec accepts (floats finite, ints within 64 bits, any str incl. NUL)."""

bad_leaves = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 2**64, _I64_MIN - 1, -(2**80)]),
    st.sampled_from(["\ud800", "a\udcffb"]),  # lone surrogates: not UTF-8
    st.builds(set),
    st.just(b"bytes"),
    st.just(datetime(2026, 1, 1, tzinfo=UTC)),
    st.just({1: "int key"}),
    st.just(object()),
)
bad_states = st.builds(
    lambda ok, bad, key: {**ok, key: [bad]},
    st.dictionaries(texts, json_leaves, max_size=3),
    bad_leaves,
    texts,
)
"""A state with one value the codec must refuse, somewhere inside."""

steps = mostly(
    weighted(
        (9, st.integers(min_value=0, max_value=12)),
        (1, st.sampled_from([2**31 - 1, 2**31, 2**53 + 1, check.MAX_STEP - 1, check.MAX_STEP])),
    ),
    st.integers(min_value=-3, max_value=-1),
    st.integers(),
    st.booleans(),
    st.sampled_from([check.MAX_STEP, check.MAX_STEP + 1, 2**64, 1.0, "1", None]),
)
attempts = mostly(
    st.one_of(st.none(), st.none(), st.integers(min_value=1, max_value=3)),
    st.sampled_from([0, -1, True, check.MAX_ATTEMPT, check.MAX_ATTEMPT + 1, 2**70, "2", 1.5]),
)
start_attempts = mostly(
    st.integers(min_value=1, max_value=3), st.sampled_from([None, 0, -1, True, check.MAX_ATTEMPT + 1, "1"])
)
labels = mostly(
    st.none() | st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
    st.dictionaries(texts, texts, min_size=1, max_size=3),
    st.sampled_from([{"k": 1}, {1: "v"}, ["k"], {"k": "\ud800"}, "k=v"]),
)
retentions = mostly(st.none() | st.integers(min_value=1, max_value=3), st.sampled_from([0, -1, True, 2**40]))
errors = st.one_of(st.none(), texts, st.sampled_from(["boom\x00", "\udfff", "x" * 5000]))
limits = st.one_of(st.none(), st.sampled_from([1, 2, 0, -1, check.MAX_LIMIT + 1, True]))

_safe_chars = st.characters(categories=["L", "N", "P", "S"])  # all printable
id_specs = mostly(
    st.text(_safe_chars, min_size=1, max_size=10),
    st.text(max_size=10),  # control characters, NUL
    st.text(_safe_chars, min_size=232, max_size=245),  # around the 253-character limit with the prefix
    st.sampled_from(["\n", "a\tb", "\x7f", "\u2028", " ", "\ud800"]),
)
"""Suffixes of execution ids; the example's uuid prefix is put in front."""
prefixed = id_specs.map(lambda suffix: ("prefixed", suffix))
raw_ids = st.sampled_from(["", 42, None, b"id", "x" * 254]).map(lambda raw: ("raw", raw))
"""Ids used as they are (never valid, so no prefix is needed to keep examples apart)."""
names = mostly(st.sampled_from(["a", "b", "snap-1"]), texts, st.just("n" * 254))

slot = mostly(st.just(0), st.integers(min_value=1, max_value=3))
write_ops = st.tuples(
    st.sampled_from(["save", "checkpoint"]),
    slot,
    steps,
    mostly(states, bad_states),
    attempts,
)
start_ops = st.tuples(st.just("start"), slot, start_attempts, labels, retentions)
operations = weighted(
    (2, start_ops),
    (6, write_ops),
    (
        6,
        st.one_of(
            st.tuples(st.just("transaction"), st.lists(write_ops, min_size=1, max_size=3)),
            st.tuples(st.just("load"), slot),
            st.tuples(st.just("get_execution"), slot),
            st.tuples(st.just("get_history"), slot, st.none() | steps, limits),
            st.tuples(st.just("get_checkpoint"), slot, steps),
            st.tuples(st.just("audit"), slot),
            st.tuples(st.just("complete"), slot, attempts),
            st.tuples(st.just("fail"), slot, errors, attempts),
            st.tuples(st.just("cancel"), slot, attempts),
            st.tuples(st.just("create_snapshot"), slot, names, st.none() | steps),
            st.tuples(st.just("restore_snapshot"), slot, names, attempts),
            st.tuples(st.just("load_snapshot"), slot, names),
            st.tuples(st.just("list_snapshots"), slot),
            st.tuples(st.just("delete_snapshot"), slot, names),
        ),
    ),
)
programs = st.tuples(
    st.tuples(
        st.text(_safe_chars, min_size=1, max_size=10), st.lists(mostly(prefixed, raw_ids), max_size=2)
    ).map(lambda first_and_more: [("prefixed", first_and_more[0]), *first_and_more[1]]),
    st.lists(operations, min_size=3, max_size=15),
)

# -- running a program ----------------------------------------------------------------------------


def norm(value: Any) -> Any:
    """What both backends must agree on (timestamps differ by nature and are left out)."""
    if isinstance(value, Execution):
        return (
            "execution",
            value.execution_id,
            value.status,
            value.current_step,
            value.last_checkpoint_step,
            value.attempt,
            value.finished_at is None,
            value.error,
            value.labels,
            value.checkpoint_retention,
        )
    if isinstance(value, Checkpoint):
        return (
            "checkpoint",
            value.execution_id,
            value.step,
            value.state_data,
            value.attempt,
            value.size_bytes,
        )
    if isinstance(value, Snapshot):
        return ("snapshot", value.name, value.execution_id, value.step, value.size_bytes)
    if isinstance(value, list):
        return [norm(v) for v in value]
    return value


async def outcome(call: Any) -> tuple[str, Any]:
    """("ok", normalised result) or ("error", error type); any error not a StateError fails the test."""
    try:
        return "ok", norm(await call)
    except Exception as exc:
        refused = exc
    if not isinstance(refused, StateError):
        pytest.fail(f"raw {type(refused).__name__} escaped the SDK: {refused!r}")
    assert str(refused), f"{type(refused).__name__} without a message"
    return "error", type(refused).__name__


def is_valid_id(value: object) -> bool:
    try:
        check.execution_id(value)
    except StateError:
        return False
    return True


async def footprint(state: StateManager, ids: list[Any]) -> list[Any]:
    """Everything of these executions an operation could change."""
    seen = []
    for execution_id in ids:
        if not is_valid_id(execution_id):
            continue
        seen.append(
            (
                execution_id,
                await outcome(state.get_execution(execution_id)),
                await outcome(state.load(execution_id)),
                await outcome(state.get_history(execution_id)),
                await outcome(state.list_snapshots(execution_id)),
                await outcome(audit(state, execution_id)),
            )
        )
    return seen


async def transaction(state: StateManager, writes: list[tuple[Any, ...]], ids: list[Any]) -> None:
    async with state.transaction() as txn:
        for kind, i, step, data, attempt in writes:
            await getattr(txn, kind)(ids[i % len(ids)], step, data, attempt=attempt)


def call(state: StateManager, op: tuple[Any, ...], ids: list[Any]) -> Any:
    kind, *args = op
    if kind == "transaction":
        return transaction(state, args[0], ids)
    execution_id = ids[args[0] % len(ids)]
    rest = args[1:]
    if kind == "start":
        attempt, labels, retention = rest
        return state.start_execution(
            execution_id, attempt=attempt, labels=labels, checkpoint_retention=retention
        )
    if kind in ("save", "checkpoint"):
        step, data, attempt = rest
        return getattr(state, kind)(execution_id, step, data, attempt=attempt)
    if kind == "get_history":
        after, limit = rest
        return state.get_history(execution_id, after_step=after, limit=limit)
    if kind == "audit":
        return audit(state, execution_id)
    if kind in ("complete", "cancel", "restore_snapshot"):
        *positional, attempt = rest
        return getattr(state, kind)(execution_id, *positional, attempt=attempt)
    if kind == "fail":
        error, attempt = rest
        return state.fail(execution_id, error, attempt=attempt)
    return getattr(state, kind)(execution_id, *rest)


async def audit(state: StateManager, execution_id: str) -> list[tuple[Any, ...]]:
    return [(e.kind, e.step, e.attempt, e.size_bytes, e.hash) for e in await state.get_audit(execution_id)]


CONFIGS = {
    "defaults": {},
    "compressed-interval-retention": {
        "enable_compression": True,
        "compression_threshold": 32,  # PostgreSQL then stores saves as deltas against a checkpoint
        "checkpoint_interval": 3,
        "checkpoint_retention": 2,
    },
}


@pytest.fixture(params=list(CONFIGS))
async def pair(
    request: pytest.FixtureRequest, pg_dsn: str
) -> AsyncIterator[tuple[StateManager, StateManager]]:
    """A memory-backed and a PostgreSQL-backed StateManager with the same options."""
    options = CONFIGS[request.param]
    memory = StateManager(**options)
    postgres = StateManager(backend="postgresql", db_url=pg_dsn, **options)
    try:
        yield memory, postgres
    finally:
        await memory.close()
        await postgres.close()


@settings(SETTINGS, max_examples=int(300 * SCALE))
@given(program=programs)
async def test_random_programs_agree_across_backends_and_reject_cleanly(
    pair: tuple[StateManager, StateManager], program: tuple[list[Any], list[tuple[Any, ...]]]
) -> None:
    memory, postgres = pair
    specs, ops = program
    prefix = f"p{uuid.uuid4().hex[:12]}-"
    ids = [f"{prefix}{spec}" if how == "prefixed" else spec for how, spec in specs]
    before = await footprint(memory, ids)
    assert await footprint(postgres, ids) == before
    for op in ops:
        got_memory = await outcome(call(memory, op, ids))
        got_postgres = await outcome(call(postgres, op, ids))
        assert got_postgres == got_memory, f"backends disagree on {op!r}"
        after = await footprint(memory, ids)
        assert await footprint(postgres, ids) == after, f"stored state differs after {op!r}"
        if got_memory[0] == "error":
            event(f"refused: {op[0]} ({got_memory[1]})")
            assert after == before, f"{op!r} was refused ({got_memory[1]}) but changed stored state"
        else:
            event(f"accepted: {op[0]}")
        before = after


@settings(SETTINGS, max_examples=int(100 * SCALE))
@given(values=st.lists(states, min_size=1, max_size=3), compress=st.booleans())
async def test_every_accepted_state_reads_back_as_written_on_both_backends(
    pg_dsn: str, values: list[Any], compress: bool
) -> None:
    execution_id = f"rt-{uuid.uuid4().hex}"
    for backend in ("memory", "postgresql"):
        options: dict[str, Any] = {"enable_compression": compress, "compression_threshold": 32}
        async with StateManager(
            backend=backend, db_url=pg_dsn if backend == "postgresql" else None, **options
        ) as state:
            for step, value in enumerate(values, start=1):
                await state.checkpoint(execution_id, step, value)
                await state.save(execution_id, step * 10 + 1, value)  # a delta save on PostgreSQL
                assert await state.load(execution_id) == value
                assert (await state.get_checkpoint(execution_id, step)).state_data == value
            await state.create_snapshot(execution_id, "last")
            assert await state.load_snapshot(execution_id, "last") == values[-1]
            assert [c.state_data for c in await state.get_history(execution_id)] == values


@settings(SETTINGS, max_examples=int(30 * SCALE))
@given(
    value=st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, struct.unpack("<d", NAN_PAYLOAD)[0]]),
    where=st.sampled_from(["top", "nested", "list"]),
)
async def test_nan_and_infinity_are_a_clear_invalid_state_error_on_both_backends(
    pair: tuple[StateManager, StateManager], value: float, where: str
) -> None:
    state_data: Any = {"top": value, "nested": {"a": {"b": value}}, "list": [1, [2, value]]}[where]
    path = {"top": "state_data", "nested": 'state_data["a"]["b"]', "list": "state_data[1][1]"}[where]
    execution_id = f"nan-{uuid.uuid4().hex}"
    for state in pair:
        await state.checkpoint(execution_id, 1, {"ok": True})
        for write in (state.save, state.checkpoint):
            with pytest.raises(InvalidStateError, match="is not a JSON number") as raised:
                await write(execution_id, 2, state_data)
            assert raised.value.path == path
            assert path in str(raised.value)
        assert await state.load(execution_id) == {"ok": True}
        assert len(await state.get_history(execution_id)) == 1
        execution = await state.get_execution(execution_id)
        assert execution is not None
        assert execution.current_step == 1


async def test_a_transaction_prunes_history_like_successive_writes(pg_dsn: str) -> None:
    """Found by the random programs: start(checkpoint_retention=1), then one transaction with
    checkpoint(step 1) and save(step 0). Memory keeps step 0 (written last) like two plain writes
    do on both backends; PostgreSQL kept step 1, and get_latest_checkpoint() found nothing."""
    seen = []
    for backend in ("memory", "postgresql"):
        async with StateManager(backend=backend, db_url=pg_dsn if backend == "postgresql" else None) as state:
            await state.start_execution("run", checkpoint_retention=1)
            async with state.transaction() as txn:
                await txn.checkpoint("run", 1, {"s": 1})
                await txn.save("run", 0, {"s": 0})
            execution = await state.get_execution("run")
            assert execution is not None
            latest = await state.get_latest_checkpoint("run")
            seen.append(
                (
                    backend,
                    execution.last_checkpoint_step,
                    [c.step for c in await state.get_history("run")],
                    None if latest is None else latest.step,
                )
            )
    assert seen == [("memory", 0, [0], 0), ("postgresql", 0, [0], 0)]


@settings(SETTINGS, max_examples=int(30 * SCALE))
@given(depth=st.integers(min_value=1, max_value=1500), kind=st.sampled_from(["list", "dict"]))
async def test_deeply_nested_states_are_stored_or_refused_alike(
    pair: tuple[StateManager, StateManager], depth: int, kind: str
) -> None:
    """Past orjson's nesting limit the stdlib codec takes over; past MAX_DEPTH, a clear refusal.

    Found by this test: without a fixed limit a state of depth 991 was accepted by save() and then
    load() raised a raw RecursionError (what a write accepted depended on the caller's stack)."""
    value: Any = 0
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    execution_id = f"deep-{uuid.uuid4().hex}"
    seen = []
    for state in pair:
        written = await outcome(state.save(execution_id, 1, value))
        read = await outcome(state.load(execution_id))
        if read[0] == "ok":
            assert read[1] == value
        seen.append((written, read[0]))
    assert seen[0] == seen[1]
    if depth <= MAX_DEPTH:
        assert seen[0] == (("ok", None), "ok")
    else:  # refused by the codec with the path, on both backends
        assert seen[0] == (("error", "InvalidStateError"), "error")
