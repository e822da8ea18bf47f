"""A deterministic LangGraph graph for the saver's tests: one node that counts to a target, looping."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph


class Count(TypedDict):
    target: int
    count: int
    log: Annotated[list[str], operator.add]


def _step(state: Count) -> dict[str, Any]:
    count = state["count"] + 1
    return {"count": count, "log": [f"step {count}"]}


def _more(state: Count) -> str:
    return "step" if state["count"] < state["target"] else END


def counting_graph(saver: BaseCheckpointSaver[Any]) -> CompiledStateGraph[Count, None, Count, Count]:
    builder = StateGraph(Count)
    builder.add_node("step", _step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", _more)
    return builder.compile(checkpointer=saver)


def thread(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": 10_000}
