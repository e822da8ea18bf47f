"""Large current states stored as a zstd delta against the execution's newest checkpoint.

Why: ``save()`` rewrites the execution row every step. A growing state (an agent transcript) that
is stored whole leaves a dead TOAST copy of all of it per step until vacuum runs, so the store
grows by the full state size on every save. Stored as a zstd frame whose dictionary is the JSON of
the newest checkpoint (``state_base_step``), a save costs only what changed since that checkpoint,
and the row stays small enough to be updated in place (HOT) without TOAST.

The base is trusted only if the checkpoint row still has the digest the delta was made against: the
write statement checks (and share-locks) it, so a checkpoint rewritten or pruned meanwhile makes the
delta write change nothing, and the backend writes the full state instead. Every statement that
rewrites or removes checkpoints also rewrites the execution row, which clears ``state_base_step``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import zstandard

from stratarouter_runtime.state.backends.base import WriteOp
from stratarouter_runtime.state.codec import ZSTD_LEVEL, EncodedState

DELTA: Final = "zstd-delta"
"""The codec name of a delta row (never returned to callers: the backend resolves it on read)."""
CACHE_BYTES: Final = 64 * 1024 * 1024
"""The JSON of bases kept per process, over all executions (oldest forgotten first)."""


@dataclass(frozen=True, slots=True)
class Base:
    step: int
    digest: bytes
    json: bytes
    compressor: zstandard.ZstdCompressor


@dataclass(frozen=True, slots=True)
class Delta:
    data: bytes
    base_step: int
    base_digest: bytes


def _dictionary(base_json: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(base_json, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def apply(delta: bytes, base_json: bytes) -> bytes:
    """The JSON a delta stands for, given its base's JSON."""
    out: bytes = zstandard.ZstdDecompressor(dict_data=_dictionary(base_json)).decompress(delta)
    return out


class DeltaBases:
    """The newest checkpoint this process wrote per execution, for states of ``min_bytes`` or more."""

    def __init__(self, min_bytes: int, max_bytes: int = CACHE_BYTES) -> None:
        self._min = min_bytes
        self._max = max_bytes
        self._bases: dict[str, Base] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._bases)

    def remember(self, op: WriteOp) -> None:
        """After ``op`` (a history write) committed: its state is the base of later saves."""
        self.forget(op.execution_id)
        state = op.state
        if state.size_bytes < self._min or state.size_bytes > self._max // 4:
            return
        raw = state.json
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, dict_data=_dictionary(raw))
        self._bases[op.execution_id] = Base(op.step, state.digest, raw, compressor)
        self._bytes += len(raw)
        while self._bytes > self._max:
            self.forget(next(iter(self._bases)))

    def forget(self, execution_id: str) -> None:
        base = self._bases.pop(execution_id, None)
        if base is not None:
            self._bytes -= len(base.json)

    def encode(self, op: WriteOp) -> Delta | None:
        """``op``'s state as a delta, if there is a base and the delta is smaller than ``op.state.data``."""
        base = self._bases.get(op.execution_id)
        state: EncodedState = op.state
        if base is None or op.history or state.size_bytes < self._min:
            return None
        data = base.compressor.compress(state.json)
        if len(data) >= len(state.data):
            return None
        return Delta(data, base.step, base.digest)
