"""The README's pictures of the web timeline, made in headless Chromium the way the tests drive it.

    .venv/bin/python -m tests.ui.screenshots [--out docs/images]

writes ui-list.png (the list), ui-timeline.png (a run recovered twice, one point's state open) and
ui-diff.png (the diff of two of its steps). The page is served by the stand-in (tests/ui/standin.py):
the view API's own handlers over made-up runs, so the pictures are the same on every machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.ui import browser, standin
from tests.ui.browser import count, wait_for

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 1100


def runs() -> list[standin.Run]:
    return [
        standin.recovered_twice("ml", "train-llm", steps=300),
        standin.straight_run("ml", "embed-corpus", 1200, phase="Succeeded"),
        standin.straight_run("ml", "eval-suite", 80, phase="Running"),
        standin.straight_run("etl", "nightly-load", 400, phase="Failed"),
    ]


def shoot(driver: webdriver.Chrome, path: Path) -> None:
    """The whole page, however long: the window is made as tall as the document first."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(WIDTH, height + 120)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    why = browser.missing()
    if why:
        raise SystemExit(why)
    served_runs = standin.serve(standin.StandIn(runs(), prefix="/proxy"))
    served = next(served_runs)
    driver = browser.start(WIDTH, 700)
    try:
        driver.get(served.url)
        wait_for("the list", lambda: count(driver, "#executions tbody tr") == 4)
        shoot(driver, args.out / "ui-list.png")

        driver.set_window_size(WIDTH, 700)
        driver.get(served.url + "#/executions/ml/train-llm")
        wait_for("the timeline", lambda: count(driver, "#t-chart circle.pt") == 300)
        for step in (100, 260):
            browser.click_point(driver, step)
        wait_for("the state", lambda: '"total": 33930' in driver.find_element(By.ID, "s-body").text)
        shoot(driver, args.out / "ui-timeline.png")

        driver.set_window_size(WIDTH, 700)
        driver.find_element(By.ID, "d-go").click()
        wait_for("the diff", lambda: count(driver, "#dv-changes tbody tr") > 0)
        shoot(driver, args.out / "ui-diff.png")
    finally:
        driver.quit()
        served_runs.close()


if __name__ == "__main__":
    main()
