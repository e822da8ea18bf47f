"""The web timeline in a real headless Chromium: the list, a timeline, a state, a diff, live updates, and
a run of 10,000 checkpoints.

The page is served with the API answers it asks for by the stand-in (:mod:`tests.ui.standin`) under a
made-up proxy prefix, so every URL the page uses has to be relative to work at all. Chromium reaches
nothing but loopback (:mod:`tests.ui.browser`).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.ui import browser, standin
from tests.ui.browser import count, texts, wait_for

PREFIX = "/proxy/under/a/prefix"
DASH = "\N{EN DASH}"


@pytest.fixture
def served() -> Iterator[standin.Served]:
    runs = [
        standin.recovered_twice("demo", "train-llm", steps=300),
        standin.straight_run("demo", "etl", 120),
        standin.straight_run("other", "batch", 40, phase="Failed"),
    ]
    yield from standin.serve(standin.StandIn(runs, prefix=PREFIX))


@pytest.fixture
def large() -> Iterator[standin.Served]:
    runs = [standin.straight_run("big", "long-run", 10_000, phase="Running")]
    yield from standin.serve(standin.StandIn(runs, prefix=PREFIX))


def history_after(url: str) -> int | None:
    """The step a history request's page starts after (its ``continue`` cursor), None from the start."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["limit"] == ["500"], url
    if "continue" not in query:
        return None
    token = query["continue"][0]
    after: int = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["after"]
    return after


def rows(driver: webdriver.Chrome) -> list[str]:
    return [
        r.get_attribute("data-name") or ""
        for r in driver.find_elements(By.CSS_SELECTOR, "#executions tbody tr")
    ]


def summary(driver: webdriver.Chrome, key: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f'#t-summary dd[data-key="{key}"]').text)


def points_by_attempt(driver: webdriver.Chrome) -> dict[str, int]:
    counts: dict[str, int] = driver.execute_script(
        "const c = {}; for (const p of document.querySelectorAll('#t-chart circle.pt'))"
        " c[p.dataset.attempt] = (c[p.dataset.attempt] || 0) + 1; return c;"
    )
    return counts


def fill_of(driver: webdriver.Chrome, attempt: int) -> str:
    fill: str = driver.execute_script(
        "const sel = `#t-chart circle[data-attempt='${arguments[0]}']`;"
        " return getComputedStyle(document.querySelector(sel)).fill;",
        attempt,
    )
    return fill


def click(driver: webdriver.Chrome, css: str) -> None:
    """Click what ``css`` finds, again if a poll redrew it in between."""

    def attempt() -> bool:
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait_for(f"a click on {css}", attempt)


def open_timeline(driver: webdriver.Chrome, served: standin.Served, name: str, points: int) -> None:
    click(driver, f'#executions tr[data-name="{name}"]')
    wait_for(f"{points} points", lambda: count(driver, "#t-chart circle.pt") == points)


