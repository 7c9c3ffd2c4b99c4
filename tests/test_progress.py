"""The live progress display shows steps, the best fitness and trial counts."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

import pbtune
import tradeoff
from pbtune.study import ProgressDisplay, front_text


def _train(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {"score": float(trial.end_step) * trial.params["x"]}


def test_progress_counts_steps_and_shows_best(tmp_path: Path) -> None:
    study = pbtune.create_study(
        "progress", storage=None, space={"x": pbtune.Float(0.5, 1.0)}, metric="score",
        population_size=3, steps_per_trial=10, max_steps=30, checkpoint_root=tmp_path,
    )
    before = study.progress()
    assert (before.steps_done, before.steps_total) == (0, 90)
    assert before.counts[pbtune.TrialState.QUEUED] == 3 and before.best_fitness is None
    study.optimize(_train, workers=1, show_progress=False)
    after = study.progress()
    assert after.steps_done == after.steps_total == 90 and after.fraction == 1.0
    assert after.best_fitness == study.best_trial.fitness

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160)
    record = study.storage.get_study(study.name)
    with ProgressDisplay(study.storage, record, console=console) as display:
        assert display.enabled
        display.update(force=True)
    text = out.getvalue()
    best = study.best_trial
    assert "90/90" in text
    assert f"best so far: score (max) {best.fitness:.6g} (trial {best.number})" in text
    assert "trials: 9 complete" in text


def test_progress_is_quiet_when_not_a_terminal(tmp_path: Path) -> None:
    study = pbtune.create_study(
        "quiet", storage=None, space={"x": pbtune.Float(0.5, 1.0)}, metric="score",
        population_size=2, steps_per_trial=10, max_steps=10, checkpoint_root=tmp_path,
    )
    out = io.StringIO()
    record = study.storage.get_study(study.name)
    with ProgressDisplay(study.storage, record, console=Console(file=out)) as display:
        display.update(force=True)
    assert out.getvalue() == ""


def _bar(study: pbtune.Study) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    with ProgressDisplay(study.storage, study.storage.get_study(study.name), console=console):
        pass
    return out.getvalue()


def test_the_bar_of_several_objectives_shows_the_front(tmp_path: Path) -> None:
    study = tradeoff.make(None, "bar", tmp_path, objectives=2)
    text = _bar(study)
    assert f"front: {front_text(study.best_trials)} | trials: " in text
    assert "best so far" not in text and "72/72" in text


def test_the_bar_of_a_constrained_study_shows_the_best_feasible_trial(tmp_path: Path) -> None:
    study = tradeoff.make(None, "bar", tmp_path, objectives=None, max_steps=2)  # one round
    done = study.trials([pbtune.TrialState.COMPLETE])
    feasible = [t for t in done if not tradeoff.infeasible(t)]
    best = max(feasible, key=lambda t: t.fitness or 0.0)
    top = max(done, key=lambda t: t.fitness or 0.0)
    assert tradeoff.infeasible(top), "the most accurate trial should break the constraint"
    assert f"best so far: accuracy (max) {best.fitness:.6g} (trial {best.number}) |" in _bar(study)
