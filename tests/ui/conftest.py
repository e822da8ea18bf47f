"""The browser the timeline's tests share, and (for those on the cluster) the fixtures of the operator's
tests and of the view API's."""

from collections.abc import Iterator

import pytest
from selenium import webdriver

from tests.operator.conftest import (  # noqa: F401
    crds,
    executions,
    kube,
    namespace,
    operator,
    operator_env,
    operator_process,
)
from tests.operator.test_view_rbac import view, view_env, view_gate  # noqa: F401
from tests.ui import browser


@pytest.fixture(scope="session")
def chromium() -> Iterator[webdriver.Chrome]:
    why = browser.missing()
    if why:
        pytest.fail(why)
    chrome = browser.start()
    yield chrome
    chrome.quit()


@pytest.fixture
def driver(chromium: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The shared browser on a blank page, with the log of the test before it (whose server is gone
    while its page still polls) drained."""
    chromium.get("about:blank")
    chromium.get_log("browser")
    yield chromium
    chromium.get("about:blank")
