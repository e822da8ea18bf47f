"""The backend matrix: every conformance test runs against memory and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from stratarouter_runtime import StateManager

BACKENDS = ["memory", pytest.param("postgresql", marks=pytest.mark.postgres)]

MakeState = Callable[..., StateManager]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """(backend name, db_url): a fresh empty database per test for PostgreSQL."""
    if request.param == "postgresql":
        dsn: str = request.getfixturevalue("pg_dsn")
        return "postgresql", dsn
    return "memory", None


@pytest.fixture
async def make_state(backend: tuple[str, str | None]) -> AsyncIterator[MakeState]:
    """Build StateManagers on the test's backend; all are closed afterwards.

    With the memory backend every call returns managers over *one* shared in-process store, so a
    test can "reopen" the store the way it would reopen a database.
    """
    name, dsn = backend
    made: list[StateManager] = []
    shared: dict[str, Any] = {}

    def factory(**options: Any) -> StateManager:
        if name == "postgresql":
            manager = StateManager(backend="postgresql", db_url=dsn, **options)
        elif "store" in shared:  # reuse the first manager's in-memory store
            manager = StateManager(backend=shared["store"], **options)
        else:
            manager = StateManager(**options)
            shared["store"] = manager.backend
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        await manager.close()


@pytest.fixture
async def state(make_state: MakeState) -> StateManager:
    return make_state()