def test_list_filters_and_opens_a_timeline(driver: webdriver.Chrome, served: standin.Served) -> None:
    driver.get(served.url)
    wait_for("three Executions listed", lambda: sorted(rows(driver)) == ["batch", "etl", "train-llm"])
    row = driver.find_element(By.CSS_SELECTOR, '#executions tr[data-name="train-llm"]')
    assert [td.text for td in row.find_elements(By.TAG_NAME, "td")][:6] == [
        "demo", "train-llm", "Running", "300", "2", "3",
    ]  # fmt: skip

    driver.find_element(By.ID, "f-namespace").send_keys("demo")
    driver.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait_for("the demo namespace only", lambda: sorted(rows(driver)) == ["etl", "train-llm"])
    assert any("/namespaces/demo/executions?" in r for r in served.standin.requests)
    Select(driver.find_element(By.ID, "f-phase")).select_by_visible_text("Succeeded")
    driver.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait_for("Succeeded in demo only", lambda: rows(driver) == ["etl"])
    driver.find_element(By.ID, "f-namespace").clear()
    Select(driver.find_element(By.ID, "f-phase")).select_by_visible_text("any")
    driver.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait_for("all three again", lambda: len(rows(driver)) == 3)

    open_timeline(driver, served, "train-llm", 300)
    assert summary(driver, "Phase") == "Running"
    assert summary(driver, "Restarts") == "2"
    assert summary(driver, "Attempt") == "3"
    assert summary(driver, "Last failure") == "Evicted, backoff 20s"
    assert texts(driver, "#t-summary dt") == ["Phase", "Step", "Attempt", "Restarts", "Age", "Last failure"]
    # the points, one colour per attempt: 120 + 120 + 60 steps
    assert points_by_attempt(driver) == {"1": 120, "2": 120, "3": 60}
    assert len({fill_of(driver, 1), fill_of(driver, 2), fill_of(driver, 3)}) == 3
    assert texts(driver, "#t-legend .key") == ["attempt 1: 120", "attempt 2: 120", "attempt 3: 60"]
    assert driver.find_element(By.ID, "t-range").text == f"steps 1{DASH}300 (300 on this page)"
    # the attempts' bar: three spans and two backoffs between them
    assert count(driver, "#t-overview g.span") == 3
    assert count(driver, "#t-overview rect.backoff") == 2
    # failures with their cause, recoveries with their backoff, the snapshot
    kinds = [
        r.get_attribute("data-kind") for r in driver.find_elements(By.CSS_SELECTOR, "#t-events tbody tr")
    ]
    assert kinds == ["snapshot", "failure", "recovery", "failure", "recovery"]
    failures = texts(driver, "#t-events tr.failure td:last-child")
    assert failures == ["OOMKilled (exit code 137)", "Evicted: The node was low on memory."]
    recoveries = texts(driver, "#t-events tr.recovery td:last-child")
    assert recoveries == ["resumed after a 10s backoff", "resumed after a 20s backoff"]
    assert texts(driver, "#t-events tr.snapshot td:last-child") == ["snapshot before-oom (Ready)"]
    assert count(driver, "#t-chart g.mark.failure") == 2
    assert browser.console_errors(driver) == []


def test_state_on_click_and_the_diff_of_two_steps(driver: webdriver.Chrome, served: standin.Served) -> None:
    driver.get(served.url + "#/executions/demo/train-llm")
    wait_for("300 points", lambda: count(driver, "#t-chart circle.pt") == 300)
    assert not [r for r in served.standin.requests if "/state" in r], "no state is fetched before a click"
    history = [r for r in served.standin.requests if "/history" in r]
    assert history
    assert all("limit=500" in r for r in history)

    browser.click_point(driver, 10)
    wait_for("the state of step 10", lambda: '"total": 55' in driver.find_element(By.ID, "s-body").text)
    assert driver.find_element(By.ID, "s-title").text.startswith("State at step 10 · attempt 1 ·")
    assert [r for r in served.standin.requests if "/state" in r] == [
        f"{PREFIX}/apis/view.stratarouter.io/v1alpha1/namespaces/demo/executions/train-llm/state?step=10"
    ]
    browser.click_point(driver, 250)
    wait_for("the state of step 250", lambda: '"total": 31375' in driver.find_element(By.ID, "s-body").text)
    assert driver.find_element(By.ID, "d-from").get_attribute("value") == "10"
    assert driver.find_element(By.ID, "d-to").get_attribute("value") == "250"
    assert count(driver, "#t-chart circle.picked") == 2

    driver.find_element(By.ID, "d-go").click()
    wait_for("the diff", lambda: driver.find_element(By.ID, "dv-summary").text not in ("", "loading…"))
    # JSON Patch: four keys replaced, and the array of five element by element
    assert driver.find_element(By.ID, "dv-summary").text == "9 changes"
    assert driver.find_element(By.ID, "dv-title").text == "demo/train-llm: step 10 → step 250"
    changes = {
        r.get_attribute("data-path"): [td.text for td in r.find_elements(By.TAG_NAME, "td")][1:]
        for r in driver.find_elements(By.CSS_SELECTOR, "#dv-changes tbody tr")
    }
    assert changes["/total"] == ["replace", "55", "31375"]
    assert changes["/attempt"] == ["replace", "1", "3"]
    assert changes["/phase"] == ["replace", '"warmup"', '"train"']
    assert changes["/recent/0"] == ["replace", "6", "246"]
    driver.find_element(By.ID, "dv-back").click()
    wait_for("back on the timeline", lambda: count(driver, "#t-chart circle.pt") == 300)
    assert browser.console_errors(driver) == []


