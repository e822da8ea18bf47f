"""Checkpoint retention: which history steps a write prunes (the memory backend's rule, and the
one the PostgreSQL statement implements in SQL)."""

from __future__ import annotations

from collections.abc import Iterable


def steps_to_prune(existing: Iterable[int], new_step: int, keep: int | None) -> list[int]:
    """Steps to delete after writing ``new_step`` when keeping ``keep`` checkpoints.

    The checkpoint just written always stays; of the others, the ``keep - 1`` with the highest
    steps stay too. ``keep=None`` keeps everything.
    """
    if keep is None:
        return []
    if keep < 1:
        raise ValueError(f"retention must keep at least one checkpoint, got {keep}")
    others = sorted((s for s in existing if s != new_step), reverse=True)
    return sorted(others[keep - 1 :])


def is_history_step(step: int, interval: int) -> bool:
    """Whether ``save(step)`` also writes a history checkpoint: every ``interval`` steps, from 0."""
    return step % interval == 0
