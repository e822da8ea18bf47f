"""Stop requests: SIGTERM/SIGINT turned into a flag a workload checks between steps.

Used through :meth:`StateManager.handle_signals <stratarouter_runtime.state.StateManager.handle_signals>`.
The handlers are plain :func:`signal.signal` handlers whose only work is setting a flag and waking the
event loop with :meth:`~asyncio.loop.call_soon_threadsafe`; they never run the workload's code and never
block. :func:`signal.signal` rather than :meth:`~asyncio.loop.add_signal_handler` because it returns the
handler it replaces, so :meth:`StopSignals.restore` puts back exactly what was there (the loop's method
resets to the default), and handlers an application registered with ``add_signal_handler`` keep running
beside these ones (the loop still hears of every signal through its wakeup fd).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterable
from types import FrameType

Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None
"""What :func:`signal.getsignal` returns: a callable, SIG_DFL, SIG_IGN, or None (set outside Python)."""

DEFAULT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """The stop flag of one StateManager and the signal handlers that set it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Handler] = {}
        self.signal: int | None = None
        """The first signal that asked for the stop (None: none yet)."""

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def installed(self) -> tuple[int, ...]:
        """The signals handled now (empty after :meth:`restore`)."""
        return tuple(self._previous)

    def install(self, signals: Iterable[int]) -> None:
        """Handle ``signals`` from now on (the running loop's thread must be the main thread)."""
        loop = asyncio.get_running_loop()  # RuntimeError outside a running loop
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError("the stop signals are already handled for another event loop")
        self._loop = loop
        for signum in signals:
            if signum in self._previous:
                continue  # installed already: keep the handler found the first time
            self._previous[signum] = signal.signal(signum, self._on_signal)  # ValueError off the main thread

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`; the flag stays as it is."""
        while self._previous:
            signum, previous = self._previous.popitem()
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._loop = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the flag is all there is to set
                loop.call_soon_threadsafe(self._event.set)

    async def wait(self, seconds: float | None) -> bool:
        """True once a stop is requested; False when ``seconds`` pass first (None: no limit)."""
        if self.requested:
            return True
        try:
            await asyncio.wait_for(self._event.wait(), seconds)
        except TimeoutError:
            return self.requested
        return True
