"""``make bench-sdk``: the SDK against raw asyncpg, LangGraph's Postgres saver and DBOS, on one server.

Starts a throwaway PostgreSQL (fsync on), gives every contender a fresh database of its own on it,
runs the storage workload and then the throughput/latency benchmarks in rotating slices, and
prints a Markdown table (also written to ``bench/results/sdk.md``). Numbers are printed, never asserted.

    python -m bench.sdk [--seconds 6] [--quick] [--only raw,strata] [--dsn URL]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from bench.sdk_harness import (
    WRITERS,
    Contender,
    Measurement,
    NotSupported,
    Settings,
    growth,
    measure,
    table_bytes,
)
from bench.sdk_report import LANGGRAPH, OURS, RAW, Row, render

BATCH_SIZE = 100
RESULTS = Path(__file__).parent / "results" / "sdk.md"
ORDER = [RAW, OURS, LANGGRAPH, "dbos"]
LABELS = {
    RAW: "raw asyncpg",
    OURS: "StrataRouter",
    LANGGRAPH: "LangGraph",
    "dbos": "DBOS",
}


def build_contenders(only: set[str] | None) -> tuple[list[Contender], dict[str, str]]:
    """Every contender that imports; the others come back as name -> reason (shown in the table)."""
    factories: dict[str, Callable[[], Contender]] = {}
    broken: dict[str, str] = {}

    def load(name: str, module: str, attr: str, *args: object) -> None:
        if only is not None and name not in only:
            return
        try:
            cls = getattr(importlib.import_module(module), attr)
        except Exception as exc:  # an incomplete SDK or a missing extra must not stop the others
            broken[name] = f"cannot import: {type(exc).__name__}: {exc}"
            return
        factories[name] = lambda: cls(*args)

    load(RAW, "bench.peers.raw", "RawAsyncpg", BATCH_SIZE)
    load(OURS, "bench.peers.strata", "StrataSdk", BATCH_SIZE)
    load(LANGGRAPH, "bench.peers.langgraph_saver", "LangGraphSaver")
    load("dbos", "bench.peers.dbos_steps", "DbosSteps")
    return [factories[n]() for n in ORDER if n in factories], broken


async def open_all(server_dsn: str, contenders: list[Contender], broken: dict[str, str]) -> list[Contender]:
    """A fresh database per contender; one that fails to open is reported, not fatal."""
    admin = await asyncpg.connect(server_dsn)
    opened: list[Contender] = []
    try:
        for c in contenders:
            db = f"bench_{c.name}"
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{db}"')
            try:
                await c.open(server_dsn.rsplit("/", 1)[0] + f"/{db}")
            except Exception as exc:
                broken[c.name] = f"cannot open: {type(exc).__name__}: {exc}"
                continue
            opened.append(c)
    finally:
        await admin.close()
    return opened


def broken_row(row: Row, broken: dict[str, str]) -> Row:
    for name, reason in broken.items():
        row.results[name] = Measurement(error=reason)
    return row


async def storage(
    contenders: list[Contender], dsn_of: dict[str, str], steps: int
) -> tuple[dict[str, Measurement], str]:
    results: dict[str, Measurement] = {}
    notes: list[str] = []
    for c in contenders:
        before = await table_bytes(dsn_of[c.name])
        try:
            t0 = time.perf_counter()
            what = await c.storage_run("transcript", steps)
            took = time.perf_counter() - t0
        except NotSupported as exc:
            results[c.name] = Measurement(skipped=str(exc))
            continue
        except Exception as exc:
            results[c.name] = Measurement(error=f"{type(exc).__name__}: {exc}")
            continue
        grown = growth(before, await table_bytes(dsn_of[c.name]))
        results[c.name] = Measurement(fixed=float(sum(grown.values())))
        top = sorted(grown.items(), key=lambda kv: -kv[1])[:3]
        where = ", ".join(f"{name.removeprefix('public.')} {size / 2**20:.2f} MiB" for name, size in top)
        notes.append(f"{LABELS[c.name]}: {what} ({took:.1f} s; {where})")
    return results, "; ".join(notes)


GRAPH_TURNS = 10


async def graph(
    contenders: list[Contender], dsn_of: dict[str, str], steps: int
) -> tuple[dict[str, Measurement], dict[str, Measurement]]:
    """The same LangGraph graph on each contender's checkpointer: time per step and bytes it left.

    The thread grows in ``GRAPH_TURNS`` turns that rotate through the contenders, so each turn is a
    slice paired with the others' turn at the same length of transcript.
    """
    per_step: dict[str, Measurement] = {c.name: Measurement() for c in contenders}
    before = {c.name: await table_bytes(dsn_of[c.name]) for c in contenders}
    per_turn = max(1, steps // GRAPH_TURNS)
    for turn in range(1, GRAPH_TURNS + 1):
        for c in contenders:
            m = per_step[c.name]
            if m.error or m.skipped:
                continue
            cpu0 = time.process_time()
            try:
                took = await c.graph_run("graph", turn * per_turn)
            except NotSupported as exc:
                m.skipped = str(exc)
                continue
            except Exception as exc:
                m.error = f"{type(exc).__name__}: {exc}"
                continue
            m.slices.append((per_turn, took))
            m.cpu_seconds += time.process_time() - cpu0
    on_disk: dict[str, Measurement] = {}
    for c in contenders:
        m = per_step[c.name]
        if m.error or m.skipped:
            on_disk[c.name] = Measurement(error=m.error, skipped=m.skipped)
            continue
        grown = growth(before[c.name], await table_bytes(dsn_of[c.name]))
        on_disk[c.name] = Measurement(fixed=float(sum(grown.values())))
    return per_step, on_disk


async def run(server_dsn: str, settings: Settings, only: set[str] | None) -> tuple[str, list[str]]:
    contenders, broken = build_contenders(only)
    contenders = await open_all(server_dsn, contenders, broken)
    dsn_of = {c.name: server_dsn.rsplit("/", 1)[0] + f"/bench_{c.name}" for c in contenders}
    rows: list[Row] = []
    log: list[str] = []

    def step(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        log.append(line)
        print(line, file=sys.stderr, flush=True)

    try:
        step("storage: 1,000-step growing transcript")
        results, note = await storage(contenders, dsn_of, settings.storage_steps)
        storage_row = Row(
            f"Storage after {settings.storage_steps:,} transcript steps (bytes on disk)",
            "bytes",
            LANGGRAPH,
            1.0,
            "< 1x LangGraph",
            results,
            note,
        )

        async def seq(c: Contender, n: int, key: str) -> int:
            await c.seq_writes(key, n)
            return n

        async def conc(c: Contender, n: int, key: str) -> int:
            per = max(1, n // WRITERS)
            await c.concurrent_writes(key, WRITERS, per)
            return per * WRITERS

        async def batched(c: Contender, n: int, key: str) -> int:
            await c.batched_writes(key, n)
            return n

        async def loads(c: Contender, n: int, key: str) -> int:
            await c.loads("load", n)
            return n

        async def history(c: Contender, n: int, key: str) -> int:
            for _ in range(n):
                got = await c.history("history")
                if got != settings.history_rows:
                    raise AssertionError(f"history returned {got} checkpoints, wrote {settings.history_rows}")
            return n

        step("sequential durable writes")
        rows.append(
            Row(
                "Sequential durable checkpoint (writes/s)",
                "rate",
                RAW,
                0.85,
                ">= 0.85x raw INSERT",
                await measure(contenders, seq, settings, "seq"),
            )
        )
        step(f"{WRITERS} concurrent writers")
        rows.append(
            Row(
                f"{WRITERS} concurrent writers (writes/s)",
                "rate",
                RAW,
                0.8,
                f">= 0.8x raw, {WRITERS} conns",
                await measure(contenders, conc, settings, "conc", warm=WRITERS * 4),
            )
        )
        step("batched writes")
        rows.append(
            Row(
                f"Batched writes, batch {BATCH_SIZE} (writes/s)",
                "rate",
                RAW,
                0.7,
                ">= 0.7x raw COPY",
                await measure(contenders, batched, settings, "batch", warm=BATCH_SIZE * 2),
            )
        )

        step("load(): preparing")
        load_ready = await prepare(contenders, lambda c: c.prepare_load("load"), verify_load=True)
        step("load() of the newest state")
        rows.append(
            Row(
                "load() newest state (reads/s)",
                "rate",
                RAW,
                0.8,
                ">= 0.8x raw PK SELECT",
                merge(load_ready, await measure(list_ok(contenders, load_ready), loads, settings, "load")),
            )
        )

        step(f"get_history(): writing {settings.history_rows:,} checkpoints each")
        hist_ready = await prepare(contenders, lambda c: c.prepare_history("history", settings.history_rows))
        step("get_history() of the whole history")
        rows.append(
            Row(
                f"get_history() of {settings.history_rows:,} checkpoints (per call)",
                "ms",
                RAW,
                0.5,
                "<= 2x raw SELECT time",
                merge(
                    hist_ready,
                    await measure(
                        list_ok(contenders, hist_ready),
                        history,
                        settings,
                        "hist",
                        warm=1,
                        min_ops=1,
                        slices=4,
                    ),
                ),
            )
        )
        rows.append(storage_row)

        step(f"LangGraph graph: {settings.storage_steps:,} steps on each checkpointer")
        per_step, on_disk = await graph(contenders, dsn_of, settings.storage_steps)
        graph_note = (
            f"one thread, one node appending the transcript's next message per super-step, in {GRAPH_TURNS} "
            'turns taken in rotation, durability="sync"; ours: StrataCheckpointSaver, zstd compression; '
            "LangGraph: AsyncPostgresSaver"
        )
        rows.append(
            Row(
                f"LangGraph graph, {settings.storage_steps:,} steps (time per step)",
                "ms",
                LANGGRAPH,
                1.0,
                "<= 1x LangGraph time",
                per_step,
                graph_note,
            )
        )
        rows.append(
            Row(
                f"LangGraph graph, bytes on disk after {settings.storage_steps:,} steps",
                "bytes",
                LANGGRAPH,
                1.0,
                "< 1x LangGraph",
                on_disk,
            )
        )
    finally:
        for c in contenders:
            try:
                await c.close()
            except Exception as exc:
                print(f"closing {c.name}: {exc}", file=sys.stderr)
    for row in rows:
        broken_row(row, broken)
    labels = dict(LABELS)
    return render(rows, labels, ORDER), log


async def prepare(
    contenders: list[Contender],
    prep: Callable[[Contender], Awaitable[object]],
    verify_load: bool = False,
) -> dict[str, Measurement]:
    """Run an untimed preparation; contenders that lack the operation or fail it get a marked result."""
    out: dict[str, Measurement] = {}
    for c in contenders:
        try:
            expected = await prep(c)
            if verify_load:
                got = await c.loads("load", 1)
                if got != expected:
                    raise AssertionError("load() did not return the newest state written")
        except NotSupported as exc:
            out[c.name] = Measurement(skipped=str(exc))
        except Exception as exc:
            out[c.name] = Measurement(error=f"{type(exc).__name__}: {exc}")
    return out


def list_ok(contenders: list[Contender], failed: dict[str, Measurement]) -> list[Contender]:
    return [c for c in contenders if c.name not in failed]


def merge(first: dict[str, Measurement], second: dict[str, Measurement]) -> dict[str, Measurement]:
    return {**second, **first}


async def server_facts(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        fsync = await conn.fetchval("SHOW fsync")
        sync_commit = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    return f"PostgreSQL {version}, fsync={fsync}, synchronous_commit={sync_commit}"


def header(settings: Settings, facts: str, argv: list[str]) -> str:
    cmd = " ".join(["python -m bench.sdk", *argv]) if argv else "make bench-sdk"
    return "\n".join(
        [
            "# SDK benchmark",
            "",
            f"`{cmd}` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {facts}; client and server on the same machine.",
            f"Each figure is total operations over total time of about {settings.seconds:g} s per "
            f"contender, in slices of about {settings.slice_seconds:g} s rotating through the contenders, "
            "after a warm-up; every contender in a fresh database of its own on the same server; "
            "state ≈ 1 KiB of JSON. Ratios of rates are the median of per-rotation ratios (slices a "
            "moment apart), so bursts of load from other processes cancel out.",
            "",
            "",
        ]
    )


def parse(argv: list[str]) -> tuple[argparse.Namespace, Settings]:
    p = argparse.ArgumentParser(prog="python -m bench.sdk", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=6.0, help="timed work per contender per benchmark")
    p.add_argument("--quick", action="store_true", help="smoke run: short slices, small storage run")
    p.add_argument("--only", help="comma-separated contenders: " + ",".join(ORDER))
    p.add_argument("--dsn", help="use this server (admin DSN) instead of starting a throwaway one")
    p.add_argument(
        "--out", type=Path, help=f"where to write the Markdown table (default {RESULTS}, none with --quick)"
    )
    args = p.parse_args(argv)
    settings = Settings(seconds=args.seconds)
    if args.quick:
        settings = Settings(seconds=0.5, slice_seconds=0.25, storage_steps=100, history_rows=200)
    return args, settings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, settings = parse(argv)
    only = set(args.only.split(",")) if args.only else None
    server = None
    dsn = args.dsn
    if dsn is None:
        from stratarouter_dev.postgres import PostgresServer

        server = PostgresServer.start()
        dsn = server.dsn
    try:
        started = time.perf_counter()
        facts = asyncio.run(server_facts(dsn))
        table, _ = asyncio.run(run(dsn, settings, only))
        text = (
            header(settings, facts, argv) + table + f"\n\nWhole run: {time.perf_counter() - started:.0f} s.\n"
        )
    finally:
        if server is not None:
            server.stop()
    print(text)
    out: Path | None = args.out or (None if args.quick else RESULTS)
    if out is not None:  # a --quick smoke run never overwrites the published table
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
