"""The LangGraph graph both checkpointers run for ``bench.sdk``'s graph rows: an agent's transcript.

One node appends the transcript's next message (the storage run's, deterministic) each super-step
and loops until the thread has ``steps`` of them; every step is checkpointed with
``durability="sync"``, so a step's time includes its checkpoint being durable, whichever saver holds
it. A thread is run in turns (an agent's conversation): each turn continues it to a further ``steps``.
"""

from __future__ import annotations

import operator
import time
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from bench.sdk_workload import transcript_message


class Transcript(TypedDict):
    steps: int
    step: int
    messages: Annotated[list[dict[str, str]], operator.add]


def _respond(state: Transcript) -> dict[str, Any]:
    step = state.get("step", 0)
    return {"step": step + 1, "messages": [transcript_message(step)]}


def _more(state: Transcript) -> str:
    return "respond" if state["step"] < state["steps"] else END


async def run_graph(saver: BaseCheckpointSaver[Any], thread_id: str, steps: int) -> float:
    """Continue the thread (new or not) until it has ``steps`` messages; return the seconds it took."""
    builder = StateGraph(Transcript)
    builder.add_node("respond", _respond)
    builder.add_edge(START, "respond")
    builder.add_conditional_edges("respond", _more)
    graph = builder.compile(checkpointer=saver)
    config: Any = {"configurable": {"thread_id": thread_id}, "recursion_limit": steps + 10}
    started = time.perf_counter()
    final = await graph.ainvoke({"steps": steps}, config, durability="sync")
    took = time.perf_counter() - started
    if len(final["messages"]) != steps:
        raise AssertionError(f"the graph made {len(final['messages'])} messages, expected {steps}")
    return took
