"""The LangGraph graph both checkpointers run for ``bench.sdk``'s graph rows: an agent's transcript.

One node appends the transcript's next message (the storage run's, deterministic) each super-step
and loops until ``steps``; every step is checkpointed with ``durability="sync"``, so a step's time
includes its checkpoint being durable, whichever saver holds it.
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
    return {"step": state["step"] + 1, "messages": [transcript_message(state["step"])]}


def _more(state: Transcript) -> str:
    return "respond" if state["step"] < state["steps"] else END


async def run_graph(saver: BaseCheckpointSaver[Any], thread_id: str, steps: int) -> float:
    """Run the graph for ``steps`` super-steps on a new thread; return the seconds it took."""
    builder = StateGraph(Transcript)
    builder.add_node("respond", _respond)
    builder.add_edge(START, "respond")
    builder.add_conditional_edges("respond", _more)
    graph = builder.compile(checkpointer=saver)
    config: Any = {"configurable": {"thread_id": thread_id}, "recursion_limit": steps + 10}
    started = time.perf_counter()
    final = await graph.ainvoke({"steps": steps, "step": 0, "messages": []}, config, durability="sync")
    took = time.perf_counter() - started
    if len(final["messages"]) != steps:
        raise AssertionError(f"the graph made {len(final['messages'])} messages, expected {steps}")
    return took
