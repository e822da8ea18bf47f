"""Operator-wide settings, read once from ``STRATA_*`` environment variables (the Helm values set them).

A plain pydantic model with a ``from_env`` constructor rather than pydantic-settings: the variables are few,
and a bad value must stop startup with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stratarouter_runtime.operator.pods import MIN_TOKEN_EXPIRATION_SECONDS, TOKEN_EXPIRATION_SECONDS
from stratarouter_runtime.state.migrations import DEFAULT_SCHEMA, schema_name


class SettingsError(ValueError):
    """An environment variable holds a value the operator cannot run with."""


class OperatorSettings(BaseModel):
    """Everything the operator reads from its environment; frozen once loaded into ``memo.settings``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    db_url: str = Field(min_length=1, description="PostgreSQL DSN of the store (STRATA_DB_URL)")
    db_schema: str = Field(
        default=DEFAULT_SCHEMA,
        description="PostgreSQL schema of the store (STRATA_DB_SCHEMA): created by the first migration",
    )
    api_host: str = "0.0.0.0"
    api_port: int = Field(default=8080, ge=0, le=65535)
    api_url_for_pods: str = Field(
        default="",
        description="URL a pod uses to reach the checkpoint API; empty = http://<pod IP>:<port> is unknown, "
        "so the Helm chart always sets it to the Service URL",
    )
    watch_namespaces: tuple[str, ...] = ()
    default_checkpoint_retention: int | None = Field(default=None, ge=1)
    default_ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    retention_interval_seconds: float = Field(default=30.0, gt=0)
    status_patch_interval_seconds: float = Field(default=1.0, gt=0)
    status_patch_budget_per_second: float = Field(
        default=50.0,
        gt=0,
        description="most lastCheckpoint status patches the whole process sends a second (a token bucket, "
        "burst = budget); each costs the API server about 7.5 ms of CPU, so 50/s is about 0.4 core. "
        "Past budget x interval Executions, each status lags about Executions / budget seconds",
    )
    token_cache_seconds: float = Field(
        default=300.0,
        ge=0,
        description="how long a TokenReview (and the pod's labels) is reused, never past the token's expiry; "
        "whether the pod is still its Execution's current pod is checked on every request regardless",
    )
    pod_token_seconds: int = Field(
        default=TOKEN_EXPIRATION_SECONDS,
        ge=MIN_TOKEN_EXPIRATION_SECONDS,
        le=24 * 3600,
        description="life of the token projected into workload pods (expirationSeconds); the kubelet "
        "replaces it at 80% of that, and the pod's SDK reads the file on every request",
    )
    token_review_concurrency: int = Field(
        default=8,
        ge=1,
        description="TokenReviews in flight at once; more callers with unknown tokens wait (then 503)",
    )
    api_max_expensive_requests: int = Field(
        default=4,
        ge=1,
        description="requests that may need a lot of memory at once (history pages, checkpoint reads, "
        "write bodies over 1 MiB or of unknown length); one more waits 1 s, then gets 503 + Retry-After",
    )
    api_max_history_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=64 * 1024,
        description="states' bytes in one GET /v1/history page; past it the page ends early with "
        "nextAfterStep (a single larger checkpoint still comes, alone)",
    )
    api_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="time a connection has to send a request line and headers (from its first byte, "
        "or from being opened) before it is closed",
    )
    api_body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="time a request body has to arrive (then 408), and a history page to be sent",
    )
    api_keepalive_seconds: float = Field(
        default=75.0,
        gt=0,
        description="how long an idle keep-alive connection stays open (above the SDK client's 15 s)",
    )
    peering: str = Field(
        default="",
        description="kopf peering object name; empty = standalone (one replica, no peering object needed)",
    )
    peering_priority: int | None = Field(
        default=None,
        ge=0,
        description="kopf peering priority; empty = random per process (equal priorities freeze kopf)",
    )
    peering_lifetime_seconds: int = Field(
        default=20,
        ge=15,
        le=3600,
        description="how long a replica's peering record counts without a refresh (refreshed 5-10 s "
        "before): a replica that died without leaving (SIGKILL, node lost) is replaced after at most this",
    )
    view_enabled: bool = Field(
        default=False,
        description="serve the view API (view.stratarouter.io, an aggregated API the API server proxies to)",
    )
    view_host: str = "0.0.0.0"
    view_port: int = Field(default=8443, ge=0, le=65535)
    view_tls_cert_file: str = Field(default="", description="the view API's serving certificate (PEM)")
    view_tls_key_file: str = Field(default="", description="its private key (PEM)")
    view_authz_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="how long a SubjectAccessReview's answer (allowed or denied) is reused per user "
        "and Execution",
    )
    run_migrations: bool = True
    handler_retries: int = Field(default=10, ge=1)
    handler_backoff_seconds: float = Field(default=5.0, gt=0)

    @field_validator("db_schema")
    @classmethod
    def _schema(cls, value: str) -> str:
        return schema_name(value)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        """Build settings from ``STRATA_*`` variables; raise :class:`SettingsError` naming the bad one."""
        env = os.environ if environ is None else environ
        names = {
            "db_url": "STRATA_DB_URL",
            "db_schema": "STRATA_DB_SCHEMA",
            "api_host": "STRATA_API_HOST",
            "api_port": "STRATA_API_PORT",
            "api_url_for_pods": "STRATA_API_URL_FOR_PODS",
            "watch_namespaces": "STRATA_WATCH_NAMESPACES",
            "default_checkpoint_retention": "STRATA_DEFAULT_CHECKPOINT_RETENTION",
            "default_ttl_seconds_after_finished": "STRATA_DEFAULT_TTL_SECONDS_AFTER_FINISHED",
            "retention_interval_seconds": "STRATA_RETENTION_INTERVAL_SECONDS",
            "status_patch_interval_seconds": "STRATA_STATUS_PATCH_INTERVAL_SECONDS",
            "status_patch_budget_per_second": "STRATA_STATUS_PATCH_BUDGET",
            "token_cache_seconds": "STRATA_TOKEN_CACHE_SECONDS",
            "pod_token_seconds": "STRATA_POD_TOKEN_SECONDS",
            "token_review_concurrency": "STRATA_TOKEN_REVIEW_CONCURRENCY",
            "api_max_expensive_requests": "STRATA_API_MAX_EXPENSIVE_REQUESTS",
            "api_max_history_bytes": "STRATA_API_MAX_HISTORY_BYTES",
            "api_header_timeout_seconds": "STRATA_API_HEADER_TIMEOUT_SECONDS",
            "api_body_timeout_seconds": "STRATA_API_BODY_TIMEOUT_SECONDS",
            "api_keepalive_seconds": "STRATA_API_KEEPALIVE_SECONDS",
            "peering": "STRATA_PEERING",
            "peering_priority": "STRATA_PEERING_PRIORITY",
            "peering_lifetime_seconds": "STRATA_PEERING_LIFETIME_SECONDS",
            "view_enabled": "STRATA_VIEW_ENABLED",
            "view_host": "STRATA_VIEW_HOST",
            "view_port": "STRATA_VIEW_PORT",
            "view_tls_cert_file": "STRATA_VIEW_TLS_CERT_FILE",
            "view_tls_key_file": "STRATA_VIEW_TLS_KEY_FILE",
            "view_authz_cache_seconds": "STRATA_VIEW_AUTHZ_CACHE_SECONDS",
            "run_migrations": "STRATA_RUN_MIGRATIONS",
            "handler_retries": "STRATA_HANDLER_RETRIES",
            "handler_backoff_seconds": "STRATA_HANDLER_BACKOFF_SECONDS",
        }
        values: dict[str, object] = {}
        for field, var in names.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            if field == "watch_namespaces":
                values[field] = tuple(ns.strip() for ns in raw.split(",") if ns.strip())
            else:
                values[field] = raw.strip()
        if "db_url" not in values:
            raise SettingsError(
                "STRATA_DB_URL is not set: the operator needs the PostgreSQL DSN of its store"
            )
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{names.get(str(err['loc'][0]), err['loc'][0])}: {err['msg']}" for err in exc.errors()
            )
            raise SettingsError(f"invalid operator settings: {problems}") from exc


def retention_interval_from_env() -> float:
    """The TTL timer's interval, needed when handlers are registered (before settings are loaded)."""
    raw = os.environ.get("STRATA_RETENTION_INTERVAL_SECONDS", "").strip()
    try:
        value = float(raw) if raw else 30.0
    except ValueError as exc:
        raise SettingsError(f"STRATA_RETENTION_INTERVAL_SECONDS: not a number: {raw!r}") from exc
    if value <= 0:
        raise SettingsError("STRATA_RETENTION_INTERVAL_SECONDS must be > 0")
    return value
