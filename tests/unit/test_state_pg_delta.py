"""Delta encoding of large saves against the newest checkpoint (pure logic, no database)."""

from __future__ import annotations

import orjson

from stratarouter_runtime.state.backends.base import WriteOp
from stratarouter_runtime.state.backends.pg_delta import DeltaBases, apply
from stratarouter_runtime.state.codec import StateCodec

CODEC = StateCodec(compress=True, threshold=1024)


def transcript(n: int) -> dict[str, object]:
    messages = [{"role": "user", "content": f"message {i} " + "word " * (i % 23)} for i in range(n)]
    return {"messages": messages}


def op(execution_id: str, step: int, state: object, history: bool) -> WriteOp:
    return WriteOp(execution_id, step, CODEC.encode(state), None, history)


def test_a_save_after_a_checkpoint_is_a_small_delta_that_applies_to_the_exact_json() -> None:
    bases = DeltaBases(min_bytes=1024)
    base = op("e", 10, transcript(400), True)
    save = op("e", 13, transcript(403), False)
    assert bases.encode(save) is None  # no base yet
    bases.remember(base)
    delta = bases.encode(save)
    assert delta is not None
    assert (delta.base_step, delta.base_digest) == (10, base.state.digest)
    assert len(delta.data) * 10 < len(save.state.data)  # only the three new messages
    assert apply(delta.data, orjson.dumps(transcript(400))) == orjson.dumps(transcript(403))


def test_no_delta_for_checkpoints_small_states_or_other_executions() -> None:
    bases = DeltaBases(min_bytes=1024)
    bases.remember(op("e", 10, transcript(400), True))
    assert bases.encode(op("e", 11, transcript(401), True)) is None  # history rows are stored whole
    assert bases.encode(op("e", 11, {"small": 1}, False)) is None
    assert bases.encode(op("other", 11, transcript(401), False)) is None
    bases.forget("e")
    assert bases.encode(op("e", 11, transcript(401), False)) is None


def test_small_checkpoints_are_not_kept_and_the_cache_is_bounded() -> None:
    bases = DeltaBases(min_bytes=1024, max_bytes=200_000)
    bases.remember(op("tiny", 1, {"x": 1}, True))
    assert len(bases) == 0
    size = len(orjson.dumps(transcript(300)))
    for i in range(10):
        bases.remember(op(f"e{i}", 1, transcript(300), True))
    assert 0 < len(bases) <= 200_000 // size
    assert bases.encode(op("e9", 2, transcript(301), False)) is not None  # the newest are kept
    assert bases.encode(op("e0", 2, transcript(301), False)) is None
