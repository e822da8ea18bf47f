"""The operator's alerting metrics without a store or a cluster: terminal phases counted once each, and
a store probe that cannot reach its store reports so within its timeout instead of hanging."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

from stratarouter_runtime.operator import metrics
from stratarouter_runtime.operator.store_size import StoreSize


def finished(phase: str, reason: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "stratarouter_executions_finished_total", {"phase": phase, "reason": reason}
        )
        or 0.0
    )


def test_entering_a_terminal_phase_counts_once_by_phase_and_reason() -> None:
    failed = finished("Failed", "BackoffLimitExceeded")
    succeeded = finished("Succeeded", "Succeeded")
    metrics.note_phase("Recovering", {"phase": "Failed", "reason": "BackoffLimitExceeded"})
    assert finished("Failed", "BackoffLimitExceeded") == failed + 1
    # the same status patched again (a retried patch, a later condition update) is no new ending
    metrics.note_phase("Failed", {"phase": "Failed", "reason": "BackoffLimitExceeded"})
    assert finished("Failed", "BackoffLimitExceeded") == failed + 1
    metrics.note_phase("Running", {"phase": "Succeeded", "reason": "Succeeded"})
    assert finished("Succeeded", "Succeeded") == succeeded + 1


def test_non_terminal_phases_count_nothing() -> None:
    before = sum(
        s.value
        for family in metrics.REGISTRY.collect()
        if family.name == "stratarouter_executions_finished"
        for s in family.samples
        if s.name.endswith("_total")
    )
    for old, new in [(None, "Pending"), ("Pending", "Running"), ("Running", "Recovering"), ("Running", None)]:
        metrics.note_phase(old, {"phase": new, "reason": "X"})
    after = sum(
        s.value
        for family in metrics.REGISTRY.collect()
        if family.name == "stratarouter_executions_finished"
        for s in family.samples
        if s.name.endswith("_total")
    )
    assert after == before


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_store_sets_up_0_and_counts_the_failure() -> None:
    metrics.STORE_UP.set(1)
    failures = metrics.REGISTRY.get_sample_value("stratarouter_store_probe_failures_total") or 0.0
    probe = StoreSize(f"postgresql://u:p@127.0.0.1:{closed_port()}/db", "stratarouter", timeout=2.0)
    try:
        assert await probe.sample() is None
    finally:
        await probe.close()
    assert metrics.REGISTRY.get_sample_value("stratarouter_store_up") == 0
    assert metrics.REGISTRY.get_sample_value("stratarouter_store_probe_failures_total") == failures + 1


async def test_a_store_that_never_answers_fails_the_probe_within_its_timeout() -> None:
    """A server that accepts and then says nothing (a blackholed PostgreSQL) must not hang the probe."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    probe = StoreSize(f"postgresql://u:p@127.0.0.1:{port}/db", "stratarouter", timeout=0.5)
    try:
        started = time.monotonic()
        assert await probe.sample() is None
        assert time.monotonic() - started < 2.0
        assert accepted, "the probe never connected: this test did not test the timeout"
        assert metrics.REGISTRY.get_sample_value("stratarouter_store_up") == 0
    finally:
        await probe.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_the_background_loop_probes_at_start_and_stops_on_close() -> None:
    failures = metrics.REGISTRY.get_sample_value("stratarouter_store_probe_failures_total") or 0.0
    probe = StoreSize(f"postgresql://u:p@127.0.0.1:{closed_port()}/db", "s", interval=0.05, timeout=1.0)
    probe.start()
    deadline = time.monotonic() + 5
    while (metrics.REGISTRY.get_sample_value("stratarouter_store_probe_failures_total") or 0) < failures + 2:
        assert time.monotonic() < deadline, "the loop did not probe twice"
        await asyncio.sleep(0.02)
    await probe.close()
    stopped = metrics.REGISTRY.get_sample_value("stratarouter_store_probe_failures_total")
    await asyncio.sleep(0.2)
    assert metrics.REGISTRY.get_sample_value("stratarouter_store_probe_failures_total") == stopped


def test_the_alerted_counters_are_exported_at_0_before_their_first_event() -> None:
    """Prometheus sees no increase in a series whose first sample is 1: the alerts' children must exist."""
    code = (
        "from stratarouter_runtime.operator import metrics as m\n"
        "v = m.REGISTRY.get_sample_value\n"
        "labels = {'phase': 'Failed', 'reason': 'BackoffLimitExceeded'}\n"
        "print(v('stratarouter_executions_finished_total', labels))\n"
        "families = [f for f in m.REGISTRY.collect() if f.name == 'stratarouter_recoveries']\n"
        "print(sorted(s.labels['reason'] for f in families for s in f.samples if s.name[-6:] == '_total'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["0.0", "['Evicted', 'ExitCode', 'NodeLost', 'OOMKilled', 'PodDeleted']"]
