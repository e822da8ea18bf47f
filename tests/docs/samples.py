"""The ```python samples of the product documentation, as the doc tests see them.

A sample is a fenced block whose info string is ``python`` (or ``py``, ``python3``). It is run unless
the line before its fence is a ``<!-- not-run: why -->`` comment; ``why`` must say something.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/sdk.md")
"""The product documentation whose samples must run."""

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_PYTHON = {"python", "py", "python3"}
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(?P<why>.*?)-->\s*$")


@dataclass(frozen=True)
class Sample:
    document: str
    line: int
    """1-based line of the opening fence."""
    code: str
    not_run: str | None
    """The reason given by a ``<!-- not-run: ... -->`` marker; None: the sample is run."""

    @property
    def id(self) -> str:
        return f"{self.document}:{self.line}"

    @property
    def needs_postgres(self) -> bool:
        """The sample asks for PostgreSQL itself (backend, URL or the variable)."""
        return bool(re.search(r"postgresql|STRATA_DB_URL|db_url", self.code))

    @property
    def backends(self) -> tuple[str, ...]:
        """Where the test runs it: memory unless it needs PostgreSQL, and PostgreSQL when it needs it
        or reads the environment (``from_env()`` is PostgreSQL once STRATA_DB_URL is exported)."""
        legs = ()
        if not self.needs_postgres:
            legs += ("memory",)
        if self.needs_postgres or "from_env(" in self.code:
            legs += ("postgresql",)
        return legs


def samples(document: str) -> list[Sample]:
    """Every Python sample of ``document`` (a path relative to the repository root)."""
    lines = (ROOT / document).read_text(encoding="utf-8").splitlines()
    found: list[Sample] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        ticks, indent = opening["ticks"], opening["indent"]
        info = opening["info"].strip().split()
        end = i + 1
        while end < len(lines) and not re.match(rf"^\s*{re.escape(ticks)}\s*$", lines[end]):
            end += 1
        if info and info[0].lower() in _PYTHON:
            body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
            previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = _NOT_RUN.match(previous)
            found.append(
                Sample(
                    document, i + 1, "\n".join(body) + "\n", None if marker is None else marker["why"].strip()
                )
            )
        i = end + 1
    return found


def all_samples() -> list[Sample]:
    return [sample for document in DOCUMENTS for sample in samples(document)]
