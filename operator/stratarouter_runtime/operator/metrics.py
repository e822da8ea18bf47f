"""Prometheus metrics of the operator, in a registry of our own.

A private registry keeps ``/metrics`` to what we define (no process-wide default
collectors surprising a test that imports the module twice) and lets tests read
values without global state from other libraries leaking in.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

EXECUTIONS_BY_PHASE = Gauge(
    "stratarouter_executions",
    "Executions known to this operator replica, by phase.",
    ["phase"],
    registry=REGISTRY,
)
CHECKPOINTS_TOTAL = Counter(
    "stratarouter_checkpoints",
    "Checkpoints (and saves) made durable through the checkpoint API.",
    registry=REGISTRY,
)
CHECKPOINT_SECONDS = Histogram(
    "stratarouter_checkpoint_seconds",
    "Checkpoint API latency: request received -> durable in the store.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
RECOVERIES_TOTAL = Counter(
    "stratarouter_recoveries",
    "Pods recreated after a failure, by reason (ExitCode, OOMKilled, Evicted, PodDeleted, NodeLost).",
    ["reason"],
    registry=REGISTRY,
)
RECOVERY_SECONDS = Histogram(
    "stratarouter_recovery_seconds",
    "Recovery latency: pod failure seen -> replacement pod created (includes the backoff).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
API_REQUESTS_TOTAL = Counter(
    "stratarouter_api_requests",
    "Checkpoint API requests, by route and HTTP status code.",
    ["route", "code"],
    registry=REGISTRY,
)
STATUS_PATCHES_TOTAL = Counter(
    "stratarouter_status_patches",
    "Execution status.lastCheckpoint patches sent by the coalescer, by result (ok, error, gone).",
    ["result"],
    registry=REGISTRY,
)
STATUS_LAG_SECONDS = Gauge(
    "stratarouter_status_lag_seconds",
    "How long the stalest Execution status has waited for its lastCheckpoint patch (0: all current); "
    "with the patch budget as the limit, lag ≈ Executions / budget.",
    registry=REGISTRY,
)
STATUS_PENDING = Gauge(
    "stratarouter_status_pending",
    "Executions whose newest checkpoint is not yet in their status.lastCheckpoint.",
    registry=REGISTRY,
)
STATUS_PATCH_BUDGET = Gauge(
    "stratarouter_status_patch_budget_per_second",
    "Most lastCheckpoint status patches this process sends a second (STRATA_STATUS_PATCH_BUDGET).",
    registry=REGISTRY,
)
TOKEN_REVIEWS_TOTAL = Counter(
    "stratarouter_token_reviews",
    "TokenReviews sent to the API server (cache misses), by result (authenticated, rejected, error).",
    ["result"],
    registry=REGISTRY,
)
EXECUTIONS_FINISHED_TOTAL = Counter(
    "stratarouter_executions_finished",
    "Executions this replica moved into a terminal phase (Succeeded, Failed), by phase and status.reason "
    "(e.g. BackoffLimitExceeded, NonRetryableExitCode).",
    ["phase", "reason"],
    registry=REGISTRY,
)
# The store probe (store_size.py): one small catalog query every STORE_PROBE_INTERVAL_SECONDS on a
# connection of its own, never at scrape time.
STORE_BYTES = Gauge(
    "stratarouter_store_bytes",
    "On-disk size of the store's tables in its schema (pg_total_relation_size: heap, TOAST and indexes, "
    "every partition), as last sampled.",
    registry=REGISTRY,
)
STORE_UP = Gauge(
    "stratarouter_store_up",
    "1 when this replica's last store probe reached PostgreSQL and answered, else 0.",
    registry=REGISTRY,
)
STORE_PROBE_FAILURES_TOTAL = Counter(
    "stratarouter_store_probe_failures",
    "Store probes that failed (connect error, query error or timeout).",
    registry=REGISTRY,
)
STORE_PROBE_SUCCESS_TIME = Gauge(
    "stratarouter_store_probe_last_success_timestamp_seconds",
    "Unix time of the last store probe that answered (0: none yet); stratarouter_store_bytes is that old.",
    registry=REGISTRY,
)

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

# Children that alerts take increase() of exist from the start at 0: a series first scraped at 1 (its
# first event) has no increase in Prometheus' eyes, so the first BackoffLimitExceeded would never alert.
for _reason in ("ExitCode", "OOMKilled", "Evicted", "PodDeleted", "NodeLost"):
    RECOVERIES_TOTAL.labels(reason=_reason)
for _phase, _reason in (
    ("Succeeded", "Succeeded"),
    ("Failed", "BackoffLimitExceeded"),
    ("Failed", "NonRetryableExitCode"),
    ("Failed", "InvalidSpec"),
    ("Failed", "InvalidTemplate"),
):
    EXECUTIONS_FINISHED_TOTAL.labels(phase=_phase, reason=_reason)


def note_phase(before: str | None, status: dict[str, Any]) -> None:
    """Count an Execution entering a terminal phase: ``before`` is its phase before a status patch,
    ``status`` the status the patch returned. Staying in a phase (a repeated patch) counts nothing."""
    phase = status.get("phase")
    if phase in TERMINAL_PHASES and phase != before:
        EXECUTIONS_FINISHED_TOTAL.labels(phase=phase, reason=str(status.get("reason") or "")).inc()


def render() -> tuple[bytes, str]:
    """The registry in the Prometheus text format, with its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


__all__ = [
    "API_REQUESTS_TOTAL",
    "CHECKPOINTS_TOTAL",
    "CHECKPOINT_SECONDS",
    "EXECUTIONS_BY_PHASE",
    "EXECUTIONS_FINISHED_TOTAL",
    "RECOVERIES_TOTAL",
    "RECOVERY_SECONDS",
    "REGISTRY",
    "STATUS_LAG_SECONDS",
    "STATUS_PATCHES_TOTAL",
    "STATUS_PATCH_BUDGET",
    "STATUS_PENDING",
    "STORE_BYTES",
    "STORE_PROBE_FAILURES_TOTAL",
    "STORE_PROBE_SUCCESS_TIME",
    "STORE_UP",
    "TERMINAL_PHASES",
    "TOKEN_REVIEWS_TOTAL",
    "note_phase",
    "render",
]
