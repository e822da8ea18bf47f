"""``stratarouter operator``: kopf settings, login, and the process-wide resources on ``memo``.

The memo contract (shared with the checkpoint API): ``memo.settings`` (OperatorSettings), ``memo.k8s`` (ONE
kubernetes_asyncio ApiClient), ``memo.store`` (ONE StateManager on PostgreSQL), ``memo.status``
(StatusCoalescer), ``memo.api_runner`` (the aiohttp runner of the checkpoint API), and ``memo.wakeups``
(per-Execution wake-up flags the handlers use to poke an Execution's reconcile loop) and ``memo.lifecycle``
(the reconcile context: Kube wrapper, store, settings, what the watches saw).

The process's kopf handlers (login, startup, cleanup) are here; the resources' handlers are registered by
importing the ``operator.handlers`` modules, none of which imports this module.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import time
from typing import Any

import kopf
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from stratarouter_runtime.operator.context import Lifecycle
from stratarouter_runtime.operator.diffbase import SlimDiffBaseStorage
from stratarouter_runtime.operator.handlers import (  # noqa: F401 - registers their handlers
    executions,
    pods,
    retention,
    snapshots,
)
from stratarouter_runtime.operator.kube import Kube
from stratarouter_runtime.operator.pods import POD_SELECTOR
from stratarouter_runtime.operator.resources.base import FINALIZER, GROUP
from stratarouter_runtime.operator.settings import OperatorSettings
from stratarouter_runtime.operator.store_size import StoreSize
from stratarouter_runtime.operator.wakeups import Wakeups

log = logging.getLogger(__name__)

PRIORITY_EPOCH_MS = 4_000_000_000_000  # year 2096: keeps seniority priorities positive
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def in_cluster() -> bool:
    """True inside a pod with a mounted service account (the Helm install)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(SERVICE_ACCOUNT_TOKEN)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """Explicit credentials: the pod's service account in-cluster, else $KUBECONFIG / ~/.kube/config.

    In-cluster, the API server is where ``KUBERNETES_SERVICE_HOST``/``_PORT`` say, as client-go and
    kubernetes_asyncio (our own client) read it; kopf's own login names ``kubernetes.default.svc``,
    which needs cluster DNS.
    """
    if in_cluster():
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if info is not None and host and port:
            info = dataclasses.replace(info, server=f"https://{_url_host(host)}:{port}")
    else:
        info = kopf.login_with_kubeconfig(**kwargs)
    return info


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def make_api_client() -> k8s_client.ApiClient:
    """The one kubernetes_asyncio client of the process, configured the same way as kopf's login."""
    configuration = k8s_client.Configuration()
    if in_cluster():
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await k8s_config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG") or None, client_configuration=configuration
        )
    api = k8s_client.ApiClient(configuration)
    if not any(os.environ.get(v) for v in PROXY_ENV):
        # kubernetes_asyncio's session trusts the environment, so aiohttp looks for a ~/.netrc entry in a
        # worker thread on EVERY request (the client sends its own Authorization header, so one would
        # never be used). Without proxy variables there is nothing else to trust.
        api.rest_client.pool_manager._trust_env = False
    return api


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """Every non-default kopf setting, each with the reason it is set."""
    # Our own names on objects, not kopf's defaults: users see stratarouter.io/* only.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # The same annotation kopf would write, built without deep-copying each whole object per event.
    settings.persistence.diffbase_storage = SlimDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # kopf turns handler log lines into Kubernetes Events; only warnings and errors are worth an Event.
    # Recoveries, restores and suspends post their own Events (events.py).
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "stratarouter-operator"
    settings.posting.reporting_instance = socket.gethostname()
    # Restart watch streams every ~5 minutes from the server side and give up on a silent connection a bit
    # later: a stream stuck behind a load balancer must not hide pod failures for long.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # Server-side filtering: the pod watch streams only pods we created, never every pod in the cluster.
    settings.watching.label_selectors["v1", "pods"] = POD_SELECTOR
    # One slow request must not stall a handler forever; kopf retries API calls with its own backoff.
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 15
    # Bounded retries for handlers without explicit ones (explicit retries=/backoff= are on ours).
    settings.execution.default_backoff = ours.handler_backoff_seconds
    # A deleted Execution keeps its finalizer until its daemon and TTL timer have exited; when the timer is
    # mid-run (it may be the one that deleted the Execution), kopf re-checks after this many seconds
    # (default 60, which left TTL-deleted Executions standing for a minute).
    settings.background.cancellation_polling = 1.0
    # Watching named namespaces: no cluster scanning. Otherwise kopf tries to list all namespaces (a
    # cluster-wide right the namespaced chart does not grant) and only falls back after ~55 s of retries.
    # CRDs are then discovered once at start instead of watched.
    settings.scanning.disabled = bool(ours.watch_namespaces)
    # Peering: standalone unless STRATA_PEERING names a peering object (several replicas). kopf lets the
    # highest priority run the handlers and freezes ALL replicas on a tie. Unless STRATA_PEERING_PRIORITY
    # pins it, the priority falls with the start time: the oldest replica handles, a newcomer (a rolling
    # update, a rescheduled pod) stands by instead of grabbing the handlers mid-flight, and takes over when
    # the active one leaves. The checkpoint API runs in every replica regardless.
    if not ours.peering:
        settings.peering.standalone = True
    else:
        settings.peering.name = ours.peering
        settings.peering.mandatory = True
        # kopf's default, 60 s, left the handlers unattended for a minute after the active replica's
        # node was lost; the refresh this costs is one peering patch per replica every 10-15 s.
        settings.peering.lifetime = ours.peering_lifetime_seconds
        settings.peering.priority = (
            ours.peering_priority if ours.peering_priority is not None else seniority_priority()
        )


