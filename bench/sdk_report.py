"""The Markdown table of ``bench.sdk``: each contender's figure, our ratios, and PASS/MISS per target."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Literal

from bench.sdk_harness import Measurement

OURS = "strata"
RAW = "raw"
LANGGRAPH = "langgraph"

Kind = Literal["rate", "ms", "bytes"]


@dataclass
class Row:
    """One benchmark: a figure per contender and how ours is judged.

    ``kind`` says how the figures read: ``rate`` (ops/s, higher is better), ``ms`` (time per call,
    stored as calls/s so the ratio is still a rate ratio), ``bytes`` (smaller is better).
    ``basis`` is the contender our ratio is taken against; ``threshold`` the target on that ratio
    (ours ÷ basis for rates; for bytes, ours ÷ basis must be at most the threshold).

    Rate ratios are paired: the median over rotations of ours ÷ theirs in the same rotation (slices
    taken a moment apart), so a burst of load from another process cannot flip a verdict by landing
    on one contender's slices. Without slices to pair (bytes) it is the plain quotient.
    """

    title: str
    kind: Kind
    basis: str
    threshold: float
    target: str
    results: dict[str, Measurement] = field(default_factory=dict)
    note: str = ""

    def value(self, name: str) -> float | None:
        m = self.results.get(name)
        return None if m is None else m.rate

    def ratio(self, against: str) -> float | None:
        ours, base = self.results.get(OURS), self.results.get(against)
        if ours is None or base is None:
            return None
        pairs = [
            (n1 / t1) / (n2 / t2)
            for (n1, t1), (n2, t2) in zip(ours.slices, base.slices, strict=False)
            if t1 > 0 and t2 > 0 and n2 > 0
        ]
        if pairs:
            return statistics.median(pairs)
        mine, theirs = ours.rate, base.rate
        if mine is None or theirs is None or theirs == 0:
            return None
        return mine / theirs

    def verdict(self) -> str:
        ratio = self.ratio(self.basis)
        if ratio is None:
            return "—"
        ok = ratio <= self.threshold if self.kind == "bytes" else ratio >= self.threshold
        return "PASS" if ok else "MISS"


def fmt_value(row: Row, name: str) -> str:
    m = row.results.get(name)
    if m is None:
        return "—"
    if m.error:
        return "error"
    if m.skipped:
        return "n/a"
    rate = m.rate
    if rate is None:
        return "—"
    if row.kind == "rate":
        return f"{rate:,.0f}/s"
    if row.kind == "ms":
        return f"{1000.0 / rate:,.1f} ms"
    return f"{rate / 2**20:,.2f} MiB"


def fmt_ratio(row: Row, against: str) -> str:
    ratio = row.ratio(against)
    if ratio is None:
        return "—"
    if row.kind == "ms":
        # Report time ratios for reads of a whole history: ours takes N x as long as the basis.
        return f"{1 / ratio:.2f}x time"
    return f"{ratio:.2f}x"


def render(rows: list[Row], labels: dict[str, str], order: list[str]) -> str:
    """The results table, then one line per error or n/a so nothing is silently missing."""
    head = ["Benchmark", *(labels[n] for n in order), "ours ÷ basis", "ours ÷ LangGraph", "target", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes: list[str] = []
    seen: set[str] = set()
    for row in rows:
        cells = [row.title, *(fmt_value(row, n) for n in order)]
        basis_ratio = fmt_ratio(row, row.basis)
        lg = fmt_ratio(row, LANGGRAPH) if row.basis != LANGGRAPH else basis_ratio
        cells += [basis_ratio, lg, row.target, row.verdict()]
        lines.append("| " + " | ".join(cells) + " |")
        for name in order:
            m = row.results.get(name)
            if m is not None and (m.error or m.skipped):
                reason = f"{labels[name]}: {m.error or m.skipped}"
                if reason not in seen:  # a contender that failed to import says so once, not per row
                    seen.add(reason)
                    notes.append(f"- {row.title}, {reason}")
        if row.note:
            notes.append(f"- {row.title}: {row.note}")
    lines += ["", *cpu_lines(rows, labels, order)]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def cpu_lines(rows: list[Row], labels: dict[str, str], order: list[str]) -> list[str]:
    """Client-side CPU per operation and the slowest..fastest slice, per timed row (the diagnostics)."""
    out = ["Client CPU per operation (this process, all threads) and slowest..fastest slice:", ""]
    for row in rows:
        if row.kind == "bytes":
            continue
        cells = []
        for name in order:
            m = row.results.get(name)
            cpu = None if m is None else m.cpu_us_per_op
            spread = None if m is None else m.spread
            if cpu is None or spread is None:
                continue
            lo, hi = spread
            span = (
                f"{lo:,.0f}..{hi:,.0f}/s" if row.kind == "rate" else f"{1000 / hi:,.1f}..{1000 / lo:,.1f} ms"
            )
            cells.append(f"{labels[name]} {cpu:,.0f} µs ({span})")
        out.append(f"- {row.title}: " + "; ".join(cells))
    return out
