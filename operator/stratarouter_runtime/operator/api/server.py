"""The checkpoint API every operator replica serves to its Executions' pods, plus /healthz and /metrics.

A pod can only touch its own Execution: the execution id and attempt come from the caller's verified
identity (see :mod:`.auth`), never from the request. Writes go straight to the SDK's store and are
durable before the 2xx; a write from an older attempt is refused by the store (409). After a write the
new last checkpoint is handed to the :class:`~.status.StatusCoalescer`, which mirrors it into the
Execution's status without holding up the response.

Routes (JSON bodies and answers)::

    POST /v1/checkpoint  {"step": int >= 0, "state": any JSON}   history checkpoint (resume point)
    POST /v1/save        {"step": int >= 0, "state": any JSON}   current state only (never history)

Writes may say ``"compress": true|false`` (the pod's spec.checkpoint.compression); absent: the store's
default.
    GET  /v1/state[?onCorrupt=raise|previous]                    {"step", "attempt", "state"}; 404 when none
    GET  /v1/history[?after_step=N&limit=M]                      {"checkpoints": [...], "nextAfterStep"}
    GET  /v1/checkpoint[?step=N]                                 one history checkpoint (default: latest)
    GET  /v1/execution                                           the stored execution record
    POST /v1/complete                                            mark the execution completed
    POST /v1/fail        {"error": str}                          mark it failed
    GET  /healthz, GET /metrics

What a request may cost is bounded (:mod:`.limits`, :mod:`.connections`, :mod:`.history`): bodies are
refused past the store's ``max_state_bytes`` before they are parsed, a request's head and body must
arrive in time, history comes in pages capped in bytes, and memory-heavy requests share a few slots
(503 with ``Retry-After`` when they are all taken).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from stratarouter_runtime.operator.api.auth import Authenticator, AuthError, Caller
from stratarouter_runtime.operator.api.connections import ApiRunner, Connections
from stratarouter_runtime.operator.api.current_pods import CurrentPods
from stratarouter_runtime.operator.api.history import checkpoint_json, history_page
from stratarouter_runtime.operator.api.limits import (
    RETRY_AFTER_SECONDS,
    SMALL_BODY_BYTES,
    ApiLimits,
    Refused,
    Slots,
    check_declared,
    expensive_body,
    read_body,
)
from stratarouter_runtime.operator.api.status import StatusCoalescer
from stratarouter_runtime.operator.events import CORRUPT_CHECKPOINT_SKIPPED, post_execution_event
from stratarouter_runtime.operator.kube import Kube
from stratarouter_runtime.operator.metrics import (
    API_REQUESTS_TOTAL,
    CHECKPOINT_SECONDS,
    CHECKPOINTS_TOTAL,
    render,
)
from stratarouter_runtime.operator.settings import OperatorSettings
from stratarouter_runtime.state import codec, errors, integrity
from stratarouter_runtime.state.models import Checkpoint
from stratarouter_runtime.state.wire import JSON, Route, execution_to_wire, to_wire

log = logging.getLogger(__name__)

MAX_HISTORY_LIMIT = 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

AUTH_KEY: web.AppKey[Authenticator] = web.AppKey("authenticator", Authenticator)
STORE_KEY: web.AppKey[Any] = web.AppKey("store", object)
STATUS_KEY: web.AppKey[StatusCoalescer] = web.AppKey("status", StatusCoalescer)
LIMITS_KEY: web.AppKey[ApiLimits] = web.AppKey("limits", ApiLimits)
SLOTS_KEY: web.AppKey[Slots] = web.AppKey("slots", Slots)
CONNECTIONS_KEY: web.AppKey[Connections] = web.AppKey("connections", Connections)
KUBE_KEY: web.AppKey[Kube] = web.AppKey("kube", Kube)


class BadRequest(Exception):
    """A request the API refuses with 400 and this message."""


def error_response(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The JSON error answer ``{"error", "message"}``."""
    return error_answer(status, {"error": reason, "message": message}, headers)


def error_answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    """An error answer of ``body``; a 503 says when to come back (the SDK retries it as unavailability)."""
    if status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS), **(headers or {})}
    return web.json_response(body, status=status, headers=headers)


def parse_json_object(raw: bytes | bytearray) -> dict[str, Any]:
    """Decode a request body that must be a JSON object; an empty body is ``{}``."""
    if not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(value).__name__}")
    return value


