"""The read commands on studies of several objectives and constraints: `pbtune best`
lists the Pareto front (table, JSON, CSV), `status` and `trials` show each objective
and mark infeasible trials, and `schedule` asks for a trial where there is no best."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import pbtune
import tradeoff
from pbtune.cli import cli


def invoke(args: Sequence[str]) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="pbtune")


def ok(args: Sequence[str]) -> str:
    result = invoke(args)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite file with three finished studies: "two" and "three" objectives, and
    "one" (accuracy alone), each with the memory constraint."""
    folder = tmp_path_factory.mktemp("objectives")
    address = f"sqlite:///{folder / 't.db'}"
    storage = pbtune.Storage(address)
    for name, objectives in (("two", 2), ("three", 3), ("one", None)):
        tradeoff.make(storage, name, folder / "ck", objectives=objectives)
    storage.dispose()
    return address


def study(url: str, name: str) -> pbtune.Study:
    return pbtune.load_study(name, storage=url)


def read(url: str, name: str, *args: str) -> str:
    return ok([*args, "--storage", url, "--study", name])


@pytest.mark.parametrize("name", ["two", "three"])
def test_best_lists_the_front_as_json_csv_and_a_table(url: str, name: str) -> None:
    loaded = study(url, name)
    front = loaded.best_trials
    names = list(loaded.config.objectives or {})
    assert len(front) > 1 and len(names) == (2 if name == "two" else 3)

    rows: list[dict[str, Any]] = json.loads(read(url, name, "best", "--format", "json"))
    assert [r["id"] for r in rows] == [t.id for t in front]
    for row, trial in zip(rows, front, strict=True):
        assert row["objectives"] == {n: trial.metrics[n] for n in names}  # type: ignore[index]
        assert row["params"] == trial.params and row["member"] == trial.member
        assert row["feasible"] is True and row["violation"] == 0.0

    table = list(csv.DictReader(io.StringIO(read(url, name, "best", "--format", "csv"))))
    assert [int(r["trial"]) for r in table] == [t.number for t in front]
    for row, trial in zip(table, front, strict=True):
        assert {n: float(row[n]) for n in names} == {
            n: trial.metrics[n] for n in names}  # type: ignore[index]
        assert row["feasible"] == "True" and float(row["params.lr"]) == trial.params["lr"]
        assert int(row["end_step"]) == trial.end_step == 12

    text = read(url, name, "best")
    assert f"Pareto front of '{name}': {len(front)} trials" in text
    assert all(f"{n} (" in text for n in names) and "feasible" in text
    numbers = [int(m.group(1)) for m in re.finditer(r"^│ +(\d+) │", text, re.MULTILINE)]
    assert numbers == [t.number for t in front]


def test_status_shows_the_objectives_the_constraint_and_the_front(url: str) -> None:
    out = read(url, "two", "status")
    front = study(url, "two").best_trials
    assert "accuracy (max), latency_ms (min)" in out and "memory_mb <= 2400" in out
    assert f"front at max_steps │ {len(front)} trials (trials " in out
    assert "best" not in out.replace("pbtune best", "")


def test_trials_have_a_column_per_objective_and_say_which_break_a_constraint(url: str) -> None:
    loaded = study(url, "two")
    trials = loaded.trials()
    out = read(url, "two", "trials")
    assert "accuracy (max)" in out and "latency_ms (min)" in out and "fitness" not in out
    bad = [t for t in trials if tradeoff.infeasible(t)]
    assert bad, "the study should have infeasible trials"
    assert out.count("no: memory_mb") == len(bad)
    rows = json.loads(read(url, "two", "trials", "--format", "json"))
    assert [r["feasible"] for r in rows] == [not tradeoff.infeasible(t) for t in trials]
    assert rows[0]["objectives"] == {n: trials[0].metrics[n]  # type: ignore[index]
                                     for n in ("accuracy", "latency_ms")}
    table = list(csv.DictReader(io.StringIO(read(url, "two", "trials", "--format", "csv"))))
    assert [float(r["violation"]) > 0 for r in table] == [tradeoff.infeasible(t) for t in trials]


def test_schedule_without_a_best_trial_says_to_pick_one_of_the_front(url: str) -> None:
    result = invoke(["schedule", "--storage", url, "--study", "two"])
    front = study(url, "two").best_trials
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "several objectives" in result.output and "--trial N" in result.output
    assert ", ".join(str(t.number) for t in front) in result.output
    # the advice works
    pick = front[0]
    segments = json.loads(read(url, "two", "schedule", "--trial", str(pick.number)))
    assert segments[-1]["trial_id"] == pick.number and segments[-1]["params"] == pick.params


def test_a_constrained_study_s_best_is_feasible_in_every_format(url: str) -> None:
    loaded = study(url, "one")
    best = loaded.best_trial
    assert not tradeoff.infeasible(best)
    row = json.loads(read(url, "one", "best", "--format", "json"))
    assert row["id"] == best.id and row["feasible"] is True and row["fitness"] == best.fitness
    (line,) = csv.DictReader(io.StringIO(read(url, "one", "best", "--format", "csv")))
    assert int(line["trial"]) == best.number and float(line["fitness"]) == best.fitness
    text = read(url, "one", "best")
    assert "best trial of 'one'" in text and re.search(r"feasible +│ yes", text)
    status = read(url, "one", "status")
    assert f"accuracy (max) {best.fitness:.6g} (trial {best.number}," in status
    assert "memory_mb <= 2400" in status


def test_plot_writes_the_front_and_the_other_views(url: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = invoke(["plot", "--storage", url, "--study", "two", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("front.png", "pbt.png", "lineage.png", "schedules.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
        assert f"wrote {tmp_path / name}" in result.output
