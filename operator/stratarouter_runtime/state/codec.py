"""State encoding: JSON once (orjson), optional zstd above a size threshold, codec named per row.

The stored form is ``(data, codec)``: ``json`` is UTF-8 JSON, ``zstd`` is that JSON compressed
with zstandard. Decoding only needs the codec name, so rows written with and without
compression live side by side and ``enable_compression`` can be switched at any time.

State must be plain JSON: dicts with string keys, lists/tuples, str, int, finite float, bool,
None (UUIDs and enums are accepted and stored as their JSON value), nested at most
``MAX_DEPTH`` deep. Anything else, such as a datetime, NaN or a set, is refused with the path of the
offending value.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import orjson
import zstandard

from stratarouter_runtime.state.errors import InvalidStateError, StateError, StateTooLargeError

JSON: Final = "json"
ZSTD: Final = "zstd"
CODECS: Final = frozenset({JSON, ZSTD})

DEFAULT_COMPRESSION_THRESHOLD: Final = 4096
DEFAULT_MAX_STATE_BYTES: Final = 16 * 1024 * 1024
ZSTD_LEVEL: Final = 3

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**64 - 1  # orjson reads unsigned 64-bit integers exactly too
_ORJSON_OPTS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
MAX_DEPTH: Final = 512
"""Deepest nesting of lists and dicts a state may have. Past orjson's own limit the stdlib codec
encodes and decodes, recursively: without a fixed limit, what a write accepted depended on the
writer's call stack and recursion limit, and a reader with less room failed to decode it."""


@dataclass(frozen=True, slots=True)
class EncodedState:
    """A state ready to store. ``size_bytes`` and ``digest`` describe the JSON before compression."""

    data: bytes
    codec: str
    size_bytes: int
    digest: bytes
    raw: bytes | None = None
    """The JSON itself when ``data`` is compressed (kept so it need not be decompressed again)."""

    @property
    def json(self) -> bytes:
        """The JSON bytes of this state."""
        if self.raw is not None:
            return self.raw
        return decode_json_bytes(self.data, self.codec)

    @property
    def hash_hex(self) -> str:
        return self.digest.hex()


def _key(root: str, key: object) -> str:
    return f"{root}[{json.dumps(key)}]" if isinstance(key, str) else f"{root}[{key!r}]"


def find_bad_value(value: Any, root: str = "state_data") -> tuple[str, str] | None:
    """Return ``(path, reason)`` of the first value that is not plain JSON, or None if all is fine."""
    stack: list[tuple[str, Any, int]] = [(root, value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if depth >= MAX_DEPTH and isinstance(item, dict | list | tuple):
            return path, f"lists and dicts nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, int) and not isinstance(item, bool | Enum) and not _I64_MIN <= item <= _I64_MAX:
            return path, f"integer {item} is outside the 64-bit range JSON readers agree on"
        if item is None or isinstance(item, str | bool | int | uuid.UUID | Enum):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return path, f"{item!r} is not a JSON number"
            continue
        if isinstance(item, dict):
            children: list[tuple[str, Any, int]] = []
            for key, child in item.items():
                if not isinstance(key, str):
                    return _key(
                        path, key
                    ), f"dict key {key!r} is a {type(key).__name__}, JSON keys must be str"
                children.append((_key(path, key), child, depth + 1))
            stack.extend(reversed(children))
            continue
        if isinstance(item, list | tuple):
            stack.extend((f"{path}[{i}]", child, depth + 1) for i, child in reversed(list(enumerate(item))))
            continue
        return path, f"value of type {type(item).__name__} is not JSON-serialisable"
    return None


def _refuse(value: Any, root: str, cause: Exception | None = None) -> InvalidStateError:
    found = find_bad_value(value, root)
    if found is None:
        return InvalidStateError(f"{root} is not JSON-serialisable: {cause}")
    path, reason = found
    return InvalidStateError(f"{path}: {reason}", path=path)


def to_json(value: Any, root: str = "state_data") -> bytes:
    """Encode ``value`` as compact JSON, refusing anything that would not round-trip."""
    try:
        data = orjson.dumps(value, option=_ORJSON_OPTS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        if find_bad_value(value, root) is not None:
            raise _refuse(value, root, exc) from None
        try:  # very deep nesting: the slower stdlib encoder copes
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc2:
            raise _refuse(value, root, exc2) from None
    if b"null" in data and find_bad_value(value, root) is not None:  # orjson writes NaN/inf as null
        raise _refuse(value, root)
    return data


class StateCodec:
    """Encodes states for one StateManager (its compression and size settings)."""

    __slots__ = ("_compressor", "compress", "max_bytes", "threshold")

    def __init__(
        self,
        *,
        compress: bool = False,
        threshold: int = DEFAULT_COMPRESSION_THRESHOLD,
        max_bytes: int = DEFAULT_MAX_STATE_BYTES,
    ) -> None:
        self.compress = compress
        self.threshold = threshold
        self.max_bytes = max_bytes
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL) if compress else None

    def encode(self, value: Any, root: str = "state_data") -> EncodedState:
        raw = to_json(value, root)
        return self.encode_json(raw)

    def encode_json(self, raw: bytes) -> EncodedState:
        """Wrap already-encoded JSON (e.g. received by the checkpoint API) for storage."""
        size = len(raw)
        if size > self.max_bytes:
            raise StateTooLargeError(size, self.max_bytes)
        digest = hashlib.sha256(raw).digest()
        if self._compressor is not None and size >= self.threshold:
            packed = self._compressor.compress(raw)
            if len(packed) < size:
                return EncodedState(packed, ZSTD, size, digest, raw)
        return EncodedState(raw, JSON, size, digest)


_decompressor = zstandard.ZstdDecompressor()


def decode_json_bytes(data: bytes, codec: str) -> bytes:
    """The JSON bytes of a stored state."""
    if codec == JSON:
        return data
    if codec == ZSTD:
        out: bytes = _decompressor.decompress(data)
        return out
    raise InvalidStateError(f"unknown state codec {codec!r} (known: {sorted(CODECS)})")


def decode(data: bytes, codec: str) -> Any:
    """Decode a stored state back to Python values."""
    raw = decode_json_bytes(data, codec)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)  # nesting deeper than orjson's limit
    except RecursionError:  # a state stored before MAX_DEPTH, deeper than this process can decode
        raise StateError(
            f"stored state is nested too deeply to decode here (states are limited to {MAX_DEPTH} levels)"
        ) from None