def parse_step(value: Any, field: str = "step") -> int:
    """A non-negative integer step (JSON booleans are not steps)."""
    if value is None:
        raise BadRequest(f"missing {field!r} (a non-negative integer)")
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{field!r} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise BadRequest(f"{field!r} must be a non-negative integer, got {value}")
    return value


def parse_query_int(request: web.Request, name: str, *, minimum: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"query parameter {name!r} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise BadRequest(f"query parameter {name!r} must be >= {minimum}, got {value}")
    return value


def parse_write(body: dict[str, Any]) -> tuple[int, Any, bool | None]:
    """``(step, state, compress)`` of a checkpoint/save body; ``compress`` absent: the store's default."""
    step = parse_step(body.get("step"))
    if "state" not in body:
        raise BadRequest("missing 'state' (any JSON value)")
    compress = body.get("compress")
    if compress is not None and not isinstance(compress, bool):
        raise BadRequest(f"'compress' must be true or false, got {compress!r}")
    return step, body["state"], compress


async def _caller(request: web.Request) -> Caller:
    return await request.app[AUTH_KEY].authenticate(request.headers.get("Authorization"))


def _body_limit(request: web.Request, *, state: bool) -> int:
    """A write's body may hold the largest state the store takes; any other body is small."""
    return request.app[LIMITS_KEY].max_body_bytes if state else SMALL_BODY_BYTES


async def _body(request: web.Request, *, state: bool = False) -> dict[str, Any]:
    """The JSON object in the body, read within the size and time limits before it is parsed."""
    limit = _body_limit(request, state=state)
    raw = await read_body(request, limit, request.app[LIMITS_KEY].body_timeout_seconds, state=state)
    return parse_json_object(raw)


async def _write(request: web.Request, *, history: bool) -> web.Response:
    started = time.perf_counter()
    check_declared(request, _body_limit(request, state=True), state=True)  # before any other work
    await _caller(request)
    if expensive_body(request):
        async with request.app[SLOTS_KEY].hold():
            caller, step, size = await _read_and_store(request, history)
    else:  # the bulk of the traffic: no slot, and no context manager to set up for none
        caller, step, size = await _read_and_store(request, history)
    CHECKPOINTS_TOTAL.inc()
    CHECKPOINT_SECONDS.observe(time.perf_counter() - started)
    if history:
        now = datetime.now(UTC)
        request.app[STATUS_KEY].note_checkpoint(
            caller.namespace, caller.execution, step, now, size, caller.attempt
        )
    execution_id = caller.execution_id
    return _json({"executionId": execution_id, "step": step, "attempt": caller.attempt, "sizeBytes": size})


async def _read_and_store(request: web.Request, history: bool) -> tuple[Caller, int, int]:
    """Read and parse a write's body, check the caller again, store it: (caller, step, size in bytes)."""
    step, state, compress = parse_write(await _body(request, state=True))
    # Again, now that the body is in (it may take up to the body timeout): the Execution may have
    # been deleted or re-created meanwhile, and its stored run archived. From memory when current.
    caller = await _caller(request)
    # the pod's SDK applied its own checkpoint_interval: a save stays a save here
    size: int = await request.app[STORE_KEY].write(
        caller.execution_id,
        step,
        state,
        history=history,
        attempt=caller.attempt,
        compress=compress,
        must_exist=True,  # the operator started the run; a missing one was deleted or archived
    )
    return caller, step, size


async def checkpoint(request: web.Request) -> web.Response:
    return await _write(request, history=True)


async def save(request: web.Request) -> web.Response:
    return await _write(request, history=False)


def parse_on_corrupt(request: web.Request) -> str:
    """The pod's ``on_corrupt`` (``?onCorrupt=``; absent: raise)."""
    value = request.query.get(integrity.ON_CORRUPT_PARAM, integrity.RAISE)
    if value not in integrity.ON_CORRUPT:
        allowed = " or ".join(sorted(integrity.ON_CORRUPT))
        raise BadRequest(f"query parameter {integrity.ON_CORRUPT_PARAM!r} must be {allowed}, got {value!r}")
    return value


async def load_state(request: web.Request) -> web.Response:
    """The current state with its step and attempt; answered from the stored JSON without re-encoding.
    A corrupt one is CorruptCheckpoint (500), or with ``?onCorrupt=previous`` the store's fallback."""
    caller = await _caller(request)
    on_corrupt = parse_on_corrupt(request)
    store = request.app[STORE_KEY]
    try:
        stored = await store.backend.load(caller.execution_id)
    except errors.CorruptCheckpointError as exc:
        if on_corrupt != integrity.PREVIOUS:
            raise
        used = await store.fall_back(exc)
        await _show_fallback(request, caller, exc, used)
        return _json({"step": used.step, "attempt": caller.attempt, "state": used.state_data})
    if stored is None:
        raise errors.CheckpointNotFound(caller.execution_id, None)
    state_json = codec.decode_json_bytes(stored.data, stored.codec)
    body = b'{"step":%d,"attempt":%d,"state":%b}' % (stored.step, stored.attempt, state_json)
    return web.Response(body=body, content_type=JSON)


async def _show_fallback(
    request: web.Request, caller: Caller, error: errors.CorruptCheckpointError, used: Checkpoint
) -> None:
    """The Execution shows the rewind: its STEP becomes the used step (a rewind of the status, as a
    restore's), and a Warning Event names both steps."""
    status = request.app[STATUS_KEY]
    status.rewound(caller.namespace, caller.execution, caller.attempt)
    status.note_checkpoint(
        caller.namespace, caller.execution, used.step, used.timestamp, used.size_bytes, caller.attempt
    )
    message = (
        f"the state at step {error.step} is corrupt (sha256 mismatch); resumed from checkpoint {used.step}"
    )
    await post_execution_event(
        request.app[KUBE_KEY],
        caller.namespace,
        caller.execution,
        CORRUPT_CHECKPOINT_SKIPPED,
        message,
        "Warning",
    )


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON)