def test_live_updates_while_the_run_goes_on(driver: webdriver.Chrome, served: standin.Served) -> None:
    driver.get(served.url + "#/executions/demo/train-llm")
    wait_for("300 points", lambda: count(driver, "#t-chart circle.pt") == 300)
    served.change("train-llm", lambda run: run.add_steps(7))
    wait_for("the 7 new checkpoints", lambda: count(driver, "#t-chart circle.pt") == 307, timeout=10)
    assert points_by_attempt(driver)["3"] == 67
    wait_for("the step in the summary", lambda: summary(driver, "Step") == "307")

    def fail_again(run: standin.Run) -> None:
        run.fail("pod train-llm-3 failed with exit code 3", "ExitCode", 3, 40)
        run.add_steps(3)

    served.change("train-llm", fail_again)
    wait_for("a fourth attempt", lambda: points_by_attempt(driver).get("4") == 3, timeout=10)
    wait_for("its failure", lambda: "exit code 3" in texts(driver, "#t-events tr.failure td:last-child"))
    assert summary(driver, "Restarts") == "3"
    # each tick asks only for what came after the newest point shown
    tails = [history_after(r) for r in served.standin.requests if "/history" in r]
    assert tails[0] is None
    assert 307 in tails


def test_a_run_of_10000_checkpoints_loads_one_page(driver: webdriver.Chrome, large: standin.Served) -> None:
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    started = time.monotonic()
    driver.get(large.url + "#/executions/big/long-run")
    wait_for("the newest page of 500 points", lambda: count(driver, "#t-chart circle.pt") == 500)
    drawn_ms = (time.monotonic() - started) * 1000
    assert driver.find_element(By.ID, "t-range").text == f"steps 9501{DASH}10000 (500 on this page)"
    timing: dict[str, Any] = driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        " return {load: n.loadEventEnd, dom: n.domContentLoadedEventEnd};"
    )
    wire = browser.transferred(driver)
    names = [e["name"] for e in wire["requests"]]
    assert not [n for n in names if "/state" in n], "no state bodies on load"
    history = [history_after(n) for n in names if "/history" in n]
    # the newest page first, then (a tick later, if one came) only what follows its newest point
    assert history[0] == 9500
    assert set(history[1:]) <= {10_000}
    print(
        f"\n10,000 checkpoints: load event {timing['load']:.0f} ms, chart drawn {drawn_ms:.0f} ms after"
        f" navigation, {wire['bytes']} bytes in {len(names)} requests"
    )
    assert wire["bytes"] < 150_000, wire

    driver.find_element(By.ID, "p-first").click()
    wait_for(
        "the first page", lambda: driver.find_element(By.ID, "t-range").text.startswith(f"steps 1{DASH}500")
    )
    driver.find_element(By.ID, "p-next").click()
    wait_for(
        "the second page",
        lambda: driver.find_element(By.ID, "t-range").text.startswith(f"steps 501{DASH}1000"),
    )
    driver.find_element(By.ID, "p-latest").click()
    wait_for(
        "the newest again",
        lambda: driver.find_element(By.ID, "t-range").text.startswith(f"steps 9501{DASH}10000"),
    )
    assert count(driver, "#t-chart circle.pt") == 500
    # nothing after the newest page: Next stays on it
    driver.find_element(By.ID, "p-next").click()
    time.sleep(0.5)
    assert driver.find_element(By.ID, "t-range").text.startswith(f"steps 9501{DASH}10000")
    assert count(driver, "#t-chart circle.pt") == 500
    assert browser.console_errors(driver) == []


def test_failures_whose_events_are_gone(driver: webdriver.Chrome, served: standin.Served) -> None:
    """The API server drops Events after an hour: the attempts still show, from the history's points,
    and the last failure keeps its cause from status.recovery."""
    served.change("train-llm", lambda run: run.events.clear())
    driver.get(served.url + "#/executions/demo/train-llm")
    wait_for("300 points", lambda: count(driver, "#t-chart circle.pt") == 300)
    wait_for("two failures", lambda: count(driver, "#t-events tr.failure") == 2)
    assert texts(driver, "#t-events tr.failure td:last-child") == [
        "attempt 1 ended (its cause is no longer in the Events)",
        "Evicted",
    ]
    assert texts(driver, "#t-events tr.failure td:nth-child(3)") == ["1", "2"]  # the attempts that failed
    assert count(driver, "#t-overview g.span") == 3
    assert count(driver, "#t-chart g.mark.failure") == 2
    assert count(driver, "#t-events tr.recovery") == 0
