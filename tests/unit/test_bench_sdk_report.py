"""The benchmark table judges ratios in the right direction (no timing here: only the arithmetic)."""

from __future__ import annotations

from bench.sdk_harness import Measurement
from bench.sdk_report import LANGGRAPH, OURS, RAW, Kind, Row, render


def row(kind: Kind, basis: str, threshold: float, ours: float, base: float) -> Row:
    r = Row("t", kind, basis, threshold, "target")
    r.results = {OURS: Measurement(slices=[(int(ours), 1.0)]), basis: Measurement(slices=[(int(base), 1.0)])}
    return r


def test_rate_at_or_above_threshold_passes() -> None:
    assert row("rate", RAW, 0.85, ours=85.0, base=100.0).verdict() == "PASS"
    assert row("rate", RAW, 0.85, ours=84.0, base=100.0).verdict() == "MISS"


def test_time_rows_compare_rates_so_slower_history_misses() -> None:
    # 2 calls/s against 5 calls/s is 2.5x the time: over the 2x budget.
    assert row("ms", RAW, 0.5, ours=2.0, base=5.0).verdict() == "MISS"
    assert row("ms", RAW, 0.5, ours=3.0, base=5.0).verdict() == "PASS"


def test_bytes_rows_pass_only_when_smaller() -> None:
    assert row("bytes", LANGGRAPH, 1.0, ours=10.0, base=40.0).verdict() == "PASS"
    assert row("bytes", LANGGRAPH, 1.0, ours=50.0, base=40.0).verdict() == "MISS"


def test_missing_sdk_is_neither_pass_nor_miss_and_the_reason_is_printed() -> None:
    r = Row("seq", "rate", RAW, 0.85, ">= 0.85x")
    r.results = {RAW: Measurement(slices=[(100, 1.0)]), OURS: Measurement(error="cannot import: boom")}
    table = render([r], {RAW: "raw", OURS: "ours"}, [RAW, OURS])
    assert r.verdict() == "—"
    assert "| error |" in table
    assert "ours: cannot import: boom" in table


def test_rate_is_total_ops_over_total_time_and_bytes_stay_fixed() -> None:
    m = Measurement(slices=[(100, 1.0), (300, 1.0)])
    assert m.rate == 200.0
    assert m.spread == (100.0, 300.0)
    assert Measurement(fixed=4096.0).rate == 4096.0


def test_ratio_pairs_slices_of_the_same_rotation() -> None:
    # A load burst slows one raw slice tenfold: the totals would say 3.6x, the paired median 0.9x.
    r = Row("seq", "rate", RAW, 0.85, ">= 0.85x")
    r.results = {
        RAW: Measurement(slices=[(100, 1.0), (100, 1.0), (100, 10.0)]),
        OURS: Measurement(slices=[(90, 1.0), (90, 1.0), (90, 1.0)]),
    }
    ratio = r.ratio(RAW)
    assert ratio is not None
    assert abs(ratio - 0.9) < 1e-9
    assert r.verdict() == "PASS"
