"""The view API's aiohttp application and its start beside the checkpoint API.

Every request is first authenticated as the API server's front proxy (:mod:`.frontproxy`, else 401);
discovery and the UI's pages then answer anyone so authenticated; an Execution's subresources also need
the user to be allowed ``get`` on that Execution (:mod:`.authorize`, else 403 naming the permission).
Errors are Kubernetes ``Status`` objects (:mod:`.status`), store errors with the codes of
``state/wire.py``.

Served over TLS only (the API server will not proxy to plain HTTP), on its own port
(``STRATA_VIEW_PORT``), with its own serving certificate (``STRATA_VIEW_TLS_CERT_FILE`` and
``_KEY_FILE``), whose name the APIService's ``caBundle`` vouches for.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from stratarouter_runtime.operator.api.connections import Connections
from stratarouter_runtime.operator.api.limits import Refused, Slots
from stratarouter_runtime.operator.view import discovery, reads, ui
from stratarouter_runtime.operator.view.authorize import Authorizer, Forbidden, ReviewUnavailable
from stratarouter_runtime.operator.view.frontproxy import (
    RequestHeaderConfig,
    Unauthenticated,
    authenticate,
    load_requestheader,
    server_ssl_context,
)
from stratarouter_runtime.operator.view.paths import API_PATH, GROUP
from stratarouter_runtime.operator.view.status import state_error_response, status_response
from stratarouter_runtime.state import errors

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONFIG_KEY: web.AppKey[RequestHeaderConfig] = web.AppKey("requestheader", RequestHeaderConfig)
AUTHORIZER_KEY: web.AppKey[Authorizer] = web.AppKey("authorizer", Authorizer)

EXECUTION_PATH = API_PATH + "/namespaces/{namespace}/executions/{name}/{sub}"


async def _discovery_root(request: web.Request) -> web.Response:
    return web.json_response(discovery.group_list())


async def _discovery_group(request: web.Request) -> web.Response:
    return web.json_response(discovery.group())


async def _discovery_version(request: web.Request) -> web.Response:
    return web.json_response(discovery.resource_list())


async def _execution(request: web.Request) -> web.StreamResponse:
    sub = request.match_info["sub"]
    route = reads.ROUTES.get(sub)
    if route is None:
        return status_response(
            404, f'the view API has no "{sub}" for executions (it has {", ".join(reads.ROUTES)})'
        )
    ns, name = request.match_info["namespace"], request.match_info["name"]
    await request.app[AUTHORIZER_KEY].check(request["user"], ns, name)
    return await route(request)


@web.middleware
async def view_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Front-proxy authentication for every path, then every refusal as a ``Status``."""
    name = request.match_info.get("name", "")
    try:
        request["user"] = authenticate(request.app[CONFIG_KEY], request)
        return await handler(request)
    except Unauthenticated as exc:
        return status_response(401, f"Unauthorized: {exc}")
    except Forbidden as exc:
        return status_response(403, str(exc), name=exc.name)
    except ReviewUnavailable as exc:
        return status_response(503, str(exc))
    except reads.BadRequest as exc:
        return status_response(400, str(exc), name=name)
    except Refused as exc:
        response = status_response(exc.status, exc.message, cause=exc.reason, name=name)
        response.headers.update(exc.headers or {})
        return response
    except errors.StateError as exc:
        return state_error_response(exc, name=name)
    except web.HTTPException as exc:
        return status_response(exc.status, exc.text or exc.reason)
    except Exception:
        log.exception("view API: %s %s failed", request.method, request.path)
        return status_response(500, "internal error in the view API (see the operator's log)")


def build_app(
    config: RequestHeaderConfig,
    authorizer: Authorizer,
    store: Any,
    slots: Slots,
    connections: Connections | None = None,
) -> web.Application:
    """The view application (no TLS here: :func:`start_view` serves it)."""
    middlewares = [connections.middleware()] if connections is not None else []
    app = web.Application(middlewares=[*middlewares, view_middleware])
    app[CONFIG_KEY] = config
    app[AUTHORIZER_KEY] = authorizer
    app[reads.STORE_KEY] = store
    app[reads.SLOTS_KEY] = slots
    app.router.add_get("/apis", _discovery_root)
    app.router.add_get(f"/apis/{GROUP}", _discovery_group)
    app.router.add_get(API_PATH, _discovery_version)
    app.router.add_get(EXECUTION_PATH, _execution)
    ui.add_ui_routes(app)
    return app


class ViewRunner(web.AppRunner):
    """The view application's runner: TLS, and the checkpoint API's header deadline on every connection
    (one that sends no complete request in ``STRATA_API_HEADER_TIMEOUT_SECONDS`` is closed)."""

    def __init__(self, app: web.Application, connections: Connections, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._connections = connections
        self._listener: asyncio.Server | None = None

    async def listen(self, host: str, port: int, context: ssl.SSLContext) -> int:
        assert self.server is not None, "setup() first"
        factory = self._connections.protocol_factory(self.server)
        self._listener = await asyncio.get_running_loop().create_server(factory, host, port, ssl=context)
        bound: int = self._listener.sockets[0].getsockname()[1]
        return bound

    async def cleanup(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await super().cleanup()


async def start_view(memo: Any) -> web.AppRunner:
    """Serve the view API on ``view_host:view_port`` with TLS (called from the operator's startup)."""
    settings = memo.settings
    if not settings.view_tls_cert_file or not settings.view_tls_key_file:
        raise RuntimeError("the view API needs STRATA_VIEW_TLS_CERT_FILE and STRATA_VIEW_TLS_KEY_FILE")
    config = await load_requestheader(memo.k8s)
    context = server_ssl_context(settings.view_tls_cert_file, settings.view_tls_key_file, config)
    authorizer = Authorizer(memo.k8s, cache_seconds=settings.view_authz_cache_seconds)
    connections = Connections(settings.api_header_timeout_seconds)
    app = build_app(config, authorizer, memo.store, Slots(settings.api_max_expensive_requests), connections)
    runner = ViewRunner(
        app,
        connections,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=settings.api_keepalive_seconds,
    )
    await runner.setup()
    port = await runner.listen(settings.view_host, settings.view_port, context)
    log.info("view API (%s) listening on %s:%s", GROUP, settings.view_host, port)
    return runner
