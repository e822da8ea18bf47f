"""Debian's headless Chromium through its chromedriver, kept off every network but loopback."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

FLAGS = [
    "--headless=new",
    "--no-sandbox",  # the tests run as root
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu",
    "--force-device-scale-factor=1",
]


def missing() -> str | None:
    """Why no browser can be started here (None: it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} is not installed (make deps installs chromium and chromium-driver)"
    return None


def start(width: int = 1100, height: int = 900) -> webdriver.Chrome:
    """A fresh headless Chromium, with the DevTools Network domain's bookkeeping on."""
    os.environ["SE_OFFLINE"] = "true"  # selenium's manager must never look for a browser or driver online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--window-size={width},{height}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    return driver


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # an element replaced while read: try again
            last = exc
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def texts(driver: webdriver.Chrome, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def count(driver: webdriver.Chrome, css: str) -> int:
    return len(driver.find_elements(By.CSS_SELECTOR, css))


def console_errors(driver: webdriver.Chrome) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def transferred(driver: webdriver.Chrome) -> dict[str, Any]:
    """What the page fetched so far, from its Performance API: each URL with its bytes on the wire."""
    entries: list[dict[str, Any]] = driver.execute_script(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".map(e => ({name: e.name, bytes: e.transferSize, body: e.decodedBodySize}))"
    )
    return {"requests": entries, "bytes": sum(e["bytes"] for e in entries)}


def click_point(driver: webdriver.Chrome, step: int) -> None:
    """A real mouse click at the centre of the point of ``step`` on the chart (a neighbour drawn over
    it may take the event: the chart picks the point nearest the pointer, as it does for a person)."""

    def attempt() -> bool:
        point = driver.find_element(By.CSS_SELECTOR, f'#t-chart circle[data-step="{step}"]')
        ActionChains(driver).move_to_element(point).click().perform()
        return True

    wait_for(f"a click on the point of step {step}", attempt)
