"""A pod's load of a corrupt current state through the checkpoint API: ``CorruptCheckpoint`` (500), or
with ``?onCorrupt=previous`` (the pod's ``spec.recovery.onCorrupt: Previous``) the store's fallback,
which rewinds the run to the newest checkpoint that verifies, rewinds the Execution's status to it and
posts a Warning Event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stratarouter_runtime import CorruptCheckpointError, StateManager
from stratarouter_runtime.operator.api import server
from stratarouter_runtime.operator.api.auth import Caller
from stratarouter_runtime.operator.api.status import CoalescePlan, LastCheckpoint
from stratarouter_runtime.state.backends.memory import MemoryBackend

CALLER = Caller(namespace="ns", pod_name="run-a1", execution="run", attempt=1)
HEADERS = {"Authorization": "Bearer good"}


class OneCaller:
    """Stands in for the Authenticator: every request is the current pod of ``ns/run``."""

    async def authenticate(self, authorization: str | None) -> Caller:
        return CALLER


class Status:
    """Stands in for the status coalescer; records what the API tells it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def note_checkpoint(self, *args: Any) -> None:
        self.calls.append(("note", *args))

    def rewound(self, *args: Any) -> None:
        self.calls.append(("rewound", *args))


class Events:
    """Stands in for the operator's Kube: keeps the Events posted."""

    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []

    async def post_event(self, namespace: str, event: dict[str, Any]) -> None:
        self.posted.append(event)


@pytest.fixture
async def store() -> AsyncIterator[StateManager]:
    """``ns/run`` at step 2, whose bytes (the current state) were damaged; step 1 verifies."""
    async with StateManager(backend="memory") as state:
        await state.start_execution(CALLER.execution_id)
        await state.checkpoint(CALLER.execution_id, 1, {"a": 1})
        await state.checkpoint(CALLER.execution_id, 2, {"a": 2})
        backend = state.backend
        assert isinstance(backend, MemoryBackend)
        backend._execs[CALLER.execution_id].history[2].data = b'{"a":3}'
        yield state


@pytest.fixture
async def api(store: StateManager, events: Events) -> AsyncIterator[tuple[TestClient[Any, Any], Status]]:
    status = Status()
    app = server.build_app(OneCaller(), store, status, events)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        yield client, status


@pytest.fixture
def events() -> Events:
    return Events()


async def test_without_on_corrupt_the_load_fails(
    api: tuple[TestClient[Any, Any], Status], events: Events
) -> None:
    client, status = api
    for query in ("", "?onCorrupt=raise"):
        resp = await client.get(f"/v1/state{query}", headers=HEADERS)
        assert resp.status == 500
        assert (await resp.json())["error"] == "CorruptCheckpoint"
    assert (status.calls, events.posted) == ([], [])


async def test_previous_answers_the_checkpoint_that_verifies(
    api: tuple[TestClient[Any, Any], Status], store: StateManager, events: Events
) -> None:
    client, status = api
    resp = await client.get("/v1/state?onCorrupt=previous", headers=HEADERS)
    assert resp.status == 200
    assert await resp.json() == {"step": 1, "attempt": 1, "state": {"a": 1}}
    execution = await store.get_execution(CALLER.execution_id)
    assert execution is not None
    assert execution.resume_step == 1
    (rewound, noted) = status.calls  # STEP shows the used step, as after a restore
    assert rewound == ("rewound", "ns", "run", 1)
    assert (noted[0], noted[1], noted[2], noted[3], noted[6]) == ("note", "ns", "run", 1, 1)
    (event,) = events.posted
    assert (event["type"], event["reason"]) == ("Warning", "CorruptCheckpointSkipped")
    assert "step 2" in event["message"]
    assert "checkpoint 1" in event["message"]
    involved = event["involvedObject"]
    assert (involved["kind"], involved["namespace"], involved["name"]) == ("Execution", "ns", "run")
    again = await client.get("/v1/state", headers=HEADERS)  # the run is at step 1 now
    assert (again.status, await again.json()) == (200, {"step": 1, "attempt": 1, "state": {"a": 1}})


async def test_a_bad_on_corrupt_is_refused(
    api: tuple[TestClient[Any, Any], Status], store: StateManager
) -> None:
    client, _ = api
    resp = await client.get("/v1/state?onCorrupt=Previous", headers=HEADERS)
    assert resp.status == 400
    assert "onCorrupt" in (await resp.json())["message"]
    with pytest.raises(CorruptCheckpointError):  # nothing changed
        await store.load(CALLER.execution_id)


@pytest.mark.parametrize(("on_corrupt", "expected"), [("previous", {"a": 1}), ("raise", None)])
async def test_the_http_backend_sends_the_pods_setting(
    api: tuple[TestClient[Any, Any], Status], tmp_path: Path, on_corrupt: str, expected: Any
) -> None:
    client, _ = api
    token = tmp_path / "token"
    token.write_text("good")
    url = str(client.make_url(""))
    extra = {"token_file": str(token), "execution_id": CALLER.execution_id, "attempt": 1}
    async with StateManager(backend="http", api_url=url, on_corrupt=on_corrupt, extra=extra) as pod:
        if expected is None:
            with pytest.raises(CorruptCheckpointError):
                await pod.load(CALLER.execution_id)
        else:
            assert await pod.load(CALLER.execution_id) == expected


def test_the_status_rewind_makes_step_the_used_step() -> None:
    """What the API tells the coalescer after a fallback: a lower step of the same attempt is patched."""
    key, at = ("ns", "run"), datetime(2026, 12, 1, tzinfo=UTC)
    plan = CoalescePlan(interval=0.0)
    plan.note(key, LastCheckpoint(2, at, 7, 1), now=0.0)
    ((_, sent),) = plan.take_due(0.0)
    body = plan.body(key, sent)
    assert body is not None
    plan.confirm(key, body)
    plan.rewound(key, 1)
    plan.note(key, LastCheckpoint(1, at, 7, 1), now=1.0)
    ((_, rewound),) = plan.take_due(1.0)
    assert plan.body(key, rewound) == LastCheckpoint(1, at, 7, 1).to_status()  # a full patch of step 1
