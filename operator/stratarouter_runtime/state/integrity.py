"""Integrity on read: a stored state is returned only if it matches the sha256 recorded with it.

Every write records the sha256 of the state's JSON, before compression (:class:`~stratarouter_runtime.
state.codec.EncodedState` ``digest``; the ``hash`` of checkpoints, snapshots and the audit trail, the
``state_hash`` of the current state). A reader decompresses (a truncated or damaged zstd frame fails
there), hashes the JSON it got and compares, so flipped bytes, truncated blobs and a delta applied to a
changed base all raise :class:`CorruptCheckpointError` instead of returning a wrong state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Final

import zstandard

from stratarouter_runtime.state import codec
from stratarouter_runtime.state.errors import CorruptCheckpointError

RAISE: Final = "raise"
PREVIOUS: Final = "previous"
ON_CORRUPT: Final = frozenset({RAISE, PREVIOUS})
"""What a resume does with a corrupt current state: raise, or fall back to the newest checkpoint that
verifies (``StateManager(on_corrupt=...)``)."""

ON_CORRUPT_PARAM: Final = "onCorrupt"
"""The query parameter of the checkpoint API's ``GET /v1/state`` that carries a pod's ``on_corrupt``:
the API falls back in the operator's store for it."""

CORRUPT_FALLBACK: Final = "corrupt_fallback"
"""The audit event of a fallback: ``detail`` is ``{"bad_step": ..., "used_step": ...}``."""


def verified_json(execution_id: str, step: int | None, expected: bytes, unpack: Callable[[], bytes]) -> bytes:
    """The JSON ``unpack()`` gives, if its sha256 is ``expected``; else CorruptCheckpointError."""
    try:
        raw = unpack()
    except zstandard.ZstdError:
        raise CorruptCheckpointError(execution_id, step) from None
    if hashlib.sha256(raw).digest() != expected:
        raise CorruptCheckpointError(execution_id, step)
    return raw


def verified_state(execution_id: str, step: int | None, data: bytes, codec_name: str, expected: bytes) -> Any:
    """The decoded state stored as ``(data, codec_name)``, verified against ``expected``."""
    raw = verified_json(execution_id, step, expected, lambda: codec.decode_json_bytes(data, codec_name))
    return codec.decode(raw, codec.JSON)
