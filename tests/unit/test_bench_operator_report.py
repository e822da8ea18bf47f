"""bench-operator's judgement of status lag against the patch budget's promise, and bench.api_path's
profile summary: pure functions, no cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.api_path import bucket_of, summarise, work_of
from bench.operator import LAG_TOLERANCE_SECONDS, LAG_TOLERANCE_SHARE, ScaleResult, counts_arg, render_scale


def test_the_promise_is_executions_over_budget_and_never_below_the_interval() -> None:
    assert ScaleResult(executions=1000, budget=50.0, interval=1.0).promise() == 20.0
    assert ScaleResult(executions=300, budget=50.0, interval=1.0).promise() == 6.0
    assert ScaleResult(executions=20, budget=50.0, interval=1.0).promise() == 1.0
    r = ScaleResult(executions=1000, budget=50.0)
    assert r.allowed_p99() == pytest.approx(20 * (1 + LAG_TOLERANCE_SHARE) + LAG_TOLERANCE_SECONDS)
    assert r.allowed_p50() == pytest.approx(10 * (1 + LAG_TOLERANCE_SHARE) + LAG_TOLERANCE_SECONDS)
    assert r.grace() > r.allowed_p99()


def lagging(executions: int, lags: list[float], unseen: int = 0) -> ScaleResult:
    return ScaleResult(
        executions=executions, checkpoints=len(lags), latencies=[0.01] * len(lags), lags=lags, unseen=unseen
    )


def test_the_lag_verdict_follows_the_promise() -> None:
    within = lagging(1000, [i / 100 * 20 for i in range(100)])  # evenly 0..20 s: as promised
    late = lagging(1000, [30.0] * 100)
    unseen = lagging(300, [1.0] * 100, unseen=1)  # one checkpoint never shown: infinitely late
    rows = [
        line for line in render_scale([within, late, unseen]) if "never shown" in line or "| 20.0 s (" in line
    ]
    assert ["PASS" in row for row in rows] == [True, False, False]


def test_counts() -> None:
    assert counts_arg("300,1000") == [300, 1000]
    assert counts_arg("1000") == [1000]


def test_profile_samples_go_to_the_callback_the_loop_ran(tmp_path: Path) -> None:
    root = "_run_module_as_main (<frozen runpy>:198);run (kopf/_core/reactor/running.py:81)"
    loop = "BaseEventLoop._run_once (asyncio/base_events.py:1922)"
    cb = "Handle._run (asyncio/events.py:80)"
    write = "_write (stratarouter_runtime/operator/api/server.py:170)"
    encode = "StateCodec.encode (stratarouter_runtime/state/codec.py:146)"
    stacks = {
        f"{root};{loop};{cb};{write};{encode}": 30,  # the codec, inside our handler
        f"{root};{loop};{cb};{write}": 10,
        f"{root};{loop}": 5,  # the loop between callbacks: not kopf's, though kopf.run is outside it
        f"{root};{loop};EpollSelector.select (selectors.py:468)": 50,  # waiting: left out
    }
    frames = f"{root};{loop}".split(";")
    assert bucket_of(work_of(frames)) == "asyncio event loop"
    assert bucket_of(work_of(f"{root};{loop};{cb};{write};{encode}".split(";"))).startswith("codec")
    path = tmp_path / "stacks.raw"
    path.write_text("".join(f"{stack} {n}\n" for stack, n in stacks.items()))
    text = "\n".join(summarise(path, checkpoints=100, cpu_seconds=0.045))
    assert "45 samples running (50 more waiting in epoll" in text
    assert "| codec encode (orjson.dumps, sha256) | 0.300 | 67% |" in text  # 30 of 45 samples of 0.45 ms
