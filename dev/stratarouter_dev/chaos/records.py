"""What a chaos run records: the workers' own log lines, the pod watch's timeline, the store's view.

Plain frozen dataclasses, so the invariant checks (:mod:`.invariants`) are pure functions that unit
tests feed with synthetic timelines. Times are ``time.time()`` of this machine (one clock for the
workers, the watch and the store's ``now()``); watch events are ordered by ``resourceVersion``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

from stratarouter_runtime.state.codec import to_json

_POD_NAME = re.compile(r"^(?P<execution>.+)-a(?P<attempt>\d+)$")


def state_of(execution: str, step: int, attempt: int) -> dict[str, Any]:
    """The state a worker checkpoints at ``step``: it names its writer, so a write by the wrong attempt
    (or a step written twice with different content) shows in the stored bytes; sizes vary from a few
    hundred bytes to ~6 KiB so both codecs (plain and zstd) are used."""
    filler = (f"{execution}:{step}:" * 400)[: 200 + (step * 397) % 6000]
    return {"execution": execution, "step": step, "attempt": attempt, "filler": filler}


def workload_state(step: int) -> dict[str, Any]:
    """The state ``examples/workload.py`` checkpoints at ``step`` (its ``do_step`` from step 1 on): a
    running total and the last ten steps, whichever attempt computes it."""
    return {"total": step * (step + 1) // 2, "done": list(range(max(1, step - 9), step + 1))}


def digest(state: Any) -> str:
    """sha256 of the state's JSON exactly as the store encodes it (its audit trail records this)."""
    return hashlib.sha256(to_json(state)).hexdigest()


def pod_attempt(pod_name: str) -> tuple[str, int] | None:
    """``(execution, attempt)`` from an attempt pod's deterministic name ``<execution>-a<n>``."""
    found = _POD_NAME.match(pod_name)
    return None if found is None else (found["execution"], int(found["attempt"]))


@dataclass(frozen=True)
class Ack:
    """An HTTP 200 from ``POST /v1/checkpoint``: the API said this state is durable."""

    execution: str
    attempt: int
    pod_uid: str
    step: int
    sha256: str
    sent_at: float
    acked_at: float
    zombie: bool = False
    """Sent by an attempt whose pod the run had already marked Failed (a process that lives on)."""


@dataclass(frozen=True)
class Refusal:
    """A 4xx answer to a write: who was refused, when, and why (``error`` of the JSON answer)."""

    execution: str
    attempt: int
    pod_uid: str
    step: int
    status: int
    error: str
    sent_at: float
    zombie: bool = False


@dataclass(frozen=True)
class Resume:
    """A worker took over a pod: the pod's ``STRATA_RESUME_STEP`` and what ``GET /v1/state`` returned."""

    execution: str
    attempt: int
    pod_uid: str
    resume_step: int | None
    loaded_step: int | None
    loaded_sha256: str | None
    first_for_attempt: bool
    at: float


@dataclass(frozen=True)
class PodEvent:
    """One pod as a watch event delivered it (or a relist re-synchronised it)."""

    rv: int
    at: float
    type: str
    """ADDED, MODIFIED, DELETED (a relist that no longer shows a pod reports it DELETED)."""
    name: str
    uid: str
    phase: str
    deleting: bool

    @property
    def live(self) -> bool:
        """The pod may still run a process: it exists and has not finished. A pod being deleted counts as
        live until it is gone (a kubelet may still be stopping its containers)."""
        return self.type != "DELETED" and self.phase not in ("Succeeded", "Failed")


@dataclass(frozen=True)
class AuditRecord:
    """One row of the store's audit trail (``StateManager.get_audit``)."""

    seq: int
    kind: str
    step: int | None
    attempt: int | None
    hash: str | None
    at: float = 0.0
    """When the store wrote it (``time.time()`` scale)."""


@dataclass(frozen=True)
class StoredCheckpoint:
    """One history checkpoint as the store returns it, reduced to what the checks compare."""

    step: int
    attempt: int
    sha256: str
    """sha256 of the stored state's JSON, recomputed from ``state_data`` by the checker."""


@dataclass(frozen=True)
class Violation:
    """An invariant that did not hold, for one Execution (or ``*`` for the whole run)."""

    invariant: str
    execution: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.execution}: {self.detail}"


def as_json(record: Any) -> dict[str, Any]:
    """A record as a JSON object for the workers' log file, with its kind."""
    return {"kind": type(record).__name__, **asdict(record)}
