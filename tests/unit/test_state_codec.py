"""State encoding: JSON once, zstd above the threshold, and the path of any value JSON cannot hold."""

from __future__ import annotations

import hashlib
import math
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest

from stratarouter_runtime.state import codec
from stratarouter_runtime.state.errors import InvalidStateError, StateError, StateTooLargeError


class Color(Enum):
    RED = "red"


@dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1, 2.5, None, True, False, "x"], "c": {"d": {}}},
        [],
        "plain",
        0,
        {"unicode": "héllo ✓ 日本", "neg": -(2**63), "big": 2**64 - 1},
        {"deep": [[[[[[[[[[{"x": 1}]]]]]]]]]]},
    ],
)
def test_round_trip(value: Any) -> None:
    enc = codec.StateCodec().encode(value)
    assert enc.codec == codec.JSON
    assert codec.decode(enc.data, enc.codec) == value
    assert enc.size_bytes == len(enc.data)
    assert enc.digest == hashlib.sha256(enc.data).digest()


def test_tuples_uuids_and_enums_become_their_json_form() -> None:
    u = uuid.UUID(int=7)
    enc = codec.StateCodec().encode({"t": (1, 2), "u": u, "e": Color.RED})
    assert codec.decode(enc.data, enc.codec) == {"t": [1, 2], "u": str(u), "e": "red"}


@pytest.mark.parametrize(
    ("value", "path", "reason"),
    [
        ({"items": [0, 1, 2, {"when": datetime(2026, 1, 1)}]}, 'state_data["items"][3]["when"]', "datetime"),
        ({"d": date(2026, 1, 1)}, 'state_data["d"]', "date"),
        ({"x": float("nan")}, 'state_data["x"]', "nan"),
        ({"x": [None, -math.inf]}, 'state_data["x"][1]', "-inf"),
        ({"s": {1, 2}}, 'state_data["s"]', "set"),
        ({"k": {3: "v"}}, 'state_data["k"][3]', "keys must be str"),
        ({"n": 2**70}, 'state_data["n"]', "64-bit"),
        ({"dec": Decimal("1.5")}, 'state_data["dec"]', "Decimal"),
        ({"p": Point(1)}, 'state_data["p"]', "Point"),
        ({"b": b"bytes"}, 'state_data["b"]', "bytes"),
        ({'we"ird': object()}, 'state_data["we\\"ird"]', "object"),
    ],
)
def test_bad_values_are_named_by_path(value: Any, path: str, reason: str) -> None:
    with pytest.raises(InvalidStateError) as info:
        codec.StateCodec().encode(value)
    assert info.value.path == path
    assert str(info.value).startswith(path)
    assert reason in str(info.value)
    assert isinstance(info.value, ValueError)


def test_null_without_nan_is_fine() -> None:
    enc = codec.StateCodec().encode({"x": None, "y": 1.5})
    assert codec.decode(enc.data, enc.codec) == {"x": None, "y": 1.5}


def test_compression_above_the_threshold_only() -> None:
    c = codec.StateCodec(compress=True, threshold=100)
    small = c.encode({"a": "x" * 10})
    assert small.codec == codec.JSON
    big_value = {"a": "repeat " * 1000}
    big = c.encode(big_value)
    assert big.codec == codec.ZSTD
    assert len(big.data) < big.size_bytes // 10
    assert codec.decode(big.data, big.codec) == big_value
    assert big.digest == hashlib.sha256(codec.decode_json_bytes(big.data, big.codec)).digest()


def test_incompressible_state_stays_json() -> None:
    import os

    noise = {"n": os.urandom(3000).hex()}
    enc = codec.StateCodec(compress=True, threshold=100).encode(noise)
    assert enc.codec in (codec.JSON, codec.ZSTD)
    assert len(enc.data) <= enc.size_bytes


def test_size_limit_applies_to_the_json() -> None:
    with pytest.raises(StateTooLargeError, match="over the limit of 50 bytes") as info:
        codec.StateCodec(max_bytes=50).encode({"a": "x" * 100})
    assert info.value.size > 100


def test_unknown_codec_is_refused() -> None:
    with pytest.raises(InvalidStateError, match="unknown state codec 'lz4'"):
        codec.decode(b"{}", "lz4")


def nested(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def test_states_nested_up_to_the_limit_round_trip_and_deeper_ones_are_refused() -> None:
    """Acceptance used to depend on the writer's call stack: a state written from a shallow stack (or
    with a raised recursion limit) could fail to decode elsewhere with a raw RecursionError."""
    top = nested(codec.MAX_DEPTH)
    enc = codec.StateCodec().encode(top)
    assert codec.decode(enc.data, enc.codec) == top
    with pytest.raises(InvalidStateError, match=f"nested more than {codec.MAX_DEPTH} levels") as raised:
        codec.StateCodec().encode({"k": nested(codec.MAX_DEPTH)})
    assert raised.value.path == 'state_data["k"]' + "[0]" * (codec.MAX_DEPTH - 1)


def test_a_stored_state_too_deep_to_decode_is_a_state_error() -> None:
    """Rows written before the limit: a clear StateError, not a RecursionError."""
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(StateError, match="nested too deeply to decode"):
        codec.decode(deep, codec.JSON)
