"""The web timeline: a page and its two assets, served by the view server under ``.../v1alpha1/ui/``.

The page is opened through the Kubernetes API server (``kubectl proxy``, or any proxy that carries the
user's credentials) at ``/apis/view.stratarouter.io/v1alpha1/ui/``. Everything it loads or calls is a
relative URL, so it works under whatever prefix a proxy adds: the list and the Events come from the
standard API (``../../../stratarouter.io/...``, ``../../../../api/v1/...``) and the history, states and
diffs from the view API's own endpoints (``../namespaces/NS/executions/NAME/...``), all of them under the
user's own identity. The assets hold no data: the data endpoints are the ones that check access.

The files ship in the package (``static/``), read once at start; no framework, no build step, nothing
from another host (the Content-Security-Policy header says so to the browser too).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from stratarouter_runtime.operator.view import paths

UI_PATH = paths.UI_PATH.rstrip("/")
"""Where the page lives (without its slash), as the aggregated API's requests reach the operator."""

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}

HEADERS = {
    # Only this origin: no CDN, no inline script, no frames; data comes from the same API server.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


def load_assets() -> dict[str, Asset]:
    """The page's files from the package's ``static/`` folder."""
    folder = resources.files(__package__ or __name__.rpartition(".")[0]) / "static"
    return {name: Asset((folder / name).read_bytes(), kind) for name, kind in ASSETS.items()}


def add_ui_routes(app: web.Application, path: str = UI_PATH) -> None:
    """Serve the page at ``path + "/"`` and its assets beside it; ``path`` alone redirects there."""
    assets = load_assets()

    async def redirect(request: web.Request) -> web.StreamResponse:
        # Relative, so the proxy's prefix is kept: ".../ui" -> ".../ui/".
        raise web.HTTPFound(path.rsplit("/", 1)[-1] + "/")

    async def asset(request: web.Request) -> web.StreamResponse:
        found = assets.get(request.match_info.get("name") or "index.html")
        if found is None:
            raise web.HTTPNotFound(text="no such asset\n")
        return web.Response(body=found.body, headers={**HEADERS, "Content-Type": found.content_type})

    app.router.add_get(path, redirect)
    app.router.add_get(path + "/", asset)
    app.router.add_get(path + "/{name}", asset)
