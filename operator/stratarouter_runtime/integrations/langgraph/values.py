"""Channel values, metadata and writes as JSON: plain JSON stays readable, anything else goes through
LangGraph's serializer.

Plain values (what most graphs hold: strings, numbers, lists, dicts) are stored as themselves, so the
store's zstd compression and its JSON tools see them; others (messages, ``Send``, bytes, tuples) are
``serde.dumps_typed`` bytes in base64. A bare None (LangGraph's branch channels hold one) is a marker
of its own: the store checks every state containing a JSON ``null`` value by value, a slow walk.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

PLAIN = "v"
NONE = "n"
TYPED = "t"
TYPED_BYTES = "b"

_MAX_PLAIN_DEPTH = 100  # the store refuses states deeper than 512; deep values go through serde
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def _is_plain_scalar(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(_INT_MIN <= value <= _INT_MAX)
    return kind is float and math.isfinite(value)


def is_plain_json(value: Any) -> bool:
    """Whether ``value`` survives a JSON round trip as an equal value of the same types.

    A loop over an explicit stack, not recursion: it runs over every channel value of every
    checkpoint, and an agent's transcript is a long list of small dicts.
    """
    if type(value) is not list and type(value) is not dict:
        return _is_plain_scalar(value)
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        container, depth = stack.pop()
        if depth > _MAX_PLAIN_DEPTH:
            return False
        if type(container) is dict:
            for key in container:
                if type(key) is not str:
                    return False
            items = container.values()
        else:
            items = container
        for item in items:
            kind = type(item)
            if kind is list or kind is dict:
                stack.append((item, depth + 1))
            elif not (kind is str or _is_plain_scalar(item)):
                return False
    return True


def encode(value: Any, serde: SerializerProtocol) -> dict[str, Any]:
    if value is None:
        return {NONE: 1}
    if is_plain_json(value):
        return {PLAIN: value}
    kind, data = serde.dumps_typed(value)
    return {TYPED: kind, TYPED_BYTES: base64.b64encode(data).decode("ascii")}


def encode_fields(fields: dict[str, Any], serde: SerializerProtocol) -> dict[str, Any]:
    """Each field of a dict encoded on its own (so one None or one odd value stays local)."""
    return {key: encode(value, serde) for key, value in fields.items()}


def decode_fields(stored: dict[str, Any], serde: SerializerProtocol) -> dict[str, Any]:
    return {key: decode(value, serde) for key, value in stored.items()}


def decode(stored: dict[str, Any], serde: SerializerProtocol) -> Any:
    if NONE in stored:
        return None
    if PLAIN in stored:
        return stored[PLAIN]
    return serde.loads_typed((stored[TYPED], base64.b64decode(stored[TYPED_BYTES])))
