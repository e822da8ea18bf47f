"""A LangGraph graph that survives its process: checkpoints in the store, resumed after a kill.

A deterministic "agent" (no model, no network): ``plan`` makes a to-do list of ``STEPS`` items,
``work`` does one item per super-step (adding its number to a running total), and ``summarize``
reports. Every super-step is checkpointed by ``StrataCheckpointSaver`` before the next starts
(``durability="sync"``), so a process killed at any point resumes at the first item not yet
checkpointed; the total must come out as 1 + 2 + ... + STEPS however often it is killed.

    eval "$(make -s db-up)"                 # a throwaway PostgreSQL; exports STRATA_DB_URL
    python examples/langgraph_agent.py &    # attempt 1: starting langgraph-agent
    kill -9 %1                              # any time
    python examples/langgraph_agent.py      # attempt 2: resuming langgraph-agent after item N

In an Execution's pod (``examples/langgraph-execution.yaml``) the same script talks to the operator's
checkpoint API: ``StateManager.from_env()`` picks it, the thread is the Execution's own run, and the
operator fences the failed pod's attempt before it starts the next one.

To show a recovery, its first attempt can be made to die for real once item ``FAIL_AT_STEP`` is
checkpointed, as it starts the next item, the way ``FAIL_HOW`` says (as in ``examples/workload.py``):
``exit:N`` (exit with code N), ``oom`` (allocate memory until the container's memory limit OOM-kills
it) or ``hang`` (stop making progress, for a kill from outside). Later attempts never fail on purpose.
"""

from __future__ import annotations

import asyncio
import operator
import os
import sys
import time
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from stratarouter_runtime import StateManager
from stratarouter_runtime.integrations.langgraph import StrataCheckpointSaver


class Agent(TypedDict):
    todo: list[int]
    done: Annotated[list[int], operator.add]
    total: int
    summary: str


def plan(state: Agent) -> dict[str, Any]:
    return {"todo": list(range(1, int(os.environ.get("STEPS", "12")) + 1)), "total": 0}


def fail_for_real(how: str) -> None:
    """Die the way ``how`` says (see the module docstring); returns only for an unknown ``how``."""
    print(f"failing on purpose: {how}", flush=True)
    if how.startswith("exit:"):
        os._exit(int(how.removeprefix("exit:")))  # at once: no cleanup, as a crash would
    if how == "oom":
        hog = []
        while True:  # the kernel's OOM killer ends this once the memory limit is reached
            hog.append(bytearray(16 << 20))
            time.sleep(0.01)
    if how == "hang":
        while True:  # blocks the event loop: nothing more is checkpointed
            time.sleep(60)
    print(f"unknown FAIL_HOW={how!r}; carrying on", flush=True)


#: The attempt this process runs (1 for the first); only the first one fails on purpose.
ATTEMPT = 1


async def work(state: Agent) -> dict[str, Any]:
    fail_at = int(os.environ.get("FAIL_AT_STEP", "0"))
    if 0 < fail_at == len(state["done"]) and ATTEMPT == 1:  # item FAIL_AT_STEP is checkpointed
        fail_for_real(os.environ.get("FAIL_HOW", "exit:1"))
    item = state["todo"][len(state["done"])]
    await asyncio.sleep(float(os.environ.get("STEP_SECONDS", "0.3")))  # the "work" of the item
    total = state["total"] + item
    print(f"item {item}/{len(state['todo'])}: total={total}", flush=True)
    return {"done": [item], "total": total}


def more(state: Agent) -> str:
    return "work" if len(state["done"]) < len(state["todo"]) else "summarize"


def summarize(state: Agent) -> dict[str, Any]:
    return {"summary": f"{len(state['done'])} items, total={state['total']}"}


def build(saver: StrataCheckpointSaver) -> Any:
    graph = StateGraph(Agent)
    graph.add_node("plan", plan)
    graph.add_node("work", work)
    graph.add_node("summarize", summarize)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "work")
    graph.add_conditional_edges("work", more)
    graph.add_edge("summarize", END)
    return graph.compile(checkpointer=saver)


async def main() -> int:
    global ATTEMPT
    async with StateManager.from_env() as state:
        thread_id = state.execution_id or "langgraph-agent"
        saver = StrataCheckpointSaver(state, run_prefix="")  # the thread is the run of that id
        graph = build(saver)
        config: Any = {"configurable": {"thread_id": thread_id}, "recursion_limit": 10_000}
        stored = await state.get_execution(thread_id)
        if stored is not None and stored.status.value == "completed":
            summary = (await graph.aget_state(config)).values["summary"]
            print(f"{thread_id} is done already: {summary}", flush=True)
            return 0
        if state.backend_name == "http":  # in a pod: the operator started this attempt
            attempt = state.attempt
        else:  # alone on its run: take it over with the next attempt, fencing any older writer
            next_attempt = 1 if stored is None else stored.attempt + 1
            attempt = (await saver.start_thread(thread_id, attempt=next_attempt)).attempt
        ATTEMPT = attempt or 1
        snapshot = await graph.aget_state(config)
        if snapshot.next:
            done = len(snapshot.values.get("done", []))
            print(f"attempt {attempt}: resuming {thread_id} after item {done}", flush=True)
            final = await graph.ainvoke(None, config, durability="sync")
        else:
            print(f"attempt {attempt}: starting {thread_id}", flush=True)
            final = await graph.ainvoke({"done": []}, config, durability="sync")
        await state.complete(saver.run_id(thread_id))
        expected = len(final["todo"]) * (len(final["todo"]) + 1) // 2
        print(f"done: {final['summary']} (expected total={expected})", flush=True)
        return 0 if final["total"] == expected and final["done"] == final["todo"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