async def get_checkpoint(request: web.Request) -> web.Response:
    """A history checkpoint: ``?step=N``, or the latest one."""
    caller = await _caller(request)
    step = parse_query_int(request, "step", minimum=0)
    store = request.app[STORE_KEY]
    async with request.app[SLOTS_KEY].hold():  # one state, decoded and encoded again
        if step is None:
            found = await store.get_latest_checkpoint(caller.execution_id)
            if found is None:
                raise errors.CheckpointNotFound(caller.execution_id, None)
        else:
            found = await store.get_checkpoint(caller.execution_id, step)
        return _json(checkpoint_json(found))


async def get_execution(request: web.Request) -> web.Response:
    """The stored execution record (status, attempt, last checkpoint step, ...)."""
    caller = await _caller(request)
    found = await request.app[STORE_KEY].get_execution(caller.execution_id)
    if found is None:
        raise errors.ExecutionNotFound(caller.execution_id)
    return _json(execution_to_wire(found))


async def history(request: web.Request) -> web.StreamResponse:
    """One page of history, streamed (see :mod:`.history`)."""
    caller = await _caller(request)
    after = parse_query_int(request, "after_step", minimum=0)
    limit = parse_query_int(request, "limit", minimum=1)
    limit = min(limit or MAX_HISTORY_LIMIT, MAX_HISTORY_LIMIT)
    limits = request.app[LIMITS_KEY]
    async with request.app[SLOTS_KEY].hold():
        return await history_page(
            request,
            request.app[STORE_KEY],
            caller.execution_id,
            after=after,
            limit=limit,
            max_bytes=limits.max_history_bytes,
            send_timeout=limits.body_timeout_seconds,
        )


async def complete(request: web.Request) -> web.Response:
    caller = await _caller(request)
    await _body(request)  # must be empty or a JSON object
    await request.app[STORE_KEY].complete(caller.execution_id, attempt=caller.attempt)
    return web.json_response({"executionId": caller.execution_id, "status": "completed"})


