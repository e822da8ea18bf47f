"""Contender interface and the measuring loop shared by every peer of ``bench.sdk``.

Each contender lives in a fresh database of its own on one shared server. Rounds are interleaved
(raw, ours, LangGraph, DBOS, raw, ours, ...) so drift of the shared disk hits everyone alike; the
reported figure is the median of the rounds.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from bench.sdk_workload import transcript_message, transcript_state

WRITERS = 16
HISTORY_ROWS = 2000
STORAGE_STEPS = 1000


class NotSupported(Exception):
    """The contender has no equivalent of this operation; the table shows n/a with the reason."""


@dataclass
class Settings:
    """How long and how finely to measure; ``--quick`` shrinks everything for a smoke run.

    Each contender gets about ``seconds`` of timed work per benchmark, cut into slices of about
    ``slice_seconds`` that rotate through the contenders (raw, ours, LangGraph, DBOS, raw, ...), so a
    burst of disk contention from another process hits everyone alike.
    """

    seconds: float = 6.0
    slice_seconds: float = 0.15
    min_ops: int = 20
    max_ops: int = 50_000
    storage_steps: int = STORAGE_STEPS
    history_rows: int = HISTORY_ROWS

    @property
    def slices(self) -> int:
        return max(1, round(self.seconds / self.slice_seconds))


class Contender(ABC):
    """One library under test, bound to its own database once :meth:`open` has run."""

    name: str
    label: str

    @abstractmethod
    async def open(self, dsn: str) -> None:
        """Connect and create the schema (each library its own way, e.g. LangGraph's ``setup()``)."""

    @abstractmethod
    async def close(self) -> None: ...

    async def seq_writes(self, key: str, n: int) -> None:
        """``n`` durable writes of the ~1 KiB state, one after the other, for execution ``key``."""
        raise NotSupported("no sequential write")

    async def concurrent_writes(self, key: str, writers: int, per_writer: int) -> None:
        """``writers`` tasks at once, each writing ``per_writer`` states to an execution of its own."""
        raise NotSupported("no concurrent write")

    async def batched_writes(self, key: str, n: int) -> None:
        """``n`` writes through the library's batching path, all durable when this returns."""
        raise NotSupported("no batched write mode")

    async def prepare_load(self, key: str) -> dict[str, object]:
        """Write a short history for ``key``; return the state ``load`` must give back."""
        raise NotSupported("no load")

    async def loads(self, key: str, n: int) -> dict[str, object]:
        """Read the newest state of ``key`` ``n`` times; return the last state read."""
        raise NotSupported("no load")

    async def prepare_history(self, key: str, rows: int) -> None:
        """Write ``rows`` checkpoints for ``key`` (untimed)."""
        raise NotSupported("no history")

    async def history(self, key: str) -> int:
        """Read the whole history of ``key`` with its states; return how many checkpoints came back."""
        raise NotSupported("no history")

    async def storage_run(self, key: str, steps: int) -> str:
        """Run the growing-transcript workload; return a note on what was stored (for the report)."""
        raise NotSupported("no storage run")

    async def graph_run(self, key: str, steps: int) -> float:
        """Continue ``bench.peers.langgraph_graph``'s thread ``key`` on this library's LangGraph
        checkpointer until it has ``steps`` steps; return the seconds the graph took."""
        raise NotSupported("no LangGraph checkpointer")


def transcript_steps(steps: int) -> list[tuple[int, dict[str, object]]]:
    """The states of the storage run, step by step (the same list for every contender)."""
    messages: list[dict[str, str]] = []
    out: list[tuple[int, dict[str, object]]] = []
    for step in range(steps):
        messages.append(transcript_message(step))
        out.append((step, transcript_state(list(messages), step)))
    return out


@dataclass
class Measurement:
    """Timed slices (ops, seconds) of one contender, a fixed quantity (bytes), or why it has neither."""

    slices: list[tuple[int, float]] = field(default_factory=list)
    cpu_seconds: float = 0.0
    """CPU time of this (client) process during the slices, all threads: where the client's time goes."""
    fixed: float | None = None
    skipped: str | None = None
    error: str | None = None

    @property
    def rate(self) -> float | None:
        """Operations per second over all slices (or the fixed quantity)."""
        if self.fixed is not None:
            return self.fixed
        seconds = sum(t for _, t in self.slices)
        return sum(n for n, _ in self.slices) / seconds if seconds > 0 else None

    @property
    def cpu_us_per_op(self) -> float | None:
        ops = sum(n for n, _ in self.slices)
        return self.cpu_seconds / ops * 1e6 if ops else None

    @property
    def spread(self) -> tuple[float, float] | None:
        """Slowest and fastest slice rate: how steady the figure was."""
        rates = [n / t for n, t in self.slices if t > 0]
        return (min(rates), max(rates)) if rates else None


Op = Callable[[Contender, int, str], Awaitable[int]]


async def measure(
    contenders: list[Contender],
    op: Op,
    settings: Settings,
    tag: str,
    warm: int = 20,
    min_ops: int | None = None,
    slices: int | None = None,
) -> dict[str, Measurement]:
    """Warm up and calibrate each contender, then run the slices in rotation.

    ``op(contender, n, key)`` performs about ``n`` operations and returns how many it did; ``key``
    is fresh for every call. A slice's ``n`` comes from a timed calibration run after the warm-up;
    ``min_ops`` (default ``settings.min_ops``) is the least a slice does; ``slices`` overrides the
    count for operations that take seconds each.
    """
    floor = settings.min_ops if min_ops is None else min_ops
    results: dict[str, Measurement] = {c.name: Measurement() for c in contenders}
    sizes: dict[str, int] = {}
    for c in contenders:
        try:
            await op(c, warm, f"{tag}-warm")
            t0 = time.perf_counter()
            done = await op(c, warm, f"{tag}-calibrate")
            elapsed = time.perf_counter() - t0
        except NotSupported as exc:
            results[c.name].skipped = str(exc)
            continue
        except Exception as exc:
            results[c.name].error = f"{type(exc).__name__}: {exc}"
            continue
        estimate = done / max(elapsed, 1e-6)
        sizes[c.name] = int(min(settings.max_ops, max(floor, estimate * settings.slice_seconds)))
    for i in range(settings.slices if slices is None else slices):
        for c in contenders:
            if c.name not in sizes or results[c.name].error:
                continue
            try:
                cpu0, t0 = time.process_time(), time.perf_counter()
                done = await op(c, sizes[c.name], f"{tag}-s{i}")
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            except Exception as exc:
                results[c.name].error = f"{type(exc).__name__}: {exc}"
                continue
            results[c.name].slices.append((done, elapsed))
            results[c.name].cpu_seconds += cpu
    return results


async def table_bytes(dsn: str) -> dict[str, int]:
    """Bytes on disk of every user table in the database (heap, TOAST and indexes), by table."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT n.nspname || '.' || c.relname AS name, pg_total_relation_size(c.oid) AS bytes
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'm')
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg_toast%'
            """
        )
    finally:
        await conn.close()
    return {r["name"]: int(r["bytes"]) for r in rows}


def growth(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Per-table growth between two :func:`table_bytes` readings (tables that grew only)."""
    grown = {name: size - before.get(name, 0) for name, size in after.items()}
    return {name: delta for name, delta in grown.items() if delta > 0}
