"""The view API's JSON endpoints: an Execution's history, states, diff, audit trail and live status.

Every one is ``GET /apis/view.stratarouter.io/v1alpha1/namespaces/{ns}/executions/{name}/{sub}``,
allowed when the user may ``get`` the Execution (checked by the middleware in :mod:`.server`), and read
from the store under the Execution's current run (``ns/name``). Lists come in pages (``limit``, at most
:data:`~.paths.MAX_PAGE`; ``continue``: the opaque token of the page before). History pages carry no
states (one state at a time comes from ``/state``), so a page's memory is bounded by the store's batches.
The answers' shapes are in docs/plugin.md.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from aiohttp import web

from stratarouter_runtime.operator.api.history import batches
from stratarouter_runtime.operator.api.limits import Slots
from stratarouter_runtime.operator.pods import execution_id
from stratarouter_runtime.operator.view import jsondiff
from stratarouter_runtime.operator.view.paths import DEFAULT_PAGE, GROUP_VERSION, MAX_PAGE
from stratarouter_runtime.state import errors
from stratarouter_runtime.state.wire import execution_to_wire

STORE_KEY: web.AppKey[Any] = web.AppKey("view_store", object)
SLOTS_KEY: web.AppKey[Slots] = web.AppKey("view_slots", Slots)


class BadRequest(Exception):
    """400 with this message."""


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _target(request: web.Request) -> tuple[str, str, str]:
    ns, name = request.match_info["namespace"], request.match_info["name"]
    return ns, name, execution_id(ns, name)


def _meta(request: web.Request, **extra: Any) -> dict[str, Any]:
    return {"name": request.match_info["name"], "namespace": request.match_info["namespace"], **extra}


def query_int(request: web.Request, name: str, *, minimum: int = 0, required: bool = False) -> int | None:
    raw = request.query.get(name, "")
    if raw == "":
        if required:
            raise BadRequest(f"query parameter {name!r} is required (an integer >= {minimum})")
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"query parameter {name!r} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise BadRequest(f"query parameter {name!r} must be >= {minimum}, got {value}")
    return value


def page_limit(request: web.Request) -> int:
    return min(query_int(request, "limit", minimum=1) or DEFAULT_PAGE, MAX_PAGE)


def encode_continue(kind: str, after: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"k": kind, "after": after})).decode().rstrip("=")


def decode_continue(request: web.Request, kind: str) -> int | None:
    """The cursor in ``?continue=`` (from a page of the same list), or None to start at the beginning."""
    raw = request.query.get("continue", "")
    if not raw:
        return None
    try:
        value = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        after = value["after"]
        if value["k"] != kind or not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise ValueError(kind)
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise BadRequest(f"'continue' is not a token from a page of this {kind} list") from exc
    return after


def checkpoint_meta(cp: Any) -> dict[str, Any]:
    return {
        "step": cp.step,
        "attempt": cp.attempt,
        "timestamp": cp.timestamp.isoformat(),
        "sizeBytes": cp.size_bytes,
    }


async def history(request: web.Request) -> web.Response:
    """``/history?limit=&continue=``: the history checkpoints oldest first, without their states."""
    _, _, eid = _target(request)
    limit = page_limit(request)
    after = decode_continue(request, "history")
    items: list[dict[str, Any]] = []
    more = False
    # the store hands states over with the checkpoints: a page holds one of the few memory-heavy slots
    async with request.app[SLOTS_KEY].hold():
        source = batches(request.app[STORE_KEY], eid, after, limit + 1)  # one more: is there a next page?
        try:
            async for batch in source:
                for cp in batch:
                    if len(items) == limit:
                        more = True
                        break
                    items.append(checkpoint_meta(cp))
                if more:
                    break
        finally:
            await source.aclose()
    if not items and after is None and await request.app[STORE_KEY].get_execution(eid) is None:
        raise errors.ExecutionNotFound(eid)
    meta = _meta(request)
    if more:
        meta["continue"] = encode_continue("history", items[-1]["step"])
    return _json({"kind": "ExecutionHistory", "apiVersion": GROUP_VERSION, "metadata": meta, "items": items})


async def _checkpoint(store: Any, eid: str, step: int | None) -> Any:
    if step is None:
        found = await store.get_latest_checkpoint(eid)
        if found is None:
            if await store.get_execution(eid) is None:
                raise errors.ExecutionNotFound(eid)
            raise errors.CheckpointNotFound(eid, None)
        return found
    return await store.get_checkpoint(eid, step)


async def state(request: web.Request) -> web.Response:
    """``/state?step=N``: one history checkpoint with its state (default: the latest)."""
    _, _, eid = _target(request)
    step = query_int(request, "step")
    async with request.app[SLOTS_KEY].hold():
        cp = await _checkpoint(request.app[STORE_KEY], eid, step)
        body = {
            "kind": "ExecutionState",
            "apiVersion": GROUP_VERSION,
            "metadata": _meta(request),
            **checkpoint_meta(cp),
            "state": cp.state_data,
        }
        return _json(body)


async def diff(request: web.Request) -> web.Response:
    """``/diff?from=A&to=B``: JSON Patch operations from step A's state to step B's."""
    _, _, eid = _target(request)
    a = query_int(request, "from", required=True)
    b = query_int(request, "to", required=True)
    store = request.app[STORE_KEY]
    async with request.app[SLOTS_KEY].hold():
        first = await _checkpoint(store, eid, a)
        second = await _checkpoint(store, eid, b)
        result = jsondiff.diff(first.state_data, second.state_data)
        body = {
            "kind": "ExecutionDiff",
            "apiVersion": GROUP_VERSION,
            "metadata": _meta(request),
            "from": checkpoint_meta(first),
            "to": checkpoint_meta(second),
            "operations": result.ops,
            "truncated": result.truncated,
        }
        return _json(body)


def audit_json(event: Any) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "kind": event.kind,
        "step": event.step,
        "attempt": event.attempt,
        "at": event.at.isoformat(),
        "sizeBytes": event.size_bytes,
        "hash": event.hash,
        "detail": event.detail,
    }


async def audit(request: web.Request) -> web.Response:
    """``/audit?limit=&continue=``: the audit trail oldest first."""
    _, _, eid = _target(request)
    limit = page_limit(request)
    after = decode_continue(request, "audit")
    store = request.app[STORE_KEY]
    events = await store.get_audit(eid, after_seq=after, limit=limit + 1)
    if not events and after is None and await store.get_execution(eid) is None:
        raise errors.ExecutionNotFound(eid)
    meta = _meta(request)
    if len(events) > limit:
        events = events[:limit]
        meta["continue"] = encode_continue("audit", events[-1].seq)
    items = [audit_json(e) for e in events]
    return _json({"kind": "ExecutionAudit", "apiVersion": GROUP_VERSION, "metadata": meta, "items": items})


async def status(request: web.Request) -> web.Response:
    """``/status``: the stored run record (live step and attempt, not the coalesced status patch)."""
    _, _, eid = _target(request)
    found = await request.app[STORE_KEY].get_execution(eid)
    if found is None:
        raise errors.ExecutionNotFound(eid)
    body = {"kind": "ExecutionStoreStatus", "apiVersion": GROUP_VERSION, "metadata": _meta(request)}
    return _json({**body, **execution_to_wire(found)})


ROUTES = {"history": history, "state": state, "diff": diff, "audit": audit, "status": status}
