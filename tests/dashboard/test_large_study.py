"""A study of 1e5 trials: every dashboard endpoint answers with a bounded payload."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, insert, update

import pbtune
from dashboard.toy import call
from pbtune.dashboard import DashboardApp
from pbtune.dashboard import _data as data
from pbtune.dashboard import _fitness as fitness
from pbtune.storages._schema import members, trials

POPULATION = 100
GENERATIONS = 1000  # POPULATION * GENERATIONS = 1e5 trials
STEPS = 10
MAX_BYTES = 1_000_000


def bulk_study(tmp_path: Path) -> pbtune.Storage:
    """A finished study written straight into the tables: member m's trial of generation g
    continues its own previous trial, except every fourth, which copied member m + 1's."""
    storage = pbtune.Storage(f"sqlite:///{tmp_path}/large.db")
    study = pbtune.create_study(
        "large", storage=storage, metric="acc", space={"lr": pbtune.Float(1e-4, 1.0, log=True)},
        population_size=POPULATION, steps_per_trial=STEPS, max_steps=STEPS * GENERATIONS,
        checkpoint_root=tmp_path / "ck",
    )
    rows = []
    for g in range(GENERATIONS):
        for m in range(POPULATION):
            number = g * POPULATION + m
            exploit = g > 0 and (m + g) % 4 == 0
            source = (m + 1 if exploit else m) % POPULATION
            parent = None if g == 0 else (g - 1) * POPULATION + source  # its number
            rows.append({
                "id": number + 1, "study_id": study.id, "number": number, "member": m,
                "generation": g, "parent_id": parent, "params": {"lr": 0.01 * (1 + m % 7)},
                "start_step": g * STEPS, "end_step": (g + 1) * STEPS, "state": "COMPLETE",
                "decision": "exploit" if exploit else ("initial" if g == 0 else "continue"),
                "metrics": {"acc": g / GENERATIONS + m * 1e-5},
                "fitness": g / GENERATIONS + m * 1e-5, "created_at": float(number),
            })
    with storage._engine.begin() as connection:  # the test's bulk insert; pbtune never does this
        connection.execute(delete(trials).where(trials.c.study_id == study.id))
        connection.execute(insert(trials), rows)
        for m in range(POPULATION):  # each member's latest trial is its last generation's
            connection.execute(
                update(members).where(members.c.study_id == study.id, members.c.member == m)
                .values(state="DONE", latest_complete_id=(GENERATIONS - 1) * POPULATION + m))
    return storage


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> DashboardApp:
    return DashboardApp(bulk_study(tmp_path_factory.mktemp("large")))


@pytest.mark.parametrize("view", [
    "summary", "plot", "lineage", "lineage?trial=50000", "schedules", "trials?limit=500",
    "trials?offset=99950&sort=fitness&desc=1", "schedule.csv", "schedule.json",
])
def test_endpoints_stay_bounded(app: DashboardApp, view: str) -> None:
    name, _, query = view.partition("?")
    response = call(app, f"/api/{name}?study=large&{query}")
    assert response.code == 200, response.body[:200]
    assert len(response.body) < MAX_BYTES, (view, len(response.body))


def test_plot_and_table_are_downsampled_and_paged(app: DashboardApp) -> None:
    assert call(app, "/api/studies").json()[0]["steps_done"] == POPULATION * GENERATIONS * STEPS
    plot = call(app, "/api/plot?study=large").json()
    assert len(plot["members"]) == POPULATION
    assert sum(len(m["points"]) for m in plot["members"]) <= fitness.MAX_PLOT_POINTS
    assert 0 < len(plot["jumps"]) <= fitness.MAX_JUMPS
    assert len(plot["best"]["path"]) == GENERATIONS
    page = call(app, "/api/trials?study=large&offset=99990&limit=50").json()
    assert page["total"] == POPULATION * GENERATIONS
    assert [r["number"] for r in page["rows"]] == list(range(99990, 100000))
    lineage = call(app, "/api/lineage?study=large").json()
    assert len(lineage["nodes"]) == GENERATIONS  # one path, one trial per generation
    schedules = call(app, "/api/schedules?study=large").json()
    assert len(schedules["params"][0]["population"]) <= data.MAX_POPULATION_POINTS
