"""StateManager.handle_signals: real signals sent to this very process, the in-memory store, no I/O.

Each test first installs a recording handler of its own as the "previous" one, so a signal that the
SDK failed to catch is recorded (and asserted on) instead of ending the test run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from stratarouter_runtime import StateManager
from stratarouter_runtime.state.errors import StateError


class Recorder:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.seen.append(signum)


@pytest.fixture
def previous() -> Iterator[Recorder]:
    """A handler of the test's own on SIGTERM, SIGINT and SIGUSR1; the real ones come back afterwards."""
    recorder = Recorder()
    saved = {s: signal.signal(s, recorder) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    yield recorder
    for signum, handler in saved.items():
        signal.signal(signum, handler)


async def settle() -> None:
    """Let the interpreter run pending signal handlers and the loop its callbacks."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_sigterm_sets_the_flag_and_close_restores_the_previous_handler(previous: Recorder) -> None:
    async with StateManager() as state:
        state.handle_signals()
        assert signal.getsignal(signal.SIGTERM) is not previous
        assert not state.stop_requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert await state.wait_for_stop(seconds=5)
        assert state.stop_requested
        assert previous.seen == []  # handled by the SDK only: the process was not asked to end
        await state.checkpoint("job", 3, {"total": 6})  # a last checkpoint still works
    assert state.stop_requested  # the flag outlives close()
    assert signal.getsignal(signal.SIGTERM) is previous
    assert signal.getsignal(signal.SIGINT) is previous
    os.kill(os.getpid(), signal.SIGTERM)
    await settle()
    assert previous.seen == [signal.SIGTERM]  # after close, SIGTERM reaches the old handler again


async def test_sigint_too_and_wait_for_stop_times_out_without_a_signal(previous: Recorder) -> None:
    async with StateManager() as state:
        state.handle_signals()
        state.handle_signals()  # again: harmless, and still restores the first handlers
        assert await state.wait_for_stop(seconds=0.05) is False
        assert await state.wait_for_stop(seconds=0) is False
        os.kill(os.getpid(), signal.SIGINT)
        assert await state.wait_for_stop(seconds=5)
        assert await state.wait_for_stop(seconds=0)  # stays requested
    assert previous.seen == []
    assert signal.getsignal(signal.SIGINT) is previous


async def test_wait_for_stop_is_woken_by_the_signal(previous: Recorder) -> None:
    async with StateManager() as state:
        state.handle_signals()
        loop = asyncio.get_running_loop()
        started = loop.time()
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        assert await state.wait_for_stop(seconds=30)
        assert loop.time() - started < 5  # woken by the signal, not by the timeout


async def test_only_the_signals_asked_for(previous: Recorder) -> None:
    async with StateManager() as state:
        state.handle_signals([signal.SIGUSR1])
        assert signal.getsignal(signal.SIGTERM) is previous
        os.kill(os.getpid(), signal.SIGUSR1)
        assert await state.wait_for_stop(seconds=5)
    assert signal.getsignal(signal.SIGUSR1) is previous


async def test_a_loop_signal_handler_keeps_working_and_comes_back(previous: Recorder) -> None:
    loop = asyncio.get_running_loop()
    heard = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, heard.set)
    try:
        loops_own = signal.getsignal(signal.SIGUSR1)
        async with StateManager() as state:
            state.handle_signals([signal.SIGUSR1])
            os.kill(os.getpid(), signal.SIGUSR1)
            assert await state.wait_for_stop(seconds=5)
            await asyncio.wait_for(heard.wait(), 5)  # the application's handler ran as well
        assert signal.getsignal(signal.SIGUSR1) is loops_own
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)


async def test_closed_manager_refuses(previous: Recorder) -> None:
    state = StateManager()
    await state.close()
    with pytest.raises(StateError, match="closed"):
        state.handle_signals()
    assert signal.getsignal(signal.SIGTERM) is previous


def test_outside_the_main_thread_is_refused_with_nothing_changed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    errors: list[BaseException] = []

    async def in_thread() -> None:
        async with StateManager() as state:
            state.handle_signals()

    def run() -> None:
        try:
            asyncio.run(in_thread())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=10)
    assert [type(e) for e in errors] == [ValueError], errors
    assert signal.getsignal(signal.SIGTERM) is before


def test_outside_a_running_loop_is_refused() -> None:
    state = StateManager()
    with pytest.raises(RuntimeError, match="no running event loop"):
        state.handle_signals()
