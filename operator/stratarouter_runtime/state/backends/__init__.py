"""Storage backends behind :class:`~stratarouter_runtime.state.StateManager`.

``memory`` and ``postgresql`` ship here; ``http`` (the operator's checkpoint API, used inside pods)
lives in ``http.py`` and is imported only when asked for. All implement
:class:`~stratarouter_runtime.state.backends.base.StateBackend`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from stratarouter_runtime.state.errors import InvalidArgumentError, StateError

if TYPE_CHECKING:
    from stratarouter_runtime.state.backends.base import StateBackend
    from stratarouter_runtime.state.config import StateConfig

BACKENDS = {
    "memory": ("stratarouter_runtime.state.backends.memory", "MemoryBackend"),
    "postgresql": ("stratarouter_runtime.state.backends.postgres", "PostgresBackend"),
    "http": ("stratarouter_runtime.state.backends.http", "HttpBackend"),
}
ALIASES = {"postgres": "postgresql", "pg": "postgresql", "asyncpg": "postgresql", "inmemory": "memory"}


def create_backend(config: StateConfig) -> StateBackend:
    """Instantiate the backend ``config.backend`` names (imported lazily)."""
    name = ALIASES.get(config.backend, config.backend)
    if name not in BACKENDS:
        raise InvalidArgumentError(
            f"unknown backend {config.backend!r}; expected one of: {', '.join(BACKENDS)}"
        )
    module_name, class_name = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise StateError(
            f"backend {name!r} is not available: module {module_name} is missing from this installation"
        ) from exc
    backend_class = getattr(module, class_name, None)
    if backend_class is None:
        raise StateError(f"backend {name!r} is not available: {module_name} defines no {class_name}")
    backend: StateBackend = backend_class(config)
    return backend
