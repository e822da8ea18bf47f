"""Where a thread's checkpoints are in its run: the steps of namespaces' heads and of checkpoint ids.

A cache of what the store says, kept by one saver. Heads come from the run's current state (its
last-written entry); an id's step is checked against the entry read there (a stale step only costs a
history scan).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stratarouter_runtime.integrations.langgraph.entries import HEADS, ID, NS, OPEN, STEP, Entry


@dataclass
class ThreadIndex:
    heads: dict[str, int] = field(default_factory=dict)
    """Step of the newest checkpoint of each namespace."""
    steps: dict[tuple[str, str], int] = field(default_factory=dict)
    """Step of each known checkpoint, by (namespace, checkpoint id)."""
    top: int = -1
    """Highest step of the run; the next checkpoint is written at ``top + 1``."""
    newest_id: str | None = None
    """Checkpoint id at ``top``, when known."""
    last: tuple[int, Entry] | None = None
    """The entry this saver wrote or read last, with its step: the usual target of ``aput_writes``."""
    open: Entry | None = None
    """The newest checkpoint's entry with writes that only the run's current state holds so far."""

    @classmethod
    def from_current(cls, entry: Entry) -> ThreadIndex:
        """The index as the run's current state, its last-written entry, describes it."""
        step = entry[STEP]
        index = cls(heads=dict(entry[HEADS]), top=max([step, *entry[HEADS].values()]))
        index.note(step, entry)
        index.open = entry if entry.get(OPEN) else None
        return index

    def note(self, step: int, entry: Entry) -> None:
        """Remember where ``entry`` is, and that it is the entry at hand."""
        self.steps[(entry[NS], entry[ID])] = step
        self.last = (step, entry)
        if step >= self.top:
            self.top, self.newest_id = step, entry[ID]

    def is_newer(self, checkpoint_id: str) -> bool:
        """Whether ``checkpoint_id`` sorts after the newest checkpoint's (LangGraph's ids are uuid6:
        later ones sort higher), or the thread has none known."""
        return self.newest_id is None or checkpoint_id > self.newest_id

    def cached(self, step: int) -> Entry | None:
        return self.last[1] if self.last is not None and self.last[0] == step else None
