"""Per-Execution wake-up flags: pod and spec events poke the Execution's reconcile loop (no polling)."""

from __future__ import annotations

import asyncio
import contextlib

Key = tuple[str, str]


class Wakeups:
    """One ``asyncio.Event`` per (namespace, name); a poke before the loop starts is not lost."""

    def __init__(self) -> None:
        self._events: dict[Key, asyncio.Event] = {}

    def _event(self, key: Key) -> asyncio.Event:
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        return event

    def poke(self, namespace: str, name: str) -> None:
        """Ask the loop of ``namespace/name`` to reconcile now."""
        self._event((namespace, name)).set()

    async def wait(self, namespace: str, name: str, seconds: float | None) -> bool:
        """Wait for a poke or ``seconds`` (None = forever); True when poked. Clears the flag."""
        event = self._event((namespace, name))
        if not event.is_set() and seconds is not None and seconds <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        poked = event.is_set()
        event.clear()
        return poked

    def forget(self, namespace: str, name: str) -> None:
        """Drop the flag of a deleted Execution."""
        self._events.pop((namespace, name), None)