def seniority_priority(now_ms: int | None = None) -> int:
    """A kopf peering priority that is higher the earlier the process started (random tie-breaker)."""
    started = int(time.time() * 1000) if now_ms is None else now_ms
    return (PRIORITY_EPOCH_MS - started) * 1000 + secrets.randbelow(1000)


@kopf.on.startup()
async def startup(*, settings: kopf.OperatorSettings, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    """Wire the shared resources into memo; refuse to start on bad settings or an unreachable store."""
    from stratarouter_runtime.operator.api.server import start_api
    from stratarouter_runtime.operator.api.status import StatusCoalescer
    from stratarouter_runtime.state import StateManager
    from stratarouter_runtime.state.migrations import migrate_url

    ours: OperatorSettings = memo.get("settings") or OperatorSettings.from_env()
    memo.settings = ours
    configure_kopf(settings, ours)
    if not ours.api_url_for_pods:
        logger.warning("STRATA_API_URL_FOR_PODS is empty: pods will not know where the checkpoint API is")
    memo.wakeups = Wakeups()
    memo.k8s = await make_api_client()
    if ours.run_migrations:
        applied = await migrate_url(ours.db_url, ours.db_schema)
        logger.info("store schema up to date (%d migration(s) applied)", applied)
    memo.store = StateManager(
        backend="postgresql",
        db_url=ours.db_url,
        db_schema=ours.db_schema,
        checkpoint_retention=ours.default_checkpoint_retention,
    )
    memo.status = StatusCoalescer(
        memo.k8s, ours.status_patch_interval_seconds, budget_per_second=ours.status_patch_budget_per_second
    )
    memo.lifecycle = Lifecycle(kube=Kube(memo.k8s), store=memo.store, settings=ours)
    memo.store_size = StoreSize(ours.db_url, ours.db_schema).start()  # stratarouter_store_bytes, _up
    memo.api_runner = await start_api(memo)
    if ours.view_enabled:  # the aggregated view API (view/server.py), beside the checkpoint API
        from stratarouter_runtime.operator.view.server import start_view

        memo.view_runner = await start_view(memo)


@kopf.on.cleanup()
async def cleanup(*, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    """Close everything startup opened, in reverse order; flush pending status patches first."""
    view = memo.get("view_runner")
    if view is not None:
        await view.cleanup()
    runner = memo.get("api_runner")
    if runner is not None:
        await runner.cleanup()
    for background in (memo.get("status"), memo.get("store_size")):
        if background is not None:
            await background.close()
    store = memo.get("store")
    if store is not None:
        await store.close()
    k8s = memo.get("k8s")
    if k8s is not None:
        await k8s.close()
    logger.info("operator resources closed")


def configure_logging(level: int, log_format: str = "text") -> None:
    """Root logging for the process: text lines, or kopf's JSON (one object per line, with the object)."""
    if log_format == "json":
        kopf.configure(debug=level <= logging.DEBUG, log_format=kopf.LogFormat.JSON)
        logging.getLogger().setLevel(level)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_operator(
    ours: OperatorSettings,
    *,
    log_level: int = logging.WARNING,
    log_format: str = "text",
    liveness: str | None = None,
) -> int:
    """Run the operator until SIGINT/SIGTERM with settings already validated; returns the exit code.

    ``stratarouter operator`` (cli.py) parses and validates the command line and the environment into
    ``ours``, and has put its options into ``os.environ`` as the ``STRATA_*`` variables they stand for.
    """
    configure_logging(log_level, log_format)
    namespaces = list(ours.watch_namespaces)
    kopf.run(
        standalone=not ours.peering,
        peering_name=ours.peering or None,
        priority=ours.peering_priority,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        memo=kopf.Memo(settings=ours),
    )
    return 0
