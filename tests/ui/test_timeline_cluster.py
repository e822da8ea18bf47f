"""The web timeline through the real API server: ``kubectl proxy`` as a user, the aggregated view API
served by the operator, a real PostgreSQL, headless Chromium.

The view API is registered as the view API's own tests do it (tests/operator/test_view_rbac.py, whose
fixtures tests/ui/conftest.py brings here); ``kubectl proxy --as=USER`` carries that user's identity,
so what the page can read is what the user may read.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from stratarouter_dev.ports import free_port
from tests.operator.conftest import Executions, wait_until
from tests.operator.test_view_rbac import GET_EXECUTIONS, View, checkpoints, kwok_run, role
from tests.ui import browser
from tests.ui.browser import count, texts, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

UI = "/apis/view.stratarouter.io/v1alpha1/ui/"
PAGE = UI + "index.html"
"""The page as a user without ``list`` on ``ui`` opens it: the API server takes ``ui/`` for a list of
``ui`` (the chart's gate grants ``get`` only), ``ui/index.html`` for a get of one; the same page."""
LIST_EXECUTIONS = {
    "apiGroups": ["stratarouter.io"],
    "resources": ["executions", "snapshots"],
    "verbs": ["list"],
}
LIST_EVENTS = {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}


@contextlib.contextmanager
def kubectl_proxy(view: View, user: str | None = None) -> Iterator[str]:
    """``kubectl proxy`` on a free loopback port, as the admin or impersonating ``user``."""
    port = free_port()
    cmd = [str(view.cluster.bin_dir / "kubectl"), f"--kubeconfig={view.cluster.kubeconfig}"]
    if user:
        cmd.append(f"--as={user}")
    cmd += ["proxy", "--address=127.0.0.1", f"--port={port}"]
    proc = subprocess.Popen(cmd, env=view.cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/version", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # answering (a user may not read /version)
        except OSError:
            return False

    try:
        wait_until("kubectl proxy", up, timeout=30, every=0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def summary_step(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, '#t-summary dd[data-key="Step"]').text)


def history_after(url: str) -> int | None:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    if "continue" not in query:
        return None
    token = query["continue"][0]
    after: int = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["after"]
    return after


def test_a_reader_clicks_through_a_recovered_run(
    view: View, executions: Executions, pg_dsn: str, driver: webdriver.Chrome
) -> None:
    kwok_run(executions, pg_dsn, "train")  # attempt 1: steps 1-3, exit 137; attempt 2: steps 4-5
    ns = view.namespace
    role(view, "ui-reader", [GET_EXECUTIONS, LIST_EXECUTIONS, LIST_EVENTS], "reader")

    with kubectl_proxy(view, user="reader") as proxy:
        for asset in ("index.html", "app.js", "app.css"):
            code, body = fetch(proxy + UI + asset)
            assert code == 200, (asset, body)
        # every namespace: the reader may not list them all, and the page says so
        driver.get(proxy + PAGE)
        wait_for("the refusal", lambda: "forbidden" in driver.find_element(By.ID, "error").text.lower())
        driver.get(f"{proxy}{PAGE}#/?namespace={ns}")
        wait_for("the run listed", lambda: texts(driver, "#executions tbody tr td:nth-child(2)") == ["train"])
        cells = texts(driver, '#executions tr[data-name="train"] td')
        assert cells[2:6] == ["Running", cells[3], "1", "2"], cells

        driver.find_element(By.CSS_SELECTOR, '#executions tr[data-name="train"]').click()
        wait_for("five points", lambda: count(driver, "#t-chart circle.pt") == 5)
        attempts = [
            c.get_attribute("data-attempt") for c in driver.find_elements(By.CSS_SELECTOR, "#t-chart circle")
        ]
        assert attempts == ["1", "1", "1", "2", "2"]
        wait_for(
            "the failure", lambda: texts(driver, "#t-events tr.failure td:last-child") == ["exit code 137"]
        )
        recovery = texts(driver, "#t-events tr.recovery td:last-child")
        assert len(recovery) == 1
        assert recovery[0].startswith("resumed after a ")
        assert summary_step(driver) == "5"

        browser.click_point(driver, 2)
        wait_for("step 2's state", lambda: '"loss": 0.8' in driver.find_element(By.ID, "s-body").text)
        browser.click_point(driver, 3)
        wait_for("step 3's state", lambda: '"loss": 0.7' in driver.find_element(By.ID, "s-body").text)
        driver.find_element(By.ID, "d-go").click()
        wait_for("the diff", lambda: driver.find_element(By.ID, "dv-summary").text == "2 changes")
        changes = {
            r.get_attribute("data-path"): [td.text for td in r.find_elements(By.TAG_NAME, "td")][1:]
            for r in driver.find_elements(By.CSS_SELECTOR, "#dv-changes tbody tr")
        }
        assert changes == {"/loss": ["replace", "0.8", "0.7"], "/seen/-": ["add", "", "3"]}
        # live: what the run writes next shows up without a reload
        driver.find_element(By.ID, "dv-back").click()
        wait_for("the timeline again", lambda: count(driver, "#t-chart circle.pt") == 5)
        checkpoints(pg_dsn, f"{ns}/train", {6: {"loss": 0.4}, 7: {"loss": 0.3}}, attempt=2)
        wait_for("steps 6 and 7", lambda: count(driver, '#t-chart circle[data-attempt="2"]') == 4, timeout=15)
        wait_for("the live step", lambda: summary_step(driver) == "7")
        # the one refusal above is the only error the browser saw
        assert [e for e in browser.console_errors(driver) if "status of 403" not in e] == []

    with kubectl_proxy(view, user="nobody") as proxy:
        # the page itself is for anyone the gate lets in; the run is not
        driver.get(f"{proxy}{PAGE}#/executions/{ns}/train")
        wait_for("the view API's refusal", lambda: "cannot get" in driver.find_element(By.ID, "error").text)
        assert count(driver, "#t-chart circle.pt") == 0


def test_a_run_of_10000_checkpoints_through_kubectl_proxy(
    view: View, executions: Executions, pg_dsn: str, driver: webdriver.Chrome
) -> None:
    executions.create("long")
    executions.wait_status("long", "attempt 1's pod", lambda s: s.get("podName") == "long-a1")
    states = {
        step: {"step": step, "loss": round(1 / step, 6), "tokens": step * 4096} for step in range(1, 10_001)
    }
    checkpoints(pg_dsn, f"{view.namespace}/long", states, attempt=1)

    with kubectl_proxy(view) as proxy:
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        started = time.monotonic()
        driver.get(f"{proxy}{UI}#/executions/{view.namespace}/long")
        wait_for("the newest page", lambda: count(driver, "#t-chart circle.pt") == 500, timeout=30)
        drawn_ms = (time.monotonic() - started) * 1000
        assert driver.find_element(By.ID, "t-range").text == "steps 9501\N{EN DASH}10000 (500 on this page)"
        timing: dict[str, Any] = driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0]; return {load: n.loadEventEnd};"
        )
        wire = browser.transferred(driver)
        names = [e["name"] for e in wire["requests"]]
        print(
            "\n10,000 checkpoints through kubectl proxy and the API server:"
            f" load event {timing['load']:.0f} ms,"
            f" chart drawn {drawn_ms:.0f} ms after navigation, {wire['bytes']} bytes in {len(names)} requests"
        )
        for e in wire["requests"]:
            print(f"  {e['bytes']:>7} {e['name'].split(UI.rsplit('/ui/', 1)[0])[-1][:110]}")
        assert not [n for n in names if "/state" in n]
        history = [history_after(n) for n in names if "/history" in n]
        assert history[0] == 9500
        assert wire["bytes"] < 200_000
