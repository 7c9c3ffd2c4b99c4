"""Studies of several objectives, with constraints and the early stop, run end to end."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import pbtune
from pbtune import Float, StudyState, TrialState
from pbtune.cli._config import load_config
from pbtune.strategies import Lagging, dominates

SPACE = {"x": Float(0.0, 1.0)}


def tradeoff(trial: pbtune.Trial) -> dict[str, float]:
    """accuracy grows with x and with steps; cost grows with x; memory with x."""
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    x = trial.params["x"]
    return {"accuracy": x * trial.end_step / 100, "cost": 10 * x * x, "memory": 100 * x}


@pytest.fixture(autouse=True)
def _in_a_folder_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-memory studies keep their checkpoints in ./pbtune_checkpoints: not the checkout's."""
    monkeypatch.chdir(tmp_path)


def study_of(name: str, storage: Any = None, **options: Any) -> pbtune.Study:
    settings: dict[str, Any] = dict(
        space=SPACE, population_size=8, steps_per_trial=10, max_steps=60, seed=3,
        objectives={"accuracy": "max", "cost": "min"})
    settings.update(options)
    return pbtune.create_study(name, storage=storage, **settings)


def test_the_best_trials_are_the_feasible_front_of_the_final_population() -> None:
    study = study_of("front", constraints={"memory": {"max": 80}})
    study.optimize(tradeoff, workers=2, show_progress=False)
    assert study.state == StudyState.COMPLETE
    final = study.storage.get_population(study.id)
    assert {t.end_step for t in final} == {60}
    front = study.best_trials
    assert front and all(t.metrics and t.metrics["memory"] <= 80 for t in front)
    assert all(t.fitness is None for t in front)  # several objectives: no one number
    points = {t.id: (t.metrics["accuracy"], -t.metrics["cost"]) for t in final
              if t.metrics and t.metrics["memory"] <= 80}
    expected = sorted(i for i, p in points.items()
                      if not any(dominates(q, p) for q in points.values()))
    assert [t.id for t in front] == expected
    with pytest.raises(pbtune.ConfigError, match="best_trials"):
        _ = study.best_trial
    by_accuracy = study.best_trial_by("accuracy")
    assert by_accuracy.metrics is not None
    assert by_accuracy.metrics["accuracy"] == max(p[0] for p in points.values())


def test_one_objective_with_a_constraint_keeps_its_best_feasible() -> None:
    study = study_of("bounded", objectives={"accuracy": "max"},
                     constraints={"memory": {"max": 50}})
    study.optimize(tradeoff, workers=1, show_progress=False)
    best = study.best_trial
    assert best.metrics is not None and best.metrics["memory"] <= 50
    feasible = [t for t in study.trials([TrialState.COMPLETE])
                if t.end_step == 60 and t.metrics and t.metrics["memory"] <= 50]
    assert best.fitness == max(t.fitness for t in feasible if t.fitness is not None)
    assert study.best_trials == [best]


def lagging_task(trial: pbtune.Trial) -> dict[str, float]:
    """A score that a member keeps from its checkpoint and adds x to: members that start
    with a small x stay behind unless they copy someone."""
    before = float((trial.parent_checkpoint / "score").read_text()) if (
        trial.parent_checkpoint) else 0.0
    score = before + trial.params["x"] * (trial.end_step - trial.start_step)
    (trial.checkpoint_dir / "score").write_text(repr(score))
    return {"score": score}


def test_a_member_that_stays_at_the_bottom_restarts_from_a_better_one(tmp_path: Path
                                                                       ) -> None:
    study = pbtune.create_study(
        "lagging", storage=None, space=SPACE, metric="score", population_size=8,
        steps_per_trial=5, max_steps=60, seed=1, checkpoint_root=tmp_path,
        exploit=pbtune.MultiRate(intervals=(100,)),  # never selects: only the early stop
        early_stop=Lagging(generations=2))
    study.optimize(lagging_task, workers=1, show_progress=False)
    trials = {t.id: t for t in study.trials()}
    restarts = [t for t in trials.values() if t.decision == "restart"]
    assert restarts
    for restart in restarts:
        assert restart.parent_id is not None
        parent = trials[restart.parent_id]
        assert parent.member != restart.member  # a copy of another member
        assert restart.start_step == parent.end_step
        assert restart in study.lineage(restart.id)
    # the slot keeps its budget: every member trains to max_steps
    assert {t.end_step for t in study.storage.get_population(study.id)} == {60}
    assert {s.trial_id for s in study.schedule(restarts[0].id)} >= {restarts[0].id}


def test_a_resumed_study_decides_as_an_uninterrupted_one(tmp_path: Path) -> None:
    """The early stop's counts are stored with the members: a study stopped and resumed
    makes the same decisions as one run in one go."""
    options: dict[str, Any] = dict(
        space=SPACE, metric="score", population_size=6, steps_per_trial=5, max_steps=50,
        seed=2, exploit=pbtune.MultiRate(intervals=(100,)), early_stop=Lagging(2))
    whole = pbtune.create_study("whole", storage=f"sqlite:///{tmp_path / 'a.db'}",
                                checkpoint_root=tmp_path / "a", **options)
    whole.join(lagging_task, workers=1)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    parts = pbtune.create_study("parts", storage=url, checkpoint_root=tmp_path / "b",
                                **options)
    parts.join(lagging_task, workers=1, max_trials=17)
    parts.storage.dispose()
    resumed = pbtune.load_study("parts", storage=url)
    assert resumed.state == StudyState.RUNNING
    resumed.join(lagging_task, workers=1)

    def decisions(study: pbtune.Study) -> list[tuple[Any, ...]]:
        return [(t.member, t.parent_id, t.decision, t.params, t.start_step)
                for t in study.trials()]

    assert any(t.decision == "restart" for t in whole.trials())
    assert decisions(resumed) == decisions(whole)


def test_a_missing_objective_fails_the_trial_and_says_which(caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    study = study_of("missing", population_size=2)
    with caplog.at_level(logging.WARNING, logger="pbtune"), pytest.raises(
            pbtune.StudyFailedError, match="lack the study's objective 'cost'"):
        study.optimize(no_cost, workers=1, show_progress=False)


def no_cost(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "state").write_text("1")
    return {"accuracy": 0.5}


def test_the_study_file_takes_objectives_constraints_and_early_stop(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        "name: t\nspace: {x: {type: float, low: 0, high: 1}}\n"
        "objectives: {accuracy: max, cost: min}\n"
        "constraints: {memory: {max: 80}}\n"
        "early_stop: {type: lagging, generations: 4}\n")
    options = load_config(path).options
    assert options["objectives"] == {"accuracy": "max", "cost": "min"}
    assert options["constraints"] == {"memory": {"max": 80}}
    assert options["early_stop"] == Lagging(generations=4)
    study = pbtune.create_study("t", storage=None, **options)
    assert study.config.criteria.names == ("accuracy", "cost")
    path.write_text("name: t\nspace: {x: {type: float, low: 0, high: 1}}\nmetric: a\n"
                    "early_stop: {type: patience}\n")
    with pytest.raises(pbtune.ConfigError, match="early_stop type must be one of lagging"):
        load_config(path)
