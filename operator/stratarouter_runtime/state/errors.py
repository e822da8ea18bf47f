"""Errors raised by the state SDK. Every one derives from :class:`StateError`.

::

    StateError
    ├── ExecutionNotFound        (also LookupError)
    ├── SnapshotNotFound         (also LookupError)
    ├── CheckpointNotFound       (also LookupError)
    ├── CorruptCheckpointError   a stored state does not match its recorded sha256
    ├── WorkerIdInUseError       another live process already works under this manager's worker id
    ├── StaleAttemptError        a write from an attempt older than the execution's current one (fencing)
    │   └── ExecutionGoneError   a fenced write to a deleted or renamed execution (also ExecutionNotFound)
    ├── InvalidArgumentError     (also ValueError) bad id, step, attempt, status filter, text with NUL, ...
    │   └── InvalidStateError    state that is not JSON-serialisable (names the path of the bad value)
    │       └── StateTooLargeError
    ├── StoreUnavailableError    the database stayed unreachable for the whole retry window
    └── SchemaVersionError       the database schema is behind this SDK and not migrated
        └── SchemaTooNewError    the database schema is newer than this SDK (refused, nothing written)
"""

from __future__ import annotations


class StateError(Exception):
    """Base of every error raised by the state SDK."""


class ExecutionNotFound(StateError, LookupError):
    """No execution with this id is stored."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"execution {execution_id!r} not found")
        self.execution_id = execution_id


class SnapshotNotFound(StateError, LookupError):
    """No snapshot with this name exists for the execution."""

    def __init__(self, execution_id: str, name: str) -> None:
        super().__init__(f"snapshot {name!r} of execution {execution_id!r} not found")
        self.execution_id = execution_id
        self.name = name


class CheckpointNotFound(StateError, LookupError):
    """The requested history checkpoint does not exist (never written, or pruned by retention)."""

    def __init__(self, execution_id: str, step: int | None) -> None:
        what = "no checkpoint" if step is None else f"no checkpoint at step {step}"
        super().__init__(f"{what} for execution {execution_id!r}")
        self.execution_id = execution_id
        self.step = step


class CorruptCheckpointError(StateError):
    """A stored state read back does not match the sha256 recorded when it was written (or cannot even
    be decompressed): the bytes changed in storage. Nothing is returned from them."""

    def __init__(self, execution_id: str, step: int | None) -> None:
        super().__init__(
            f"execution {execution_id!r}: the state stored for step {step} does not match its recorded "
            "sha256 (corrupt in storage); on_corrupt='previous' resumes from the newest checkpoint that does"
        )
        self.execution_id = execution_id
        self.step = step


class WorkerIdInUseError(StateError):
    """Two live processes claimed one worker id. A worker id names one process slot: a restarted
    process takes over its own runs at once, so two live holders would take each other's runs."""

    def __init__(self, worker_id: str) -> None:
        super().__init__(
            f"worker id {worker_id!r} is held by another live process: give each process its own id "
            "(worker_id= or STRATA_WORKER_ID), or stop the other one"
        )
        self.worker_id = worker_id


class StaleAttemptError(StateError):
    """A write carried an attempt older than the execution's current attempt and was refused.

    This is the fencing guarantee: once a replacement (attempt n+1) has started, a zombie
    process of attempt n can no longer overwrite its state.
    """

    def __init__(self, execution_id: str, attempt: int, current_attempt: int | None) -> None:
        super().__init__(
            f"write to execution {execution_id!r} refused: attempt {attempt} is stale, "
            f"the current attempt is {current_attempt}"
        )
        self.execution_id = execution_id
        self.attempt = attempt
        self.current_attempt = current_attempt


class ExecutionGoneError(StaleAttemptError, ExecutionNotFound):
    """A write fenced on an attempt found no execution: it was deleted or renamed (archived) after that
    attempt began, so the writer's run is over. Fenced writes never create an execution; the writer
    must stop, as for any stale attempt (and ``except ExecutionNotFound`` catches it too)."""

    def __init__(self, execution_id: str, attempt: int) -> None:
        StateError.__init__(
            self,
            f"write to execution {execution_id!r} refused: attempt {attempt} began a run that was "
            "deleted or renamed since",
        )
        self.execution_id = execution_id
        self.attempt = attempt
        self.current_attempt = None


class InvalidArgumentError(StateError, ValueError):
    """An argument was rejected before anything was written."""


class InvalidStateError(InvalidArgumentError):
    """The state is not JSON-serialisable; ``path`` names the offending value."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StateTooLargeError(InvalidStateError):
    """The encoded state exceeds the configured ``max_state_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"state is {size} bytes of JSON, over the limit of {limit} bytes (max_state_bytes)")
        self.size = size
        self.limit = limit


class StoreUnavailableError(StateError):
    """The store could not be reached within the retry window; nothing was reported as written."""


class SchemaVersionError(StateError):
    """The database schema version does not match what this SDK expects."""


class SchemaTooNewError(SchemaVersionError):
    """The store was migrated by a newer release than this code; it refuses to use it.

    Raised at start-up (the first call of a :class:`StateManager` on PostgreSQL, and
    ``stratarouter migrate``) before anything is written. The rule lives in
    :func:`stratarouter_runtime.state.migrations.check_compatible`.
    """

    def __init__(self, store_version: int, code_version: int) -> None:
        super().__init__(
            f"database schema is at version {store_version}, newer than schema version {code_version}, "
            "the newest this SDK knows: a newer release migrated it. Refusing to use it; upgrade this "
            "process to a release that knows that version (nothing was written)"
        )
        self.store_version = store_version
        self.code_version = code_version
