"""The page's routes, without a browser: the files from the package, their types and headers."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stratarouter_runtime.operator.view.ui import UI_PATH, add_ui_routes


async def client() -> TestClient[web.Request, web.Application]:
    app = web.Application()
    add_ui_routes(app)
    test_client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await test_client.start_server()
    return test_client


async def test_the_page_and_its_assets_come_from_the_package() -> None:
    c = await client()
    try:
        page = await c.get(f"{UI_PATH}/")
        assert page.status == 200
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        html = await page.text()
        # relative asset URLs only: the page works under any proxy prefix
        assert 'src="app.js"' in html
        assert 'href="app.css"' in html
        assert "http://" not in html
        assert "https://" not in html
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        script = await c.get(f"{UI_PATH}/app.js")
        assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
        js = await script.text()
        assert 'const CRD = "../../../stratarouter.io/v1alpha1";' in js
        assert 'fetch("/' not in js
        assert "https://" not in js
        css = await c.get(f"{UI_PATH}/app.css")
        assert css.headers["Content-Type"] == "text/css; charset=utf-8"
        assert (await c.get(f"{UI_PATH}/secrets.txt")).status == 404
        assert (await c.get(f"{UI_PATH}/../paths.py")).status == 404
    finally:
        await c.close()


async def test_the_bare_path_redirects_relatively_to_the_slash() -> None:
    c = await client()
    try:
        resp = await c.get(UI_PATH, allow_redirects=False)
        assert resp.status == 302
        assert resp.headers["Location"] == "ui/"
    finally:
        await c.close()
