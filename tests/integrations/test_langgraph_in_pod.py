"""The saver as a pod uses it: on the operator's checkpoint API (its own process, the operator's code on
the memory store, the pod's token), the thread being the Execution's own run ``ns/run``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stratarouter_runtime import StateError, StateManager
from stratarouter_runtime.integrations.langgraph import StrataCheckpointSaver
from tests.fixtures.api_child import TOKEN, Child
from tests.integrations.counting_graph import counting_graph, thread

RUN = "ns/run"
START: Any = {"target": 8, "count": 0, "log": []}


class Crash(Exception):
    """The pod dying in the middle of a step."""


def pod_state(child: Child, token: Path) -> StateManager:
    return StateManager(
        backend="http",
        api_url=f"http://127.0.0.1:{child.port}",
        extra={"token_file": str(token), "execution_id": RUN},
    )


async def test_a_graph_resumes_through_the_checkpoint_api(
    start_child: Callable[..., Child], tmp_path: Path
) -> None:
    child = start_child()
    token = tmp_path / "token"
    token.write_text(TOKEN)

    async with pod_state(child, token) as state:
        graph = counting_graph(StrataCheckpointSaver(state, run_prefix=""))
        with pytest.raises(Crash):  # noqa: PT012  (the crash comes from inside the loop)
            async for values in graph.astream(START, thread(RUN), stream_mode="values"):
                if values["count"] == 4:
                    raise Crash  # the pod dies after its fourth step

    async with pod_state(child, token) as state:  # the next pod
        saver = StrataCheckpointSaver(state, run_prefix="")
        graph = counting_graph(saver)
        resumed = await graph.aget_state(thread(RUN))
        # What the first pod checkpointed: with LangGraph's default durability ("async") the newest
        # step's checkpoint may not have been written yet when it died.
        assert 1 <= resumed.values["count"] <= 4
        final = await graph.ainvoke(None, thread(RUN))
        assert final["log"] == [f"step {n}" for n in range(1, 9)]
        assert len([t async for t in saver.alist(thread(RUN))]) == 10  # input, start, 8 steps
        with pytest.raises(StateError, match="not available inside a pod"):
            await saver.adelete_thread(RUN)
        with pytest.raises(StateError):  # the token's run only
            await graph.ainvoke(START, thread("ns/other"))
