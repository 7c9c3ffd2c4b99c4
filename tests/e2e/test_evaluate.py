"""Evaluation apart from training: ``create_study(..., evaluate=...)``."""

from __future__ import annotations

from pathlib import Path

import pytest

import pbtune
from pbtune import TrialState

HERE = Path(__file__).resolve().parent
TRAINERS = HERE / "trainers.py"


def make_study(storage: str | None, root: Path, evaluate: object = f"{TRAINERS}:evaluate_q",
               name: str = "evaluated") -> pbtune.Study:
    return pbtune.create_study(
        name, storage=storage, space={"h0": pbtune.Float(0.0, 1.0), "h1": pbtune.Float(0.0, 1.0)},
        metric="q", mode="max", population_size=4, steps_per_trial=4, max_steps=24,
        checkpoint_root=root / "ckpt", seed=1, evaluate=evaluate,  # type: ignore[arg-type]
    )


def assert_evaluated(study: pbtune.Study) -> list[pbtune.FrozenTrial]:
    complete = study.trials([TrialState.COMPLETE])
    assert study.state == pbtune.StudyState.COMPLETE and complete
    assert not study.trials([TrialState.TRAINED, TrialState.EVALUATING, TrialState.RUNNING,
                             TrialState.QUEUED])
    for trial in complete:
        assert trial.metrics is not None
        # training's loss and the evaluation's score, merged; the fitness is the score
        assert trial.metrics["evaluated"] == 1.0 and "loss" in trial.metrics
        assert trial.fitness == trial.metrics["q"] == round(trial.metrics["q"], 4)
    assert {t.end_step for t in study.storage.get_population(study.id)} == {24}
    return complete


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_fitness_comes_from_the_evaluation(tmp_path: Path, storage: str) -> None:
    url = None if storage == "memory" else f"sqlite:///{tmp_path / 'study.db'}"
    study = make_study(url, tmp_path)
    study.optimize(f"{TRAINERS}:train_without_score", workers=2, show_progress=False)
    assert_evaluated(study)


def test_dedicated_evaluators_evaluate_every_trial(tmp_path: Path) -> None:
    study = make_study(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)
    study.optimize(f"{TRAINERS}:train_without_score", workers=2, evaluators=1,
                   show_progress=False)
    complete = assert_evaluated(study)
    # A trial records the worker that last held it: here, always the one evaluator.
    assert len({t.worker for t in complete}) == 1


def test_a_failing_evaluation_fails_the_trial_with_its_error(tmp_path: Path) -> None:
    study = make_study(None, tmp_path, evaluate=f"{TRAINERS}:evaluate_raises")
    with pytest.raises(pbtune.StudyFailedError, match="the external scorer is down"):
        study.optimize(f"{TRAINERS}:train_without_score", workers=1, show_progress=False)
    failed = study.trials([TrialState.FAILED])
    assert failed and all("the evaluate function raised" in (t.error or "") for t in failed)
    # a failed evaluation's checkpoint is not kept
    assert all(t.checkpoint is None for t in failed)


def test_bad_evaluate_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(pbtune.ConfigError, match="evaluate must be"):
        make_study(None, tmp_path, evaluate=42)
    with pytest.raises(pbtune.ConfigError, match="evaluate must be"):
        make_study(None, tmp_path, evaluate="no-colon-here", name="other")
    plain = pbtune.create_study("plain", storage=None, space={"h0": pbtune.Float(0.0, 1.0)},
                                metric="q", checkpoint_root=tmp_path / "ckpt")
    with pytest.raises(pbtune.ConfigError, match="evaluators= needs"):
        plain.optimize(f"{TRAINERS}:quadratic", evaluators=1, show_progress=False)


def test_an_evaluate_defined_in_a_function_works_in_threads_and_is_refused_for_processes(
    tmp_path: Path,
) -> None:
    import json

    def score(trial: pbtune.Trial) -> dict[str, float]:  # not importable by name
        theta = json.loads((trial.checkpoint_dir / "theta.json").read_text())["theta"]
        return {"q": round(1.2 - (theta[0] ** 2 + theta[1] ** 2), 4), "evaluated": 1.0}

    in_memory = make_study(None, tmp_path, evaluate=score)
    in_memory.optimize(f"{TRAINERS}:train_without_score", workers=2, show_progress=False)
    assert_evaluated(in_memory)
    on_disk = make_study(f"sqlite:///{tmp_path / 'study.db'}", tmp_path, evaluate=score,
                         name="on-disk")
    with pytest.raises(pbtune.ConfigError, match="import the evaluate function by name"):
        on_disk.optimize(f"{TRAINERS}:train_without_score", show_progress=False)
    assert not on_disk.trials([TrialState.RUNNING, TrialState.FAILED])  # nothing was run