async def fail(request: web.Request) -> web.Response:
    caller = await _caller(request)
    body = await _body(request)
    error = body.get("error")
    if not isinstance(error, str) or not error.strip():
        raise BadRequest("missing 'error' (a non-empty string saying why the run failed)")
    await request.app[STORE_KEY].fail(caller.execution_id, error, attempt=caller.attempt)
    return web.json_response({"executionId": caller.execution_id, "status": "failed"})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    payload, content_type = render()
    return web.Response(body=payload, headers={"Content-Type": content_type})


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every refusal into a JSON ``{"error", "message"}`` answer with the right code."""
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "other"
    try:
        response = await handler(request)
    except AuthError as exc:
        response = error_response(exc.status, exc.reason, exc.message)
        if exc.status == 503 and exc.reason != "Busy":
            log.warning("checkpoint API: %s", exc.message)
    except Refused as exc:
        response = error_response(exc.status, exc.reason, exc.message, exc.headers)
    except BadRequest as exc:
        response = error_response(400, "BadRequest", str(exc))
    except errors.StateError as exc:  # code, status and details from the one table (state/wire.py)
        if isinstance(exc, errors.StaleAttemptError):  # its pod is done: no reason to keep its token
            request.app[AUTH_KEY].forget(request.headers.get("Authorization"))
        response = error_answer(*to_wire(exc))
    except web.HTTPException as exc:
        response = error_response(exc.status, exc.reason, exc.text or exc.reason)
    except Exception:  # a bug, not the caller's fault: log it, answer 500 in the same JSON shape
        log.exception("checkpoint API: %s %s failed", request.method, request.path)
        response = error_response(500, "InternalError", "internal error in the checkpoint API (see its log)")
    _requests_counter(route, response.status).inc()
    return response


_REQUEST_COUNTERS: dict[tuple[str, int], Any] = {}
"""``stratarouter_api_requests_total`` children by (route, code): ``labels()`` checks and locks each time."""


def _requests_counter(route: str, code: int) -> Any:
    found = _REQUEST_COUNTERS.get((route, code))
    if found is None:
        found = _REQUEST_COUNTERS[(route, code)] = API_REQUESTS_TOTAL.labels(route=route, code=str(code))
    return found


def build_app(
    authenticator: Authenticator,
    store: Any,
    status: StatusCoalescer,
    kube: Kube,
    limits: ApiLimits | None = None,
) -> web.Application:
    """The aiohttp application; ``store`` is the SDK's StateManager, whose ``max_state_bytes`` bounds
    write bodies unless ``limits`` says otherwise; ``kube`` posts the Events of the Executions."""
    if limits is None:
        limits = ApiLimits(max_state_bytes=store.config.max_state_bytes)
    connections = Connections(limits.header_timeout_seconds)
    app = web.Application(
        middlewares=[connections.middleware(), errors_middleware], client_max_size=limits.max_body_bytes
    )
    app[AUTH_KEY] = authenticator
    app[STORE_KEY] = store
    app[STATUS_KEY] = status
    app[KUBE_KEY] = kube
    app[LIMITS_KEY] = limits
    app[SLOTS_KEY] = Slots(limits.max_expensive_requests)
    app[CONNECTIONS_KEY] = connections
    app.router.add_post(Route.CHECKPOINT, checkpoint)
    app.router.add_post(Route.SAVE, save)
    app.router.add_get(Route.STATE, load_state)
    app.router.add_get(Route.HISTORY, history)
    app.router.add_get(Route.CHECKPOINT, get_checkpoint)
    app.router.add_get(Route.EXECUTION, get_execution)
    app.router.add_post(Route.COMPLETE, complete)
    app.router.add_post(Route.FAIL, fail)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_api(memo: Any) -> web.AppRunner:
    """Start the API on ``memo.settings.api_host:api_port`` (called from the operator's startup)."""
    settings = memo.settings
    # Every replica serves the API, so each keeps its own view of the Executions' current pods.
    current = CurrentPods(memo.k8s, settings.watch_namespaces)
    current.start()
    authenticator = Authenticator(
        memo.k8s,
        cache_seconds=settings.token_cache_seconds,
        current=current.names,
        review_concurrency=settings.token_review_concurrency,
    )
    limits = limits_from(settings, memo.store.config.max_state_bytes)
    app = build_app(authenticator, memo.store, memo.status, Kube(memo.k8s), limits)

    async def stop_watching(_: web.Application) -> None:
        await current.close()

    app.on_cleanup.append(stop_watching)
    runner = ApiRunner(
        app,
        app[CONNECTIONS_KEY],
        access_log=None,
        handle_signals=False,
        keepalive_timeout=limits.keepalive_seconds,
    )
    await runner.setup()
    await runner.listen(settings.api_host, settings.api_port)
    log.info("checkpoint API listening on %s:%s", settings.api_host, settings.api_port)
    return runner


def limits_from(settings: OperatorSettings, max_state_bytes: int) -> ApiLimits:
    """The API's limits from the operator's settings and its store's largest state."""
    return ApiLimits(
        max_state_bytes=max_state_bytes,
        max_expensive_requests=settings.api_max_expensive_requests,
        max_history_bytes=settings.api_max_history_bytes,
        header_timeout_seconds=settings.api_header_timeout_seconds,
        body_timeout_seconds=settings.api_body_timeout_seconds,
        keepalive_seconds=settings.api_keepalive_seconds,
    )
