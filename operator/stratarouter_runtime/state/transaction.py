"""``async with state.transaction() as txn``: several writes, all or nothing.

Writes are validated and encoded when called (bad input fails at once), kept in order, and
applied together on exit in one backend transaction (one PostgreSQL transaction). ``rollback()``
discards them; an exception inside the block discards them and propagates. Fencing errors surface
when the block exits, and then nothing of the transaction is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from stratarouter_runtime.state.backends.base import WriteOp
from stratarouter_runtime.state.errors import InvalidArgumentError, StateError

_MISSING: Any = object()

#: (execution_id, step, state, attempt, history) -> a validated, encoded write: the manager's own rules
MakeOp = Callable[[str, int, Any, int | None, bool | None], WriteOp]
#: applies the collected writes in one backend transaction
Commit = Callable[[Sequence[WriteOp]], Awaitable[None]]


def pick_state(data: Any, state_data: Any) -> Any:
    """Accept the state as ``data=`` (seed style) or ``state_data=``, not both."""
    if data is _MISSING and state_data is _MISSING:
        raise InvalidArgumentError("no state given: pass state_data= (or data=)")
    if data is not _MISSING and state_data is not _MISSING:
        raise InvalidArgumentError("pass the state as state_data= or data=, not both")
    return state_data if data is _MISSING else data


class Transaction:
    """Collects writes; committed by the ``async with`` exit. Not reusable."""

    def __init__(self, make_op: MakeOp, commit: Commit) -> None:
        self._make_op = make_op
        self._commit = commit
        self._ops: list[WriteOp] = []
        self._open = False
        self._done = False

    @property
    def pending(self) -> int:
        """How many writes will be committed on exit."""
        return len(self._ops)

    def _check(self) -> None:
        if not self._open or self._done:
            raise StateError("transaction is not open (use `async with state.transaction() as txn`)")

    async def save(
        self,
        execution_id: str,
        step: int,
        data: Any = _MISSING,
        *,
        state_data: Any = _MISSING,
        attempt: int | None = None,
    ) -> None:
        """Queue a ``save`` (the current state; history on interval steps)."""
        self._queue(execution_id, step, data, state_data, attempt, history=None)

    async def checkpoint(
        self,
        execution_id: str,
        step: int,
        data: Any = _MISSING,
        *,
        state_data: Any = _MISSING,
        attempt: int | None = None,
    ) -> None:
        """Queue a ``checkpoint`` (current state and a history entry)."""
        self._queue(execution_id, step, data, state_data, attempt, history=True)

    def _queue(
        self,
        execution_id: str,
        step: int,
        data: Any,
        state_data: Any,
        attempt: int | None,
        history: bool | None,
    ) -> None:
        self._check()
        value = pick_state(data, state_data)
        self._ops.append(self._make_op(execution_id, step, value, attempt, history))

    async def rollback(self) -> None:
        """Discard every queued write; the block then exits without writing."""
        self._ops.clear()
        self._done = True

    async def __aenter__(self) -> Transaction:
        if self._open:
            raise StateError("a Transaction can be entered only once")
        self._open = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        ops, self._ops = self._ops, []
        finished, self._done = self._done, True
        if exc_type is None and not finished and ops:
            await self._commit(ops)
