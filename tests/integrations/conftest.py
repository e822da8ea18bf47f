"""A StateManager on each backend (memory, and a fresh PostgreSQL database) for the saver's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from stratarouter_runtime import StateManager

MakeState = Callable[..., StateManager]


@pytest.fixture(params=["memory", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None for the memory backend, else a fresh empty PostgreSQL database."""
    return request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None  # type: ignore[no-any-return]


@pytest.fixture
async def make_state(db_url: str | None) -> AsyncIterator[MakeState]:
    """Build managers on the test's backend, closed afterwards; on memory they share one store."""
    dsn = db_url
    made: list[StateManager] = []

    def factory(**options: Any) -> StateManager:
        if dsn is not None:
            manager = StateManager(backend="postgresql", db_url=dsn, **options)
        elif made:
            manager = StateManager(backend=made[0].backend, **options)
        else:
            manager = StateManager(**options)
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        await manager.close()
