"""Errors as Kubernetes ``Status`` objects, so ``kubectl get --raw`` prints their message.

A store error keeps its code and status from the one table (``state/wire.py``): the code is the
Status's ``details.causes[0].reason`` and its details ride along in ``details.causes[0].field`` pairs
rendered as ``key=value``; the Status ``reason`` is the Kubernetes word for the HTTP status.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from stratarouter_runtime.state import errors
from stratarouter_runtime.state.wire import to_wire

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status_body(code: int, message: str, *, cause: str = "", details: dict[str, Any] | None = None,
                name: str = "") -> dict[str, Any]:  # fmt: skip
    """A ``v1 Status`` (``kind: Status``) of a failure."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": REASONS.get(code, "InternalError" if code >= 500 else "BadRequest"),
        "code": code,
    }
    if cause or details or name:
        extra: dict[str, Any] = {"group": "stratarouter.io", "kind": "executions"}
        if name:
            extra["name"] = name
        if cause:
            extra["causes"] = [
                {"reason": cause, "message": message},
                *({"reason": cause, "field": k, "message": str(v)} for k, v in (details or {}).items()),
            ]
        body["details"] = extra
    return body


def status_response(code: int, message: str, **kwargs: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps(status_body(code, message, **kwargs)), status=code, content_type="application/json"
    )


def state_error_response(exc: errors.StateError, name: str = "") -> web.Response:
    """A store error as a Status, with the checkpoint API's code and status for it."""
    code, body = to_wire(exc)
    details = {k: v for k, v in body.items() if k not in ("error", "message")}
    headers = {"Retry-After": "1"} if code == 503 else None
    response = status_response(
        code, str(body["message"]), cause=str(body["error"]), details=details, name=name
    )
    if headers:
        response.headers.update(headers)
    return response
