"""The dashboard of studies of several objectives and constraints: the front endpoint and
the other views as JSON, then the front view, the objective picker and restarts in a
real browser (skipped without one, as in `test_browser`)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import pbtune
import tradeoff
from dashboard.test_browser import WAIT_MS, chromium_path, expect, hover_a_point
from dashboard.toy import STUDY, Response, call
from pbtune.dashboard import DashboardApp, make_dashboard_server


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, pbtune.Study]]:
    storage = pbtune.Storage(None)
    folder = tmp_path_factory.mktemp("front")
    yield {name: tradeoff.make(storage, name, folder, objectives=n)
           for name, n in (("two", 2), ("three", 3))}
    storage.dispose()


@pytest.fixture(scope="module")
def app(studies: dict[str, pbtune.Study]) -> DashboardApp:
    return DashboardApp(studies["two"].storage)


def get(app: DashboardApp, path: str) -> Any:
    response: Response = call(app, path)
    assert response.code == 200, response.body
    return response.json()


@pytest.mark.parametrize("name", ["two", "three"])
def test_the_front_endpoint_has_every_trial_and_marks_the_front(
        app: DashboardApp, studies: dict[str, pbtune.Study], name: str) -> None:
    study = studies[name]
    view = get(app, f"/api/front?study={name}")
    names = list(tradeoff.OBJECTIVES[2 if name == "two" else 3])
    assert [o["name"] for o in view["objectives"]] == names
    assert view["constraints"] == ["memory_mb <= 2400"]
    front = [t.number for t in study.best_trials]
    assert view["front"] == front and len(front) > 1
    done = {t.number: t for t in study.trials([pbtune.TrialState.COMPLETE])}
    assert [t["number"] for t in view["trials"]] == sorted(done)
    latest = {t.number for t in study.storage.get_population(study.id)}
    for row in view["trials"]:
        trial = done[row["number"]]
        assert row["values"] == [trial.metrics[n] for n in names]  # type: ignore[index]
        assert (row["front"], row["latest"]) == (trial.number in front, trial.number in latest)
        assert bool(row["infeasible"]) == tradeoff.infeasible(trial)
        if row["infeasible"]:
            assert row["infeasible"].startswith("memory_mb ") and "> 2400" in row["infeasible"]
    if name == "three":
        assert view["steps"] is None
        return
    steps = view["steps"]  # accuracy up and latency down along the step line
    points = [[done[n].metrics["accuracy"], done[n].metrics["latency_ms"]]  # type: ignore
              for n in front]
    assert steps[0] == min(points) and steps[-1] == max(points)
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(steps))
    assert all(p in steps for p in points)


def test_the_summary_names_the_front_instead_of_a_best_fitness(
        app: DashboardApp, studies: dict[str, pbtune.Study]) -> None:
    summary = get(app, "/api/summary?study=two")
    assert summary["front"] == [t.number for t in studies["two"].best_trials]
    assert summary["best_fitness"] is None and summary["best_trial"] is None
    assert summary["objectives"] == [["accuracy", "max"], ["latency_ms", "min"]]
    assert summary["constraints"] == ["memory_mb <= 2400"]


def test_the_plot_shows_one_objective_at_a_time(
        app: DashboardApp, studies: dict[str, pbtune.Study]) -> None:
    study = studies["two"]
    done = {t.number: t for t in study.trials([pbtune.TrialState.COMPLETE])}
    for objective, asked in (("accuracy", ""), ("latency_ms", "&objective=latency_ms")):
        plot = get(app, f"/api/plot?study=two{asked}")
        assert (plot["objective"], plot["label"]) == (
            objective, f"{objective} ({tradeoff.OBJECTIVES[2][objective]})")
        assert plot["objectives"] == ["accuracy", "latency_ms"]
        points = [p for m in plot["members"] for p in m["points"]]
        assert sorted(p[2] for p in points) == sorted(done)
        assert all(p[1] == done[p[2]].metrics[objective] for p in points)  # type: ignore
        assert plot["best"]["trial"] == study.best_trial_by(objective).number
    restarts = sorted(t.number for t in done.values() if t.decision == "restart")
    assert restarts and sorted(plot["restarts"]) == restarts
    assert set(plot["restarts"]) <= {j[5] for j in plot["jumps"]}
    assert sorted(plot["infeasible"]) == sorted(n for n, t in done.items()
                                                if tradeoff.infeasible(t))
    wrong = call(app, "/api/plot?study=two&objective=nope")
    assert wrong.code == 400 and "accuracy, latency_ms" in wrong.json()["error"]


def test_the_lineage_and_schedule_default_to_the_best_on_the_first_objective(
        app: DashboardApp, studies: dict[str, pbtune.Study]) -> None:
    study = studies["two"]
    shown = study.best_trial_by("accuracy")
    lineage = get(app, "/api/lineage?study=two")
    assert lineage["trial"] == shown.number
    assert [n["number"] for n in lineage["nodes"]] == [t.number for t in study.lineage(shown.id)]
    last = lineage["nodes"][-1]
    assert last["values"] == [shown.metrics["accuracy"], shown.metrics["latency_ms"]]  # type: ignore
    assert last["fitness"] is None and last["infeasible"] == ""
    exported = call(app, "/api/schedule.json?study=two")
    assert exported.code == 200 and exported.json()[-1]["trial_id"] == shown.number
    restart = next(t for t in study.trials() if t.decision == "restart")
    nodes = get(app, f"/api/lineage?study=two&trial={restart.number}")["nodes"]
    assert nodes[-1]["decision"] == "restart" and nodes[-1]["parent"] == restart.parent_id
    assert nodes[-2]["member"] != restart.member  # copied another member's checkpoint


def test_a_single_objective_study_has_a_front_of_its_best_trial(toy: pbtune.Study) -> None:
    view = get(DashboardApp(toy.storage), f"/api/front?study={STUDY.replace(' ', '%20')}")
    assert len(view["objectives"]) == 1 and view["front"] == [toy.best_trial.number]


# -- in a browser -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(studies: dict[str, pbtune.Study]) -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import expect as playwright_expect
    from playwright.sync_api import sync_playwright

    httpd = make_dashboard_server(DashboardApp(studies["two"].storage), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable,
                                        args=["--headless", "--no-sandbox"])
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.set_default_timeout(WAIT_MS)
            playwright_expect.set_options(timeout=WAIT_MS)
            tab.problems = []  # console errors and page errors: none may happen
            tab.on("console", lambda m: m.type == "error" and tab.problems.append(m.text))
            tab.on("pageerror", lambda e: tab.problems.append(str(e)))
            tab.base = f"http://127.0.0.1:{httpd.server_port}/"
            yield tab
            browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()


def open_study(page: Any, name: str) -> None:
    page.goto("about:blank")  # a fresh page: going to another #hash alone keeps the old views
    page.goto(page.base + "#" + name)
    page.wait_for_selector("#front-table tbody tr")
    page.wait_for_selector("#lineage-plot .uplot .u-over")


def tooltip_values(text: str, names: list[str]) -> dict[str, float]:
    """The objective values a tooltip names (``accuracy (max) 0.93``)."""
    found = {}
    for line in text.splitlines():
        for name in names:
            if line.startswith(f"{name} ("):
                found[name] = float(line.split(") ", 1)[1])
    return found


def test_the_front_of_two_objectives_in_a_browser(
        page: Any, studies: dict[str, pbtune.Study]) -> None:
    study = studies["two"]
    open_study(page, "two")
    front = study.best_trials
    rows = page.locator("#front-table tbody tr")
    expect(rows).to_have_count(len(front))
    assert [int(n) for n in rows.evaluate_all("rs => rs.map(r => r.dataset.trial)")] == [
        t.number for t in front]
    assert f"Pareto front: {len(front)} trials" in page.locator("#front-legend").text_content()
    assert f"front: {len(front)} trials" in page.locator("#study-summary").text_content()
    x, y, text = hover_a_point(page, "#front-plot")
    number = int(text.splitlines()[0].split()[1])
    trial = next(t for t in study.trials() if t.number == number)
    values = tooltip_values(text, ["accuracy", "latency_ms"])
    assert values == pytest.approx({n: trial.metrics[n]  # type: ignore[index]
                                    for n in ("accuracy", "latency_ms")}, rel=1e-3)
    page.mouse.click(x, y)  # the point's lineage
    expect(page.locator("#lineage-trial")).to_have_text(str(number))
    rows.first.click()  # and a row of the front table its own
    expect(page.locator("#lineage-trial")).to_have_text(str(front[0].number))
    assert page.problems == []


def test_the_plot_picks_an_objective_and_restarts_are_labelled(
        page: Any, studies: dict[str, pbtune.Study]) -> None:
    study = studies["two"]
    open_study(page, "two")
    expect(page.locator("#pbt-what")).to_have_text("accuracy (max)")
    expect(page.locator("#legend-restart")).to_have_count(1)
    assert page.locator("#score-head").text_content() == "objectives"
    page.select_option("#objective", "latency_ms")
    expect(page.locator("#pbt-what")).to_have_text("latency_ms (min)")
    expect(page.locator("#lineage-trial")).to_have_text(
        str(study.best_trial_by("latency_ms").number))
    restarts = [t for t in study.trials() if t.decision == "restart"]
    expect(page.locator("#trials td.decision-restart")).to_have_count(len(restarts))
    bad = [t for t in study.trials() if tradeoff.infeasible(t)]
    expect(page.locator("#trials td.infeasible")).to_have_count(len(bad))
    restart = restarts[0]
    page.locator(f"#trials tbody tr[data-trial='{restart.number}']").click()
    expect(page.locator("#lineage-trial")).to_have_text(str(restart.number))
    _, _, text = hover_a_point(page, "#lineage-plot")  # from the right: the restart itself
    assert text.splitlines()[0] == f"trial {restart.number}"
    assert f"decision: restart (copied trial {restart.parent_id})" in text.splitlines()
    assert page.problems == []


def test_the_front_of_three_objectives_is_drawn_as_parallel_coordinates(
        page: Any, studies: dict[str, pbtune.Study]) -> None:
    study = studies["three"]
    open_study(page, "three")
    page.wait_for_selector("#front-plot canvas.parallel")
    front = study.best_trials
    rows = page.locator("#front-table tbody tr")
    expect(rows).to_have_count(len(front))
    assert [int(n) for n in rows.evaluate_all("rs => rs.map(r => r.dataset.trial)")] == [
        t.number for t in front]
    canvas = page.locator("#front-plot canvas.parallel")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    tip = page.locator("#front-plot .tooltip")
    found = None
    for column in range(int(box["width"] * 0.3), int(box["width"] * 0.7), 23):
        for row in range(40, int(box["height"]) - 40, 4):
            page.mouse.move(box["x"] + column, box["y"] + row)
            if tip.is_visible():
                found = tip.inner_text()
                break
        if found:
            break
    assert found, "no line of the parallel coordinates under the mouse anywhere"
    number = int(found.splitlines()[0].split()[1])
    trial = next(t for t in study.trials() if t.number == number)
    names = list(tradeoff.OBJECTIVES[3])
    assert tooltip_values(found, names) == pytest.approx(
        {n: trial.metrics[n] for n in names}, rel=1e-3)  # type: ignore[index]
    page.mouse.down()
    page.mouse.up()  # a click on the line shows the trial's lineage
    expect(page.locator("#lineage-trial")).to_have_text(str(number))
    assert page.problems == []
