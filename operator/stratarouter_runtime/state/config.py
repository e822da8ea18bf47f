"""Settings of one StateManager, and how ``StateManager.from_env()`` reads them from STRATA_* variables."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args, get_type_hints

from stratarouter_runtime.state import codec, integrity
from stratarouter_runtime.state import validation as check
from stratarouter_runtime.state.errors import InvalidArgumentError
from stratarouter_runtime.state.migrations import DEFAULT_SCHEMA, schema_name
from stratarouter_runtime.state.pod_contract import PodEnv


@dataclass(frozen=True)
class StateConfig:
    """Every knob of the SDK. Field docs say what each changes."""

    backend: str = "memory"
    db_url: str | None = None
    db_schema: str = DEFAULT_SCHEMA
    """PostgreSQL schema of the store's tables (created by the first migration): its own, so they never
    mix with an application's tables in ``public``. Stores of one database are separate by schema."""
    api_url: str | None = None
    """Base URL of the operator's checkpoint API (backend ``http``)."""

    checkpoint_interval: int = 10
    """``save()`` also writes a history checkpoint when ``step % checkpoint_interval == 0``."""
    checkpoint_retention: int | None = None
    """Keep the newest N history checkpoints per execution (None: keep all)."""

    enable_auto_recovery: bool = False
    """With ``on_recover``, sweep for stalled executions every ``recovery_timeout / 2`` seconds."""
    recovery_timeout: float = 300.0
    """An execution running or recovering with no write for this many seconds is recoverable (by
    another worker; a restarted worker's own runs at once), and how long a worker's lease lasts."""
    worker_id: str | None = None
    """This process slot's stable identity (None: ``STRATA_WORKER_ID``, the pod's name in Kubernetes,
    else ``<hostname>/<hash of working directory and argv>``; see ``state/worker.py``)."""
    on_corrupt: str = integrity.RAISE
    """A corrupt current state on ``load()``: ``"raise"`` CorruptCheckpointError, or ``"previous"``:
    return the newest checkpoint that verifies (with a ``corrupt_fallback`` audit event)."""

    enable_compression: bool = False
    compression_threshold: int = codec.DEFAULT_COMPRESSION_THRESHOLD
    max_state_bytes: int = codec.DEFAULT_MAX_STATE_BYTES

    batch_writes: bool = False
    batch_size: int = 100
    flush_interval_ms: int = 1000

    enable_partitioning: bool = False
    partition_by: str = "month"
    partitions_ahead: int = 3

    # PostgreSQL connection
    pool_min_size: int = 1
    pool_max_size: int = 10
    statement_cache_size: int = 100
    """0 behind a transaction-mode pooler that cannot keep prepared statements."""
    connect_timeout: float = 10.0
    retry_timeout: float = 30.0
    """How long a lost database connection is retried (with backoff) before StoreUnavailableError."""
    auto_migrate: bool = True
    """Apply pending schema migrations on first connect (under an advisory lock)."""
    group_commit: bool = True
    """Send concurrent durable writes together in one round trip (each caller released after commit)."""
    max_inflight_batches: int = 4

    extra: Mapping[str, Any] = field(default_factory=dict)
    """Backend-specific settings (e.g. the http backend's token path)."""

    def __post_init__(self) -> None:
        def positive(name: str, value: float) -> None:
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")

        for name in (
            "checkpoint_interval",
            "batch_size",
            "flush_interval_ms",
            "pool_max_size",
            "max_state_bytes",
            "recovery_timeout",
            "retry_timeout",
            "connect_timeout",
            "max_inflight_batches",
        ):
            positive(name, getattr(self, name))
        if self.checkpoint_retention is not None:
            positive("checkpoint_retention", self.checkpoint_retention)
        if self.partition_by != "month":
            raise InvalidArgumentError(f"partition_by must be 'month', got {self.partition_by!r}")
        if self.pool_min_size < 0 or self.pool_min_size > self.pool_max_size:
            raise InvalidArgumentError("pool_min_size must be between 0 and pool_max_size")
        if self.statement_cache_size < 0:
            raise InvalidArgumentError("statement_cache_size must be >= 0")
        schema_name(self.db_schema)
        if self.worker_id is not None:
            check.execution_id(self.worker_id, "worker_id")
        if self.on_corrupt not in integrity.ON_CORRUPT:
            raise InvalidArgumentError(
                f"on_corrupt must be one of {sorted(integrity.ON_CORRUPT)}, got {self.on_corrupt!r}"
            )


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InvalidArgumentError(f"{name}={raw!r} is not a boolean (use true/false)")


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name}={raw!r} is not an integer") from None


def _float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name}={raw!r} is not a number") from None


# STRATA_<NAME> -> config field; the parser per field type.
_ENV_FIELDS = {
    "DB_SCHEMA": "db_schema",
    "CHECKPOINT_INTERVAL": "checkpoint_interval",
    "CHECKPOINT_RETENTION": "checkpoint_retention",
    "ENABLE_AUTO_RECOVERY": "enable_auto_recovery",
    "RECOVERY_TIMEOUT": "recovery_timeout",
    "WORKER_ID": "worker_id",
    "ON_CORRUPT": "on_corrupt",
    "ENABLE_COMPRESSION": "enable_compression",
    "COMPRESSION_THRESHOLD": "compression_threshold",
    "MAX_STATE_BYTES": "max_state_bytes",
    "BATCH_WRITES": "batch_writes",
    "BATCH_SIZE": "batch_size",
    "FLUSH_INTERVAL_MS": "flush_interval_ms",
    "ENABLE_PARTITIONING": "enable_partitioning",
    "POOL_MIN_SIZE": "pool_min_size",
    "POOL_MAX_SIZE": "pool_max_size",
    "STATEMENT_CACHE_SIZE": "statement_cache_size",
    "RETRY_TIMEOUT": "retry_timeout",
    "AUTO_MIGRATE": "auto_migrate",
}


def _text(name: str, raw: str) -> str:
    return raw.strip()


#: a field's type, as declared (``int | None`` is an int here: empty variables are skipped) -> its parser
_PARSERS: dict[type, Callable[[str, str], Any]] = {bool: _bool, int: _int, float: _float, str: _text}
_FIELD_TYPES: dict[str, type] = {
    name: next(t for t in (get_args(hint) or (hint,)) if t is not type(None))
    for name, hint in get_type_hints(StateConfig).items()
    if name in _ENV_FIELDS.values()
}


def config_from_env(env: Mapping[str, str], **overrides: Any) -> StateConfig:
    """Build a config from STRATA_* variables: STRATA_API_URL -> http, else STRATA_DB_URL -> postgresql,
    else memory; plus optional tuning variables (STRATA_CHECKPOINT_INTERVAL, ...)."""
    values: dict[str, Any] = {}
    if env.get(PodEnv.API_URL):
        values["backend"] = "http"
        values["api_url"] = env[PodEnv.API_URL]
    elif env.get("STRATA_DB_URL"):
        values["backend"] = "postgresql"
        values["db_url"] = env["STRATA_DB_URL"]
    for suffix, name in _ENV_FIELDS.items():
        key = f"STRATA_{suffix}"
        raw = env.get(key)
        if raw is None or raw == "":
            continue
        values[name] = _PARSERS[_FIELD_TYPES[name]](key, raw)
    values.update(overrides)
    return StateConfig(**values)


def environ() -> Mapping[str, str]:
    return os.environ
