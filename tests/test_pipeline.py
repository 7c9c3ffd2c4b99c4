"""A worker whose training takes much longer than a tell starts its next trial as soon as
the checkpoint is committed and tells the result in the background (worker/_loop.py,
`_Teller`). These tests set `PIPELINE_RATIO` so that the choice does not depend on timing."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pbtune
from pbtune import StorageError, TrialState
from pbtune.controller import Controller
from pbtune.controller import _controller as controller_module
from pbtune.worker import _loop, run_worker


def make_study(tmp_path: Path, population: int = 3, max_steps: int = 12) -> pbtune.Study:
    return pbtune.create_study(
        name="pipe", storage=f"sqlite:///{tmp_path / 'study.db'}",
        space={"lr": pbtune.Float(1e-3, 1.0, log=True)}, metric="acc", mode="max",
        population_size=population, steps_per_trial=2, max_steps=max_steps, seed=3,
        checkpoint_root=tmp_path / "ckpt", keep_best=1,
    )


def train(trial: pbtune.Trial) -> dict[str, float]:
    value = 0.0
    if trial.parent_checkpoint is not None:
        value = float((trial.parent_checkpoint / "value.txt").read_text())
    value += float(trial.params["lr"]) * (trial.end_step - trial.start_step)
    (trial.checkpoint_dir / "value.txt").write_text(repr(value))
    return {"acc": value}


def overlapped(trials: list[Any]) -> int:
    """How many trials were claimed before the trial their worker ran just before them was
    recorded (one worker: all trials in the order they were claimed)."""
    ordered = sorted(trials, key=lambda t: t.started_at)
    return sum(1 for before, after in itertools.pairwise(ordered)
               if after.started_at < before.finished_at)


def test_a_worker_starts_its_next_trial_before_the_tell_when_training_dominates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_loop, "PIPELINE_RATIO", 0.0)
    study = make_study(tmp_path)
    done = run_worker(study.storage, "pipe", train)
    trials = study.trials()
    assert done == len(trials)
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert study.state == pbtune.StudyState.COMPLETE
    assert overlapped(trials) > 0
    # Every warm start read its parent's committed value: the lineage adds up.
    by_id = {t.id: t for t in trials}
    for t in trials:
        parent = by_id[t.parent_id].metrics["acc"] if t.parent_id is not None else 0.0
        expected = parent + float(t.params["lr"]) * (t.end_step - t.start_step)
        assert t.metrics["acc"] == pytest.approx(expected)
    referenced = {t.checkpoint for t in trials if t.checkpoint is not None}
    on_disk = {p for p in Path(study.checkpoint_dir).iterdir() if p.name.startswith("trial-")}
    assert on_disk == referenced  # the background tells collected garbage as usual


def test_short_trials_are_told_in_the_transaction_that_claims_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_loop, "PIPELINE_RATIO", float("inf"))
    study = make_study(tmp_path)
    run_worker(study.storage, "pipe", train)
    assert overlapped(study.trials()) == 0


def test_a_background_tell_that_fails_fails_that_trial_and_the_worker_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_loop, "PIPELINE_RATIO", 0.0)
    study = make_study(tmp_path, population=2, max_steps=8)
    original = controller_module.enqueue_next
    calls = {"n": 0}

    def flaky(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("the decision broke")
        return original(*args)

    monkeypatch.setattr(controller_module, "enqueue_next", flaky)
    run_worker(study.storage, "pipe", train)
    failed = study.trials([TrialState.FAILED])
    assert len(failed) == 1 and "the decision broke" in (failed[0].error or "")
    assert study.state == pbtune.StudyState.COMPLETE  # its member retried and finished
    assert not study.trials([TrialState.RUNNING])


def test_a_storage_outage_in_a_background_tell_stops_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_loop, "PIPELINE_RATIO", 0.0)
    study = make_study(tmp_path, population=3)
    told = {"n": 0}
    original = Controller.tell_and_ask

    def failing(self: Controller, *args: Any) -> Any:
        if args[3] is None:  # a tell in the background claims nothing
            told["n"] += 1
            if told["n"] == 1:
                raise StorageError("the database went away")
        return original(self, *args)

    monkeypatch.setattr(Controller, "tell_and_ask", failing)
    with pytest.raises(StorageError, match="went away"):
        run_worker(study.storage, "pipe", train)
    assert told["n"] == 1  # the outage met a tell in the background
    # The untold trial and the one that had started are left RUNNING, to be failed as
    # lost (no heartbeat) and retried; nothing was recorded wrongly.
    running = study.trials([TrialState.RUNNING])
    assert 1 <= len(running) <= 2
    assert not study.trials([TrialState.FAILED])


SHARED = np.zeros(())  # a metric object the training code reuses, as a tensor may be
FITNESS_CALLS: list[float] = []


def reuse_the_metric(trial: pbtune.Trial) -> dict[str, Any]:
    SHARED[...] = -1.0  # the next trial starts over while the last result may be told
    time.sleep(0.02)
    SHARED[...] = float(trial.params["lr"]) * trial.end_step
    (trial.checkpoint_dir / "done").write_text("1")
    return {"acc": SHARED}


def counted(metrics: Any) -> float:
    FITNESS_CALLS.append(float(metrics["acc"]))
    return float(metrics["acc"])


def test_a_result_told_in_the_background_is_what_training_returned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The metrics are checked (read into floats) before the next trial starts, and the
    # fitness function runs once per result, never beside the next trial's training.
    monkeypatch.setattr(_loop, "PIPELINE_RATIO", 0.0)
    FITNESS_CALLS.clear()
    study = pbtune.create_study(
        name="pipe", storage=f"sqlite:///{tmp_path / 'study.db'}",
        space={"lr": pbtune.Float(1e-3, 1.0, log=True)}, fitness=counted,
        population_size=3, steps_per_trial=2, max_steps=12, seed=3,
        checkpoint_root=tmp_path / "ckpt",
    )
    run_worker(study.storage, "pipe", reuse_the_metric, fitness=counted)
    trials = study.trials()
    assert overlapped(trials) > 0
    for t in trials:
        assert t.metrics == {"acc": t.params["lr"] * t.end_step}
        assert t.fitness == t.params["lr"] * t.end_step
    assert len(FITNESS_CALLS) == len(trials)
