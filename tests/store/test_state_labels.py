"""What ``labels=None`` means on start: keep the stored labels; a dict, even an empty one, replaces them."""

from __future__ import annotations

import pytest

from stratarouter_runtime import StateManager
from stratarouter_runtime.state.errors import InvalidArgumentError


async def test_a_restart_without_labels_keeps_them(state: StateManager) -> None:
    await state.start_execution("run", labels={"team": "ml", "uid": "u-1"})
    restarted = await state.start_execution("run", attempt=2)
    assert restarted.labels == {"team": "ml", "uid": "u-1"}
    assert (await state.get_execution("run")).labels == {"team": "ml", "uid": "u-1"}


async def test_labels_given_replace_the_stored_ones(state: StateManager) -> None:
    await state.start_execution("run", labels={"team": "ml"})
    assert (await state.start_execution("run", labels={"team": "ops"})).labels == {"team": "ops"}
    assert (await state.start_execution("run", labels={})).labels == {}
    assert (await state.get_execution("run")).labels == {}


async def test_a_first_start_without_labels_has_none(state: StateManager) -> None:
    assert (await state.start_execution("fresh")).labels == {}


@pytest.mark.parametrize("labels", [{"team": 1}, {"team": "a\x00b"}, ["team"]])
async def test_bad_labels_are_refused_and_keep_the_stored_ones(state: StateManager, labels: object) -> None:
    await state.start_execution("run", labels={"team": "ml"})
    with pytest.raises(InvalidArgumentError):
        await state.start_execution("run", labels=labels)  # type: ignore[arg-type]
    assert (await state.get_execution("run")).labels == {"team": "ml"}
