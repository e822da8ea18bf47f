"""Where pending writes live (see integrations.langgraph.entries), seen from a fresh saver each time:
the newest checkpoint's in the run's current state, an older one's carried by its child entry."""

from __future__ import annotations

from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_metadata

from stratarouter_runtime.integrations.langgraph import StrataCheckpointSaver
from tests.integrations.conftest import MakeState

THREAD = {"configurable": {"thread_id": "w", "checkpoint_ns": ""}}


def writes_of(tup: object) -> list[tuple[str, str, object]]:
    return list(getattr(tup, "pending_writes", None) or [])


async def test_writes_survive_the_process_that_made_them(make_state: MakeState) -> None:
    first = StrataCheckpointSaver(make_state())
    one = await first.aput(THREAD, generate_checkpoint(), generate_metadata(step=0), {})
    await first.aput_writes(one, [("ch", "from task a")], "task-a")

    second = StrataCheckpointSaver(make_state())  # a new process: only the store knows the writes
    latest = await second.aget_tuple(THREAD)
    assert latest is not None
    assert writes_of(latest) == [("task-a", "ch", "from task a")]
    two = await second.aput(one, generate_checkpoint(), generate_metadata(step=1), {})
    await second.aput_writes(two, [("ch", "from task b")], "task-b")

    third = StrataCheckpointSaver(make_state())
    listed = [t async for t in third.alist(THREAD)]
    assert [writes_of(t) for t in listed] == [
        [("task-b", "ch", "from task b")],
        [("task-a", "ch", "from task a")],
    ]
    older = await third.aget_tuple(one)
    assert writes_of(older) == [("task-a", "ch", "from task a")]


async def test_a_snapshot_keeps_the_newest_checkpoints_writes(make_state: MakeState) -> None:
    state = make_state()
    saver = StrataCheckpointSaver(state)
    one = await saver.aput(THREAD, generate_checkpoint(), generate_metadata(step=0), {})
    await saver.aput_writes(one, [("ch", "kept")], "task-a")
    await state.create_snapshot(saver.run_id("w"), "with-writes")
    await saver.aput(one, generate_checkpoint(), generate_metadata(step=1), {})

    await state.restore_snapshot(saver.run_id("w"), "with-writes")
    restored = await StrataCheckpointSaver(make_state()).aget_tuple(THREAD)
    assert restored is not None
    assert restored.config["configurable"]["checkpoint_id"] == one["configurable"]["checkpoint_id"]
    assert writes_of(restored) == [("task-a", "ch", "kept")]
