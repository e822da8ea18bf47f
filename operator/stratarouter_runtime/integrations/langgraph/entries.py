"""One LangGraph checkpoint as one history entry of the thread's run: its JSON layout, both ways.

An entry holds the checkpoint with every channel value it has, its metadata, its parent's id and its
pending writes, so retention, snapshots and restores (which work on whole entries) never leave a
checkpoint that needs a pruned one. ``heads`` maps each namespace to the step of its newest checkpoint,
as of this write: the run's current state (``load``, its last write) holds the current map, which is
how the newest checkpoint of a namespace is found without reading the history.

The writes of the newest checkpoint are saved as the run's current state only (``open``: the entry
with its writes; a save, which PostgreSQL stores as a delta against the entry when compression is
on), and go into the history with the next checkpoint, as its ``parent_writes``: one history write
per checkpoint, not one more per task. A checkpoint's writes are its own ``writes`` plus its
child's ``parent_writes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from stratarouter_runtime.integrations.langgraph import values

Entry = dict[str, Any]

STEP = "step"
NS = "ns"
ID = "id"
PARENT = "parent"
CHECKPOINT = "checkpoint"
CHANNELS = "values"
METADATA = "metadata"
WRITES = "writes"
HEADS = "heads"
PARENT_WRITES = "parent_writes"
OPEN = "open"


def new_entry(
    step: int,
    ns: str,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    parent_id: str | None,
    heads: dict[str, int],
    serde: SerializerProtocol,
) -> Entry:
    """The entry of a checkpoint just put: no pending writes yet.

    Only channels named in ``channel_versions`` are kept: a channel dropped from it is gone from the
    checkpoint, as in LangGraph's own savers.
    """
    channel_values = checkpoint["channel_values"]
    versions = checkpoint["channel_versions"]
    rest = {k: v for k, v in checkpoint.items() if k != "channel_values"}
    entry: Entry = {
        STEP: step,
        NS: ns,
        ID: checkpoint["id"],
        CHECKPOINT: values.encode_fields(rest, serde),
        CHANNELS: values.encode_fields({ch: v for ch, v in channel_values.items() if ch in versions}, serde),
        METADATA: values.encode_fields(dict(metadata), serde),
        WRITES: [],
        HEADS: dict(heads),
    }
    if parent_id is not None:
        entry[PARENT] = parent_id
    return entry


def with_writes(
    entry: Entry,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
    serde: SerializerProtocol,
) -> Entry | None:
    """``entry`` with a task's writes added, or None when they change nothing.

    As in LangGraph's savers, a write is keyed by ``(task_id, idx)``: special channels (errors,
    interrupts, ...) have fixed negative indexes and replace what was there; a regular write that
    is already stored is kept as it was (a retried task does not duplicate its writes).
    """
    stored: dict[tuple[str, int], list[Any]] = {(w[0], w[1]): w for w in entry[WRITES]}
    replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
    changed = False
    for i, (channel, value) in enumerate(writes):
        key = (task_id, WRITES_IDX_MAP.get(channel, i))
        if key in stored and not replace:
            continue
        stored[key] = [task_id, key[1], channel, values.encode(value, serde), task_path]
        changed = True
    if not changed:
        return None
    return {**entry, WRITES: _ordered(stored)}


def with_child(entry: Entry, child: Entry | None) -> Entry:
    """``entry`` with the writes its child (the entry one step later, if it is its child) carries."""
    if (
        child is None
        or child.get(PARENT) != entry[ID]
        or child[NS] != entry[NS]
        or not child.get(PARENT_WRITES)
    ):
        return entry
    stored = {(w[0], w[1]): w for w in child[PARENT_WRITES]}
    stored.update({(w[0], w[1]): w for w in entry[WRITES]})
    return {**entry, WRITES: _ordered(stored)}


def _ordered(stored: dict[tuple[str, int], list[Any]]) -> list[list[Any]]:
    return sorted(stored.values(), key=lambda w: writes_sort_key(w[4], w[0], w[1]))


def config_of(thread_id: str, ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}


def metadata_of(entry: Entry, serde: SerializerProtocol) -> CheckpointMetadata:
    return cast(CheckpointMetadata, values.decode_fields(entry[METADATA], serde))


def to_tuple(thread_id: str, entry: Entry, serde: SerializerProtocol) -> CheckpointTuple:
    ns = entry[NS]
    checkpoint = cast(Checkpoint, values.decode_fields(entry[CHECKPOINT], serde))
    checkpoint["channel_values"] = values.decode_fields(entry[CHANNELS], serde)
    pending: list[PendingWrite] = [(w[0], w[2], values.decode(w[3], serde)) for w in entry[WRITES]]
    parent = entry.get(PARENT)
    return CheckpointTuple(
        config=config_of(thread_id, ns, entry[ID]),
        checkpoint=checkpoint,
        metadata=metadata_of(entry, serde),
        parent_config=None if parent is None else config_of(thread_id, ns, parent),
        pending_writes=pending,
    )
