"""Evaluation apart from training: ``optimize(train, evaluate=...)``."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import pbtune
from pbtune import TrialState
from pbtune.worker._evaluate import TrainThenEvaluate

HERE = Path(__file__).resolve().parent
TRAINERS = HERE / "trainers.py"


def make_study(storage: str | None, root: Path, name: str = "evaluated") -> pbtune.Study:
    return pbtune.create_study(
        name, storage=storage, space={"h0": pbtune.Float(0.0, 1.0), "h1": pbtune.Float(0.0, 1.0)},
        metric="q", mode="max", population_size=4, steps_per_trial=4, max_steps=24,
        checkpoint_root=root / "ckpt", seed=1,
    )


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_fitness_comes_from_the_evaluation(tmp_path: Path, storage: str) -> None:
    url = None if storage == "memory" else f"sqlite:///{tmp_path / 'study.db'}"
    study = make_study(url, tmp_path)
    study.optimize(f"{TRAINERS}:train_without_score", workers=2,
                   evaluate=f"{TRAINERS}:evaluate_q", show_progress=False)
    complete = study.trials([TrialState.COMPLETE])
    assert study.state == pbtune.StudyState.COMPLETE and complete
    for trial in complete:
        assert trial.metrics is not None
        assert trial.metrics["evaluated"] == 1.0 and "loss" in trial.metrics
        assert trial.fitness == trial.metrics["q"] == round(trial.metrics["q"], 4)
    assert study.best_trial.end_step == 24


def test_a_failing_evaluation_fails_the_trial_with_its_error(tmp_path: Path) -> None:
    study = make_study(None, tmp_path)
    with pytest.raises(pbtune.StudyFailedError, match="the external scorer is down"):
        study.optimize(f"{TRAINERS}:train_without_score", workers=1,
                       evaluate=f"{TRAINERS}:evaluate_raises", show_progress=False)
    failed = study.trials([TrialState.FAILED])
    assert failed and all("the evaluate function raised" in (t.error or "") for t in failed)


def test_train_then_evaluate_travels_to_worker_processes() -> None:
    bundle = TrainThenEvaluate(f"{TRAINERS}:train_without_score", f"{TRAINERS}:evaluate_q")
    copy = pickle.loads(pickle.dumps(bundle))
    assert (copy.train, copy.evaluate) == (bundle.train, bundle.evaluate)


def test_an_evaluate_that_is_not_a_function_is_refused(tmp_path: Path) -> None:
    study = make_study(None, tmp_path)
    with pytest.raises(pbtune.ConfigError, match="evaluate must be a function"):
        study.optimize(f"{TRAINERS}:train_without_score", evaluate=42,  # type: ignore[arg-type]
                       show_progress=False)
