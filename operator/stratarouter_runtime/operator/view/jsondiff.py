"""The JSON diff of two checkpoints' states: JSON Patch (RFC 6902) operations taking ``a`` to ``b``.

Objects are compared key by key, arrays element by element (a longer ``b`` adds at the end, a shorter
one removes from the end, last index first, so the operations apply in order); anything else that
differs is one ``replace``. Paths are JSON Pointers (RFC 6901). At most ``max_ops`` operations are
made; the caller is told when the diff was cut there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_OPS = 10_000


def pointer(parts: tuple[str, ...]) -> str:
    """The JSON Pointer of a path (``~`` and ``/`` escaped)."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass
class Diff:
    ops: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    max_ops: int = MAX_OPS

    def emit(self, op: dict[str, Any]) -> bool:
        """Record ``op``; False once the cap is reached (the walk stops)."""
        if len(self.ops) >= self.max_ops:
            self.truncated = True
            return False
        self.ops.append(op)
        return True


def _same_scalar(a: Any, b: Any) -> bool:
    # Python's == says True == 1 == 1.0, JSON does not: the types must match too. Containers are
    # never compared whole ({"x": 1} == {"x": True} in Python): they are walked.
    return type(a) is type(b) and not isinstance(a, dict | list) and a == b


def _walk(a: Any, b: Any, path: tuple[str, ...], out: Diff) -> bool:
    if _same_scalar(a, b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a:
            if key not in b and not out.emit({"op": "remove", "path": pointer((*path, key))}):
                return False
        for key, value in b.items():
            if key not in a:
                if not out.emit({"op": "add", "path": pointer((*path, key)), "value": value}):
                    return False
            elif not _walk(a[key], value, (*path, key), out):
                return False
        return True
    if isinstance(a, list) and isinstance(b, list):
        common = min(len(a), len(b))
        for i in range(common):
            if not _walk(a[i], b[i], (*path, str(i)), out):
                return False
        for i in range(common, len(b)):
            if not out.emit({"op": "add", "path": pointer((*path, "-")), "value": b[i]}):
                return False
        for i in range(len(a) - 1, common - 1, -1):
            if not out.emit({"op": "remove", "path": pointer((*path, str(i)))}):
                return False
        return True
    return out.emit({"op": "replace", "path": pointer(path), "value": b})


def diff(a: Any, b: Any, max_ops: int = MAX_OPS) -> Diff:
    """The operations that turn ``a`` into ``b`` (at most ``max_ops``; ``truncated`` says if cut)."""
    out = Diff(max_ops=max_ops)
    _walk(a, b, (), out)
    return out


def apply(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """Apply :func:`diff`'s operations (add/remove/replace only) to a copy of ``doc``; for checking."""
    import copy

    root = [copy.deepcopy(doc)]
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = root
        key: Any = 0
        for part in parts:
            parent = parent[key]
            key = part if isinstance(parent, dict) else (len(parent) if part == "-" else int(part))
        if op["op"] == "remove":
            del parent[key]
        elif op["op"] == "add" and isinstance(parent, list):
            parent.insert(key, op["value"])
        else:
            parent[key] = op["value"]
    return root[0]
