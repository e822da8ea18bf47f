"""LangGraph's own checkpointer conformance suite (langgraph-checkpoint-conformance) on our saver."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator

from langgraph.checkpoint.conformance import checkpointer_test, validate

from stratarouter_runtime.integrations.langgraph import StrataCheckpointSaver
from tests.integrations.conftest import MakeState


async def test_conformance_suite(make_state: MakeState) -> None:
    @checkpointer_test(name="StrataCheckpointSaver")
    async def fresh_saver() -> AsyncIterator[StrataCheckpointSaver]:
        yield StrataCheckpointSaver(make_state())

    report = await validate(fresh_saver)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        report.print_report()
    print(printed.getvalue())
    assert report.passed_all_base(), printed.getvalue()
    assert report.passed_all(), printed.getvalue()
