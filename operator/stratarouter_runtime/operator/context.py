"""What every reconcile pass is given: the process's :class:`Lifecycle` (on ``memo.lifecycle``) and
the checkpoint API's mirror of ``status.lastCheckpoint``."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any, Protocol

from stratarouter_runtime.operator import metrics
from stratarouter_runtime.operator.kube import Kube
from stratarouter_runtime.operator.resources.execution import Phase
from stratarouter_runtime.operator.settings import OperatorSettings
from stratarouter_runtime.operator.tracking import ClusterView

if TYPE_CHECKING:
    from stratarouter_runtime.state import StateManager


class CheckpointMirror(Protocol):
    """The checkpoint API's mirror of ``status.lastCheckpoint`` (``api.status.StatusCoalescer``)."""

    def rewound(self, namespace: str, name: str, attempt: int) -> None:
        """The operator wrote ``lastCheckpoint`` from the store for ``attempt``: drop what an older
        attempt left pending, and send the whole ``lastCheckpoint`` next time."""


@dataclasses.dataclass
class Lifecycle:
    """Everything a reconcile pass needs; one per operator process, on ``memo.lifecycle``."""

    kube: Kube
    store: StateManager
    settings: OperatorSettings
    view: ClusterView = dataclasses.field(default_factory=ClusterView)
    phases: dict[tuple[str, str], Phase] = dataclasses.field(default_factory=dict)
    background: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)

    def track_phase(self, namespace: str, name: str, phase: Phase | None) -> None:
        """Keep the executions-by-phase gauge right (None = the Execution is gone)."""
        key = (namespace, name)
        old = self.phases.pop(key, None)
        if phase:
            self.phases[key] = phase
        for value in {old, phase} - {None}:
            assert value is not None
            metrics.EXECUTIONS_BY_PHASE.labels(phase=value).set(
                sum(1 for p in self.phases.values() if p == value)
            )

    def spawn(self, coro: Any) -> None:
        """Run a best-effort coroutine (an Event) without holding up the pass."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
