"""The in-memory hints that decide when an Execution's loop is poked."""

from __future__ import annotations

import asyncio

from stratarouter_runtime.operator.tracking import ClusterView
from stratarouter_runtime.operator.wakeups import Wakeups


def test_pod_events_poke_only_on_relevant_changes() -> None:
    view = ClusterView()
    seen = view.pod_seen("ns", "x-a1", "x", phase="Pending", terminating=False, node=None)
    assert seen
    assert not view.pod_seen("ns", "x-a1", "x", phase="Pending", terminating=False, node="n1")
    assert view.pod_seen("ns", "x-a1", "x", phase="Running", terminating=False, node="n1")
    assert view.pod_seen("ns", "x-a1", "x", phase="Running", terminating=True, node="n1")
    view.pod_gone("ns", "x-a1")
    assert view.node_of("ns", "x-a1") == "n1", "the node is remembered for the NodeLost check"


def test_node_deletion_names_the_executions_on_it() -> None:
    view = ClusterView()
    view.pod_seen("ns", "x-a1", "x", phase="Running", terminating=False, node="n1")
    view.pod_seen("ns", "y-a3", "y", phase="Running", terminating=False, node="n2")
    assert view.node_deleted("n1") == {("ns", "x")}
    assert "n1" in view.gone_nodes
    view.node_present("n1")
    assert "n1" not in view.gone_nodes
    view.forget_execution("ns", "x")
    assert view.node_deleted("n1") == set()
    assert view.node_of("ns", "x-a1") is None


async def test_a_poke_before_the_wait_is_not_lost() -> None:
    wake = Wakeups()
    wake.poke("ns", "x")
    assert await wake.wait("ns", "x", 5.0) is True
    assert await wake.wait("ns", "x", 0.01) is False, "the flag is cleared after a wait"
    assert await wake.wait("ns", "x", 0) is False


async def test_wait_wakes_on_poke() -> None:
    wake = Wakeups()
    waiter = asyncio.create_task(wake.wait("ns", "x", None))
    await asyncio.sleep(0)
    assert not waiter.done()
    wake.poke("ns", "x")
    assert await asyncio.wait_for(waiter, 5) is True
    wake.forget("ns", "x")
