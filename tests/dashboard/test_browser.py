"""The dashboard in a real browser: Debian's chromium driven by playwright.

Skipped when chromium or playwright is missing, unless ``PBTUNE_REQUIRE_BROWSER=1`` (CI sets
it) makes that a failure. ``PBTUNE_DASHBOARD_SCREENSHOTS=docs`` also saves the views there.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pbtune
from dashboard.toy import SCRIPT_PARAM, STUDY
from pbtune.dashboard import DashboardApp, make_dashboard_server

REQUIRE_BROWSER_ENV = "PBTUNE_REQUIRE_BROWSER"
SCREENSHOTS_ENV = "PBTUNE_DASHBOARD_SCREENSHOTS"
WAIT_MS = 30_000  # a generous bound for a loaded machine, not a timing check


def chromium_path() -> str:
    """Chromium and playwright, or a skip (a failure when the browser is required)."""
    path = os.environ.get("PBTUNE_CHROMIUM") or shutil.which("chromium")
    missing = []
    if path is None:
        missing.append("chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        reason = f"the browser tests need {' and '.join(missing)}"
        if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
            pytest.fail(f"{REQUIRE_BROWSER_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    assert path is not None
    return path


@pytest.fixture(scope="module")
def server(toy: pbtune.Study) -> Iterator[str]:
    httpd = make_dashboard_server(DashboardApp(toy.storage), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable,
                                    args=["--headless", "--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(WAIT_MS)
        from playwright.sync_api import expect as playwright_expect

        playwright_expect.set_options(timeout=WAIT_MS)
        tab.problems = []  # console errors, page errors and dialogs: none may happen
        tab.on("console", lambda m: m.type == "error" and tab.problems.append(m.text))
        tab.on("pageerror", lambda e: tab.problems.append(str(e)))

        def on_dialog(dialog: Any) -> None:
            tab.problems.append(f"dialog: {dialog.message}")
            dialog.dismiss()

        tab.on("dialog", on_dialog)
        tab.goto(server + "/")
        yield tab
        browser.close()


def shoot(page: Any, selector: str, name: str) -> None:
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.locator(selector).screenshot(path=str(Path(folder) / f"dashboard-{name}.png"))


def expect(locator: Any) -> Any:
    # Waits through locators: the page's CSP (rightly) refuses wait_for_function's eval.
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def count(page: Any, selector: str) -> int:
    return int(page.locator(selector).count())


def test_study_list(page: Any, toy: pbtune.Study) -> None:
    page.wait_for_selector("#studies tbody a")
    row = page.locator("#studies tbody tr").first
    assert row.locator("a").text_content() == STUDY
    assert "COMPLETE" in row.text_content()
    assert "160 / 160 steps" in row.text_content()
    shoot(page, "#studies-view", "studies")
    assert page.problems == []


def test_study_views_have_data(page: Any, toy: pbtune.Study) -> None:
    page.locator("#studies tbody a").first.click()
    page.wait_for_selector("#pbt-plot circle")
    page.wait_for_selector("#lineage-plot circle.node")
    page.wait_for_selector("#schedules path.lineage")
    assert page.locator("#study-title").text_content() == STUDY
    complete = toy.trials([pbtune.TrialState.COMPLETE])
    assert count(page, "#pbt-plot circle") == len(complete)
    assert count(page, "#pbt-plot path") > 0
    assert count(page, "#pbt-plot path.jump") > 0
    assert count(page, "#lineage-plot circle.node") == len(toy.lineage())
    assert page.locator("#lineage-trial").text_content() == str(toy.best_trial.id)
    assert count(page, "#schedules path.lineage") == 3
    assert count(page, "#schedules circle.population") > 0
    shoot(page, "#pbt-panel", "pbt")
    shoot(page, "#lineage-panel", "lineage")
    shoot(page, "#schedule-panel", "schedules")
    assert page.problems == []


def test_a_script_param_name_is_text(page: Any) -> None:
    titles = page.locator("#schedules h4").all_text_contents()
    assert SCRIPT_PARAM in titles
    assert count(page, "#schedules script") == 0
    assert SCRIPT_PARAM in page.locator("#trials tbody").text_content()
    assert page.problems == []  # no alert() dialog fired


def test_clicking_a_trial_shows_its_lineage(page: Any, toy: pbtune.Study) -> None:
    best = toy.best_trial.id
    done = [t for t in toy.trials([pbtune.TrialState.COMPLETE]) if t.id != best]
    # Points may overlap; the last member's points are drawn last, so nothing covers them.
    top = max(t.member for t in done)
    other = next(t for t in reversed(done) if t.member == top and t.generation >= 3)
    page.locator(f"#pbt-plot circle[data-trial='{other.id}']").click()
    expect(page.locator("#lineage-trial")).to_have_text(str(other.id))
    nodes = page.locator("#lineage-plot circle.node")
    expect(nodes).to_have_count(len(toy.lineage(other.id)))
    assert nodes.last.get_attribute("data-trial") == str(other.id)
    href = page.locator("#export-csv").get_attribute("href")
    assert href.startswith("/api/schedule.csv?") and href.endswith(f"&trial={other.id}")
    # A row of the trial table does the same.
    row = next(t for t in done if t.generation >= 2 and t.id != other.id)
    page.locator(f"#trials tbody tr[data-trial='{row.id}']").click()
    expect(page.locator("#lineage-trial")).to_have_text(str(row.id))
    expect(nodes).to_have_count(len(toy.lineage(row.id)))
    assert page.problems == []


def test_table_filter_shows_the_error_as_text(page: Any, toy: pbtune.Study) -> None:
    page.select_option("#state-filter", "FAILED")
    expect(page.locator("#trials tbody tr")).to_have_count(1)
    error = page.locator("#trials tbody td.error").text_content()
    assert "boom <img src=x onerror=alert(2)>" in error
    assert count(page, "#trials tbody img") == 0
    shoot(page, "#table-panel", "trials")
    page.select_option("#state-filter", "")
    expect(page.locator("#trials tbody tr")).to_have_count(len(toy.trials()))
    assert page.problems == []


def test_the_page_polls_for_updates(page: Any) -> None:
    expect(page.locator("#status")).to_contain_text("updated")
    assert page.problems == []
