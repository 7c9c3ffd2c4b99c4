"""The dashboard in a real browser: Debian's chromium driven by playwright.

Skipped when chromium or playwright is missing, unless ``PBTUNE_REQUIRE_BROWSER=1`` (CI sets
it) makes that a failure. ``PBTUNE_DASHBOARD_SCREENSHOTS=DIR`` saves the views of the test
study (its param names are attacks, not pictures for the README: `screenshots.py` takes
those from a real study).
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
    for chart in ("#pbt-plot", "#lineage-plot"):
        page.wait_for_selector(f"{chart} .uplot .u-over")
    expect(page.locator("#schedules .schedule .uplot")).to_have_count(3)
    assert page.locator("#study-title").text_content() == STUDY
    best = toy.best_trial
    expect(page.locator("#lineage-trial")).to_have_text(str(best.number))
    assert page.locator("#schedule-trial").text_content() == str(best.number)
    shoot(page, "#pbt-panel", "pbt")
    shoot(page, "#lineage-panel", "lineage")
    shoot(page, "#schedule-panel", "schedules")
    assert page.problems == []


def test_the_member_legend_and_the_best_lineage(page: Any, toy: pbtune.Study) -> None:
    members = sorted({t.member for t in toy.trials([pbtune.TrialState.COMPLETE])})
    legend = page.locator("#pbt-legend [data-member]")
    expect(legend).to_have_count(len(members))
    assert legend.all_text_contents() == [f"member {m}" for m in members]
    best = toy.best_trial
    assert f"best lineage: trial {best.number} (member {best.member}" in page.locator(
        "#legend-best").text_content()
    first = legend.first
    first.click()  # hides member 0's marks, and shows it
    expect(first).to_have_attribute("aria-pressed", "false")
    first.click()
    expect(first).to_have_attribute("aria-pressed", "true")
    assert page.problems == []


def hover_a_point(page: Any, chart: str) -> tuple[float, float, str]:
    """Moves the mouse over the chart, from the top right, until a tooltip describes a
    point; returns where and the tooltip's text."""
    over = page.locator(f"{chart} .u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    tip = page.locator(f"{chart} .tooltip")
    for column in range(int(box["width"]) - 4, 0, -16):
        for row in range(4, int(box["height"]), 16):
            x, y = box["x"] + column, box["y"] + row
            page.mouse.move(x, y)
            if tip.is_visible():
                return x, y, tip.inner_text()
    raise AssertionError(f"no point of {chart} under the mouse anywhere")


def test_hovering_a_point_describes_its_trial(page: Any, toy: pbtune.Study) -> None:
    x, y, text = hover_a_point(page, "#pbt-plot")
    lines = text.splitlines()
    assert lines[0].startswith("trial ")
    trial = next(t for t in toy.trials() if t.number == int(lines[0].split()[1]))
    assert f"member {trial.member}, step {trial.end_step}" in lines
    fitness = next(line for line in lines if line.startswith("fitness "))
    assert float(fitness.split()[1]) == pytest.approx(trial.fitness, rel=1e-3)
    assert "(q, max)" in fitness
    assert any(line.startswith(f"decision: {trial.decision}") for line in lines)
    for name in ("h0", SCRIPT_PARAM):
        value = next(line for line in lines if line.startswith(f"{name} = "))
        assert float(value.split(" = ")[1]) == pytest.approx(trial.params[name], rel=1e-3)
    assert f"opt = {trial.params['opt']}" in lines
    page.mouse.click(x, y)  # the point's lineage and schedules
    expect(page.locator("#lineage-trial")).to_have_text(str(trial.number))
    expect(page.locator("#schedule-trial")).to_have_text(str(trial.number))
    href = page.locator("#export-csv").get_attribute("href")
    assert href.startswith("/api/schedule.csv?") and href.endswith(f"&trial={trial.number}")
    assert page.problems == []


def test_hovering_the_lineage_names_a_trial_of_it(page: Any, toy: pbtune.Study) -> None:
    shown = int(page.locator("#lineage-trial").text_content())
    path = {t.number: t for t in toy.lineage(next(
        t.id for t in toy.trials() if t.number == shown))}
    _, _, text = hover_a_point(page, "#lineage-plot")
    number = int(text.splitlines()[0].split()[1])
    assert number in path
    assert f"generation {path[number].generation}" in text
    assert page.problems == []


def test_a_script_param_name_is_text(page: Any) -> None:
    titles = page.locator("#schedules h4").all_text_contents()
    assert any(title.startswith(SCRIPT_PARAM) for title in titles)
    assert count(page, "#schedules script") == 0
    assert SCRIPT_PARAM in page.locator("#trials tbody").text_content()
    assert page.problems == []  # no alert() dialog fired


def test_the_table_has_a_decision_column_and_rows_select(page: Any, toy: pbtune.Study) -> None:
    headers = page.locator("#trials thead th").all_text_contents()
    assert headers[:8] == ["trial", "member", "gen", "parent", "steps", "state", "decision",
                           "fitness"]
    rows = page.locator("#trials tbody tr")
    expect(rows).to_have_count(len(toy.trials()))
    by_number = {t.number: t for t in toy.trials()}
    for i in range(10):
        cells = rows.nth(i).locator("td").all_text_contents()
        trial = by_number[int(cells[0])]
        assert cells[6] == (trial.decision or "-")
    row = next(t for t in toy.trials([pbtune.TrialState.COMPLETE]) if t.generation >= 2)
    page.locator(f"#trials tbody tr[data-trial='{row.number}']").click()
    expect(page.locator("#lineage-trial")).to_have_text(str(row.number))
    assert page.problems == []


def test_table_filter_shows_the_error_as_text(page: Any, toy: pbtune.Study) -> None:
    page.select_option("#state-filter", "FAILED")
    expect(page.locator("#trials tbody tr")).to_have_count(1)
    assert page.locator("#state-filter option[value='FAILED']").count() == 1
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
