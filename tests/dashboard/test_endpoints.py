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
    assert study["best_trial"] == toy.best_trial.id
    assert study["workers_active"] == 0
    assert study["counts"]["FAILED"] == 1


def test_plot_has_every_member_and_exploit_jumps(app: DashboardApp, toy: pbtune.Study) -> None:
    plot = get(app, at("plot")).json()
    complete = toy.trials([pbtune.TrialState.COMPLETE])
    assert sorted(m["member"] for m in plot["members"]) == [0, 1, 2, 3]
    assert sum(len(m["points"]) for m in plot["members"]) == len(complete)
    by_id = {t.id: t for t in complete}
    exploits = [t for t in complete if t.parent_id is not None
                and by_id[t.parent_id].member != t.member]
    assert exploits, "the toy study should have exploits"
    assert {j[5] for j in plot["jumps"]} == {t.id for t in exploits}
    for jump in plot["jumps"]:
        parent, child = by_id[jump[4]], by_id[jump[5]]
        assert jump[:4] == [parent.end_step, parent.fitness, child.end_step, child.fitness]


def test_lineage_of_a_given_trial_and_of_the_best(app: DashboardApp, toy: pbtune.Study) -> None:
    best = get(app, at("lineage")).json()
    assert best["trial"] == toy.best_trial.id
    assert [n["id"] for n in best["nodes"]] == [t.id for t in toy.lineage()]
    some = toy.trials([pbtune.TrialState.COMPLETE])[10]
    chosen = get(app, at(f"lineage?trial={some.id}")).json()
    assert [n["id"] for n in chosen["nodes"]] == [t.id for t in toy.lineage(some.id)]
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
    given = get(app, at(f"schedule.json?trial={some.id}")).json()
    assert given == [s.to_dict() for s in toy.schedule(some.id)]


def test_table_pages_sorts_and_filters(app: DashboardApp, toy: pbtune.Study) -> None:
    everything = toy.trials()
    first = get(app, at("trials?limit=10")).json()
    second = get(app, at("trials?limit=10&offset=10")).json()
    assert first["total"] == second["total"] == len(everything)
    assert [r["id"] for r in first["rows"] + second["rows"]] == [t.id for t in everything[:20]]
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
    for asset in ("app.js", "plots.js", "app.css"):
        body = get(app, "/static/" + asset).body.decode()
        assert "innerHTML" not in body and "eval(" not in body and "//cdn" not in body


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
