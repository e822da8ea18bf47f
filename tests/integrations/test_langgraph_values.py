"""Which values the saver stores as plain JSON: only those a JSON round trip gives back equal and of the
same types; anything else comes back as LangGraph's serializer gives it back (as with its own savers)."""

from __future__ import annotations

import enum
import uuid
from collections import OrderedDict
from typing import Any

import pytest
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from stratarouter_runtime.integrations.langgraph.values import decode, encode, is_plain_json


class Level(enum.IntEnum):
    LOW = 1


def nested(depth: int) -> list[Any]:
    root: list[Any] = []
    current = root
    for _ in range(depth):
        child: list[Any] = []
        current.append(child)
        current = child
    return root


PLAIN = [1, "a", None, True, 1.5, [], {}, [1, [2, {"a": [None]}]], {"a": {"b": [1.0]}}, 2**63, nested(50)]
NOT_PLAIN = [
    (1,),
    [1, (2,)],
    {1: "a"},
    {"a": {2: 1}},
    float("nan"),
    [float("inf")],
    Level.LOW,
    [Level.LOW],
    uuid.UUID(int=7),
    b"x",
    OrderedDict(a=1),
    {"x": {1}},
    nested(150),
]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_json_is_stored_as_itself(value: Any) -> None:
    assert is_plain_json(value)
    serde = JsonPlusSerializer()
    assert decode(encode(value, serde), serde) == value


@pytest.mark.parametrize("value", NOT_PLAIN, ids=lambda v: type(v).__name__)
def test_other_values_come_back_as_the_serializer_gives_them(value: Any) -> None:
    assert not is_plain_json(value)
    serde = JsonPlusSerializer()
    stored = encode(value, serde)
    assert "t" in stored
    back, expected = decode(stored, serde), serde.loads_typed(serde.dumps_typed(value))
    assert type(back) is type(expected)
    assert repr(back) == repr(expected)  # repr: NaN is not equal to itself
