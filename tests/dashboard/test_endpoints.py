"""The dashboard's JSON endpoints and downloads, called as WSGI (no browser, no socket)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from urllib.parse import quote

import pytest

import pbtune
from dashboard.toy import SCRIPT_PARAM, STUDY, Response, call, train
from pbtune.dashboard import DashboardApp
from pbtune.dashboard._app import CSP
from pbtune.dashboard._fitness import fitness_range


def at(view: str) -> str:
    """The URL of a view of the toy study, e.g. ``at("trials?limit=10")``."""
    name, _, query = view.partition("?")
    return f"/api/{name}?study={quote(STUDY, safe='')}" + (f"&{query}" if query else "")


@pytest.fixture(scope="module")
def app(toy: pbtune.Study) -> DashboardApp:
    return DashboardApp(toy.storage)


def get(app: DashboardApp, path: str) -> Response:
    response = call(app, path)
    assert response.code == 200, response.body
    assert response.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    return response


def test_study_list(app: DashboardApp, toy: pbtune.Study) -> None:
    response = get(app, "/api/studies")
    assert response.headers["content-type"] == "application/json"
    (study,) = response.json()
    assert study["name"] == STUDY
    assert study["state"] == "COMPLETE"
    assert study["steps_done"] == study["steps_total"] == 4 * 40
    assert study["best_fitness"] == pytest.approx(toy.best_trial.fitness)
    assert study["best_trial"] == toy.best_trial.number
    assert study["workers_active"] == 0
    assert study["counts"]["FAILED"] == 1


def test_plot_has_every_member_and_exploit_jumps(app: DashboardApp, toy: pbtune.Study) -> None:
    plot = get(app, at("plot")).json()
    complete = toy.trials([pbtune.TrialState.COMPLETE])
    assert sorted(m["member"] for m in plot["members"]) == [0, 1, 2, 3]
    assert sum(len(m["points"]) for m in plot["members"]) == len(complete)
    by_id = {t.id: t for t in complete}
    by_number = {t.number: t for t in complete}
    exploits = [t for t in complete if t.parent_id is not None
                and by_id[t.parent_id].member != t.member]
    assert exploits, "the toy study should have exploits"
    assert {j[5] for j in plot["jumps"]} == {t.number for t in exploits}
    for jump in plot["jumps"]:
        parent, child = by_number[jump[4]], by_number[jump[5]]
        assert child.parent_id == parent.id
        assert jump[:4] == [parent.end_step, parent.fitness, child.end_step, child.fitness]


def test_plot_points_carry_what_a_hover_shows(app: DashboardApp, toy: pbtune.Study) -> None:
    plot = get(app, at("plot")).json()
    assert plot["params"] == ["h0", SCRIPT_PARAM, "opt"]
    assert (plot["metric"], plot["mode"]) == ("q", "max")
    by_number = {t.number: t for t in toy.trials()}
    for member in plot["members"]:
        for step, value, number, jumped, decision, params in member["points"]:
            trial = by_number[number]
            assert (trial.member, trial.end_step, trial.fitness, trial.decision) == (
                member["member"], step, value, decision)
            assert params == [trial.params[n] for n in plot["params"]]
            assert jumped in (0, 1)


def test_plot_marks_the_best_lineage_and_fits_the_y_range(
    app: DashboardApp, toy: pbtune.Study
) -> None:
    plot = get(app, at("plot")).json()
    best = toy.best_trial
    assert plot["best"]["trial"] == best.number
    assert [p[2] for p in plot["best"]["path"]] == [t.number for t in toy.lineage()]
    low, high = plot["y_range"]
    assert low <= best.fitness <= high


def test_the_fitness_range_leaves_out_far_outliers_but_keeps_the_best() -> None:
    race = [0.95 + 0.001 * i for i in range(20)]
    low, high = fitness_range([0.14, *race])
    assert 0.14 < low < 0.95 and 0.969 < high < 1.0
    assert fitness_range([0.14, *race], keep=[0.14])[0] < 0.14  # the best is always shown
    assert fitness_range(race, others=[0.14, 0.94])[0] < 0.94 < low  # near ones, not far
    assert fitness_range([]) is None
    flat = fitness_range([0.5] * 10)
    assert flat is not None and flat[0] < 0.5 < flat[1]


def test_lineage_of_a_given_trial_and_of_the_best(app: DashboardApp, toy: pbtune.Study) -> None:
    best = get(app, at("lineage")).json()
    assert best["trial"] == toy.best_trial.number
    assert [n["number"] for n in best["nodes"]] == [t.number for t in toy.lineage()]
    some = toy.trials([pbtune.TrialState.COMPLETE])[10]
    chosen = get(app, at(f"lineage?trial={some.number}")).json()
    path = toy.lineage(some.id)
    assert [n["number"] for n in chosen["nodes"]] == [t.number for t in path]
    assert [n["parent"] for n in chosen["nodes"]] == [None, *(t.number for t in path[:-1])]
    assert [n["generation"] for n in chosen["nodes"]] == list(range(some.generation + 1))


def test_schedules_view(app: DashboardApp, toy: pbtune.Study) -> None:
    data = get(app, at("schedules")).json()
    names = [p["name"] for p in data["params"]]
    assert names == ["h0", SCRIPT_PARAM, "opt"]
    segments = toy.schedule()
    h0 = data["params"][0]
    assert h0["lineage"] == [[s.start_step, s.end_step, s.params["h0"]] for s in segments]
    assert h0["population"]
    opt = data["params"][2]
    assert opt["choices"] == ["sgd", "adam"]
    assert {p[2] for p in opt["population"]} <= {0.0, 1.0}


def test_schedule_exports(app: DashboardApp, toy: pbtune.Study) -> None:
    segments = toy.schedule()
    as_json = get(app, at("schedule.json"))
    assert as_json.headers["content-type"] == "application/json"
    assert "attachment" in as_json.headers["content-disposition"]
    assert as_json.json() == [s.to_dict() for s in segments]
    as_csv = get(app, at("schedule.csv"))
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.body.decode())))
    assert [int(r["trial_id"]) for r in rows] == [s.trial_id for s in segments]
    assert [float(r[SCRIPT_PARAM]) for r in rows] == [s.params[SCRIPT_PARAM] for s in segments]
    some = toy.trials([pbtune.TrialState.COMPLETE])[5]
    given = get(app, at(f"schedule.json?trial={some.number}")).json()
    assert given == [s.to_dict() for s in toy.schedule(some.id)]


def test_table_pages_sorts_and_filters(app: DashboardApp, toy: pbtune.Study) -> None:
    everything = toy.trials()
    first = get(app, at("trials?limit=10")).json()
    second = get(app, at("trials?limit=10&offset=10")).json()
    assert first["total"] == second["total"] == len(everything)
    assert [r["number"] for r in first["rows"] + second["rows"]] == [
        t.number for t in everything[:20]]
    assert [r["decision"] for r in first["rows"]] == [t.decision for t in everything[:10]]
    by_decision = get(app, at("trials?sort=decision&limit=500")).json()["rows"]
    decisions = [r["decision"] for r in by_decision if r["decision"] is not None]
    assert decisions == sorted(decisions)
    failed = get(app, at("trials?state=FAILED")).json()
    assert failed["total"] == 1
    assert "boom <img src=x onerror=alert(2)>" in failed["rows"][0]["error"]
    best = get(app, at("trials?sort=fitness&desc=1&limit=1")).json()
    assert best["rows"][0]["fitness"] == max(t.fitness for t in everything if t.fitness)
    assert get(app, at("trials?limit=100000")).json()["limit"] <= 500


@pytest.mark.parametrize("path", [
    "/api/plot?study=nope", at("lineage?trial=999999"), at("schedule.csv?trial=99999"),
    "/api/nothing", "/static/../_app.py", "/static/secret.py",
])
def test_unknown_things_are_404(app: DashboardApp, path: str) -> None:
    response = call(app, path)
    assert response.code == 404
    assert response.headers["content-security-policy"] == CSP
    assert "error" in response.json()


@pytest.mark.parametrize("path", ["/api/plot", at("trials?offset=x"), at("trials?sort=params"),
                                  at("trials?state=DONE")])
def test_bad_queries_are_400(app: DashboardApp, path: str) -> None:
    assert call(app, path).code == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_writes_are_refused(app: DashboardApp, method: str) -> None:
    for path in ("/api/studies", at("trials"), "/"):
        response = call(app, path, method)
        assert response.code == 405
        assert response.headers["allow"] == "GET, HEAD"


def test_page_and_assets_are_served_from_the_package(app: DashboardApp) -> None:
    page = get(app, "/")
    assert page.headers["content-type"].startswith("text/html")
    html = page.body.decode()
    assert "<script src=\"/static/app.js\"" in html
    assert "http" not in html.replace("http-equiv", "")  # no CDN
    for asset in ("app.js", "charts.js", "plots.js", "schedules.js", "app.css"):
        body = get(app, "/static/" + asset).body.decode()
        assert "innerHTML" not in body and "eval(" not in body and "//cdn" not in body


def test_the_vendored_chart_library_is_served_with_the_policy(app: DashboardApp) -> None:
    html = get(app, "/").body.decode()
    assert '<script src="/static/vendor/uPlot.iife.min.js"' in html
    assert '<link rel="stylesheet" href="/static/vendor/uPlot.min.css">' in html
    script = get(app, "/static/vendor/uPlot.iife.min.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert script.body.startswith(b"/*! https://github.com/leeoniya/uPlot")
    assert b"new Function" not in script.body and b"eval(" not in script.body
    assert get(app, "/static/vendor/uPlot.min.css").headers["content-type"].startswith("text/css")
    assert b"MIT License" in get(app, "/static/vendor/LICENSE-uPlot.txt").body
    assert call(app, "/static/vendor/README.md").code == 404  # only the listed files


def test_only_the_chosen_study_is_listed(toy: pbtune.Study) -> None:
    app = DashboardApp(toy.storage, STUDY)
    assert get(app, "/api/config").json() == {"study": STUDY}
    assert [s["name"] for s in get(app, "/api/studies").json()] == [STUDY]
    assert json.loads(get(DashboardApp(toy.storage), "/api/config").body) == {"study": None}


def test_views_follow_a_study_as_it_runs(tmp_path: Path) -> None:
    """Before any result every view answers, empty; the same app then sees the results."""
    storage = pbtune.Storage(None)
    study = pbtune.create_study(
        "fresh", storage=storage, metric="q", space={"h0": pbtune.Float(0.0, 1.0),
                                                      SCRIPT_PARAM: pbtune.Float(0.0, 1.0)},
        population_size=2, steps_per_trial=2, max_steps=6, checkpoint_root=tmp_path,
    )
    app = DashboardApp(storage)
    before = call(app, "/api/plot?study=fresh").json()
    assert before["members"] == [] and before["jumps"] == []
    assert call(app, "/api/lineage?study=fresh").json() == {"trial": None, "nodes": []}
    assert call(app, "/api/trials?study=fresh").json()["total"] == 2
    assert call(app, "/api/summary?study=fresh").json()["steps_done"] == 0
    study.optimize(train, workers=1, show_progress=False)
    after = call(app, "/api/plot?study=fresh").json()
    assert sum(len(m["points"]) for m in after["members"]) == len(
        study.trials([pbtune.TrialState.COMPLETE]))
    assert call(app, "/api/summary?study=fresh").json()["steps_done"] == 12
    storage.dispose()
