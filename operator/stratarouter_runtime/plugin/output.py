"""Output in kubectl's manner: aligned tables by default, ``-o json`` / ``-o yaml`` for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

FORMATS = ("table", "json", "yaml")


def dumps(obj: Any, fmt: str) -> str:
    if fmt == "yaml":
        try:
            import yaml
        except ImportError:  # PyYAML comes with the operator extra
            return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
        return str(yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def emit(obj: Any, fmt: str, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(dumps(obj, fmt))


def cell(value: Any) -> str:
    if value is None or value == "":
        return "<none>"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """Columns separated by three spaces, upper-case headers, ``<none>`` for empty cells (kubectl's)."""
    text = [[h.upper() for h in headers], *[[cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in text) for i in range(len(headers))]
    stream = out or sys.stdout
    for r in text:
        stream.write("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")


def size(n: int | None) -> str:
    """Bytes the way kubectl shows quantities: 512B, 1.5KiB, 12MiB."""
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)}{unit}" if unit == "B" or value >= 10 else f"{value:.1f}{unit}"
        value /= 1024
    return f"{n}B"


def sort_key(value: str | None) -> str:
    """An ISO timestamp (any offset, any precision) as a string that sorts in time order. A time to the
    second (an Event's) sorts at the end of its second: what it reports follows what that second saw."""
    if not value:
        return ""
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if "." not in value and parsed.microsecond == 0:
        parsed = parsed.replace(microsecond=999_999)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def short_time(value: str | None) -> str:
    """An ISO timestamp as ``2026-12-01T10:00:01Z`` (seconds, UTC)."""
    if not value:
        return ""
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
