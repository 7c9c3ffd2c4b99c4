"""A study that ends early, end to end: a stop rule that fires, `Study.stop` from outside,
workers of every kind that then exit (threads, processes, a `pbtune worker` of the command
line), and a stopped study that runs again when its rules change or its budget grows."""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pbtune
from pbtune import StudyState, Target, TrialState
from pbtune.controller import Claimed, Controller
from pbtune.dashboard._data import StudyData, summary
from pbtune.storages import Storage

HERE = Path(__file__).resolve()
SRC = Path(pbtune.__file__).resolve().parents[1]
SPACE = {"lr": pbtune.Float(0.5, 1.0)}
NEVER = 10**6  # a budget no test reaches: only a stop ends these studies
DEADLINE_S = 120.0


def climb(trial: pbtune.Trial) -> dict[str, float]:
    """Score = the sum of lr over the lineage's steps (carried in the checkpoint), so every
    member climbs by at least half a point a step."""
    score = 0.0
    if trial.parent_checkpoint is not None:
        score = json.loads((trial.parent_checkpoint / "score.json").read_text())["score"]
    score += trial.params["lr"] * (trial.end_step - trial.start_step)
    pace = float(os.environ.get("PBTUNE_TEST_PACE", "0"))
    if pace:  # keeps a worker busy for a moment, so that others get trials too
        time.sleep(pace)
    (trial.checkpoint_dir / "score.json").write_text(json.dumps({"score": score}))
    return {"score": score}


@pytest.fixture
def paced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBTUNE_TEST_PACE", "0.02")


def make(tmp_path: Path, storage: str | Storage | None, name: str = "climb",
         **overrides: Any) -> pbtune.Study:
    settings: dict[str, Any] = dict(
        space=SPACE, metric="score", population_size=4, steps_per_trial=2,
        max_steps=NEVER, checkpoint_root=tmp_path / "ckpt", seed=1)
    settings.update(overrides)
    return pbtune.create_study(name, storage=storage, **settings)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def fired_trial(reason: str) -> int:
    assert reason.startswith("trial "), reason
    return int(reason.split()[1])


def assert_ended_early(study: pbtune.Study, stopped_at: float | None = None) -> None:
    """COMPLETE with a reason, nothing held, and no trial decided after the stop: a trial
    that finished at or after the result that stopped the study (or after ``stopped_at``,
    when the study was stopped from outside) has no successor."""
    record = study.storage.get_study_by_id(study.id)
    assert record.state == StudyState.COMPLETE and record.stop_reason
    trials = study.trials()
    assert not [t for t in trials if t.state.is_held]
    if stopped_at is None:
        stopped_at = study.trial(fired_trial(record.stop_reason)).finished_at
    assert stopped_at is not None
    late = [t for t in trials if t.state == TrialState.COMPLETE
            and t.finished_at is not None and t.finished_at >= stopped_at]
    for t in late:
        assert not [s for s in trials if s.member == t.member and s.number > t.number], (
            f"trial {t.number} finished after the stop and its member got a new trial")


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_target_that_a_trial_reaches_ends_the_study_for_every_worker(
    tmp_path: Path, backend: str, paced: None, caplog: pytest.LogCaptureFixture,
) -> None:
    url = None if backend == "thread" else f"sqlite:///{tmp_path / 'studies.db'}"
    storage = Storage(url) if url else Storage(None)
    study = make(tmp_path, storage, stop=Target(score=20))
    train = climb if backend == "thread" else f"{HERE}:climb"
    with caplog.at_level(logging.INFO, logger="pbtune"):
        summary = study.optimize(train, workers=3, backend=backend, show_progress=False)
    assert summary.state == StudyState.COMPLETE
    reason = study.stop_reason
    assert reason is not None and reason.endswith("(Target(score=20))")
    assert study.trial(fired_trial(reason)).metrics["score"] >= 20  # type: ignore[index]
    assert summary.stop_reason == reason and f"stopped: {reason}" in str(summary)
    assert f"stopped: {reason}" in caplog.text
    assert_ended_early(study)
    assert study.best_value >= 20 and summary.steps_done < summary.steps_total

    count = len(study.trials())
    again = study.optimize(train, workers=2, backend=backend, show_progress=False)
    assert again.elapsed_s == 0.0 and again.stop_reason == reason
    loaded = pbtune.load_study("climb", storage=storage)
    assert loaded.config.stop == (Target(score=20),)  # the rules are stored with it
    loaded.optimize(train, workers=2, backend=backend, show_progress=False)
    assert len(study.trials()) == count and loaded.stop_reason == reason


def test_study_stop_from_another_thread_ends_the_run_of_every_worker(
    tmp_path: Path, paced: None,
) -> None:
    study = make(tmp_path, None)
    stopped_at: list[float] = []

    def stop_later() -> None:
        wait_for(lambda: len(study.trials([TrialState.COMPLETE])) >= 6, "6 results")
        assert study.stop("enough") is True
        stopped_at.append(time.time())

    stopper = threading.Thread(target=stop_later)
    stopper.start()
    summary = study.optimize(climb, workers=3, backend="thread", show_progress=False)
    stopper.join()
    assert summary.stop_reason == "enough" and "stopped: enough" in str(summary)
    assert_ended_early(study, stopped_at[0])
    assert study.stop("again") is False and study.stop_reason == "enough"  # idempotent


def test_study_stop_from_another_process_ends_the_workers_of_this_one(
    tmp_path: Path, paced: None,
) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = make(tmp_path, url)
    code = ("import pbtune, time\n"
            f"s = pbtune.load_study('climb', storage={url!r})\n"
            "while len(s.trials([pbtune.TrialState.COMPLETE])) < 6: time.sleep(0.05)\n"
            "s.stop()\n"
            "print(time.time())\n")
    stopper = subprocess.Popen([sys.executable, "-c", code], env=cli_env(), text=True,
                               stdout=subprocess.PIPE)
    try:
        summary = study.optimize(f"{HERE}:climb", workers=2, show_progress=False)
    finally:
        printed, _ = stopper.communicate(timeout=DEADLINE_S)
    assert stopper.returncode == 0
    assert summary.stop_reason == "Study.stop() was called"
    assert_ended_early(study, float(printed))


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def test_a_pbtune_worker_joined_from_elsewhere_exits_when_a_rule_fires(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = make(tmp_path, url, stop=Target(score=30))
    worker = subprocess.Popen(
        [sys.executable, "-m", "pbtune", "worker", "--storage", url, "--study", "climb",
         "--entry", f"{HERE}:climb"],
        cwd=tmp_path, env=cli_env(PBTUNE_TEST_PACE="0.05"), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # The worker is certainly running before the rule fires: it has results already.
        wait_for(lambda: study.trials([TrialState.COMPLETE]) or worker.poll() is not None,
                 "the worker's first result")
        assert worker.poll() is None and study.stop_reason is None
        # This process works on the study too, so the rule may fire on either's result.
        study.join(climb, workers=1)
        output, _ = worker.communicate(timeout=DEADLINE_S)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, output
    assert "is COMPLETE" in output and f"stopped: {study.stop_reason}" in output
    assert_ended_early(study)


def test_status_and_the_dashboard_show_why_a_study_stopped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = make(tmp_path, url, stop=pbtune.TotalSteps(40))
    study.optimize(climb, workers=1, backend="thread", show_progress=False)
    shown = subprocess.run(
        [sys.executable, "-m", "pbtune", "status", "--storage", url, "--study", "climb"],
        env=cli_env(COLUMNS="200"), text=True, capture_output=True, check=True).stdout
    assert "stopped: 40 steps trained in all" in shown
    record = study.storage.get_study("climb")
    assert summary(StudyData(study.storage), record)["stop_reason"] == record.stop_reason


# -- running again ----------------------------------------------------------------------------


def test_changed_rules_run_a_study_a_rule_stopped_again_and_it_then_finishes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = make(tmp_path, url, max_steps=24, stop=Target(score=8))
    study.optimize(climb, workers=2, backend="thread", show_progress=False)
    assert_ended_early(study)
    queued = [t.number for t in study.trials([TrialState.QUEUED])]
    assert queued  # trials decided before the stop wait in the queue

    with caplog.at_level(logging.WARNING, logger="pbtune"):
        again = make(tmp_path, url, max_steps=24, stop=Target(score=10**6),
                     load_if_exists=True)
    assert "stop: [{type: 'target', score: 8.0}] -> [{type: 'target', score: 1000000.0}]" \
        in caplog.text and "runs again" in caplog.text
    assert again.state == StudyState.RUNNING and again.stop_reason is None
    summary = again.optimize(climb, workers=2, backend="thread", show_progress=False)
    assert summary.state == StudyState.COMPLETE and summary.stop_reason is None
    assert all(study.trial(n).state == TrialState.COMPLETE for n in queued)
    # Every member trained to the budget on an unbroken lineage from step 0.
    final = study.storage.get_population(study.id)
    assert sorted(t.member for t in final) == [0, 1, 2, 3]
    for t in final:
        lineage = study.lineage(t.id)
        assert t.end_step == 24 and lineage[0].start_step == 0
        assert all(a.end_step == b.start_step for a, b in itertools.pairwise(lineage))


def test_new_rules_that_would_have_stopped_the_study_keep_it_stopped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = make(tmp_path, url, max_steps=40, stop=pbtune.TotalSteps(30))
    study.optimize(climb, workers=1, backend="thread", show_progress=False)
    first = study.stop_reason
    assert first is not None and "TotalSteps(30)" in first
    # Rules as if they had always been there: 20 steps were reached on the way.
    again = make(tmp_path, url, max_steps=40, stop=pbtune.TotalSteps(20), load_if_exists=True)
    assert again.state == StudyState.COMPLETE and "TotalSteps(20)" in str(again.stop_reason)
    # A running study that new rules would have stopped stops at once.
    other = make(tmp_path, url, name="other", max_steps=40)
    run_some(other, 3)
    stopped = make(tmp_path, url, name="other", max_steps=40, stop=Target(score=0.1),
                   load_if_exists=True)
    assert stopped.state == StudyState.COMPLETE
    assert "reached score" in str(stopped.stop_reason)


def run_some(study: pbtune.Study, results: int) -> None:
    """Record ``results`` results of the study through its controller, here."""
    controller = Controller(study.storage, study._record, study.config)
    for _ in range(results):
        claimed = controller.ask("here")
        assert isinstance(claimed, Claimed)
        run = controller.start(claimed)
        run.call(climb)
        run.commit()
        run.tell()


def test_a_user_stop_survives_new_rules_and_extend_runs_it_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = make(tmp_path, url, max_steps=8)
    run_some(study, 5)
    assert study.stop() is True
    make(tmp_path, url, max_steps=8, stop=Target(score=10**6), load_if_exists=True)
    assert study.stop_reason == "Study.stop() was called"  # new rules do not undo it
    study.extend(max_steps=12)
    assert study.state == StudyState.RUNNING and study.stop_reason is None
    summary = study.optimize(climb, workers=2, backend="thread", show_progress=False)
    assert summary.state == StudyState.COMPLETE and summary.stop_reason is None
    assert {t.member: t.end_step for t in study.storage.get_population(study.id)} == {
        0: 12, 1: 12, 2: 12, 3: 12}


def test_a_late_failure_in_a_stopped_study_queues_its_retry_and_leaves_the_study(
    tmp_path: Path,
) -> None:
    study = make(tmp_path, None)
    controller = Controller(study.storage, study._record, study.config)
    claimed = controller.ask("here")
    assert isinstance(claimed, Claimed)
    assert study.stop("enough")
    assert controller.tell_failure(claimed, "lost: its worker died", lost=True, counts=False)
    assert study.state == StudyState.COMPLETE and study.stop_reason == "enough"
    retry = study.trials()[-1]
    assert retry.decision == "retry" and retry.state == TrialState.QUEUED
    assert controller.ask("here") == pbtune.controller.DONE


def test_rules_given_to_optimize_are_stored_and_kept_by_a_resume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = make(tmp_path, url, name="given")
    study.optimize(climb, workers=1, backend="thread", show_progress=False,
                   stop=Target(score=30.0))
    assert_ended_early(study)
    stored = study.storage.get_study_by_id(study.id).config["stop"]
    assert stored == [Target(score=30.0).to_dict()]
    study.storage.dispose()
    again = pbtune.load_study("given", storage=url)
    assert again.config.stop == (Target(score=30.0),)
    summary = again.optimize(climb, workers=1, backend="thread", show_progress=False)
    assert summary.stop_reason and again.state == StudyState.COMPLETE  # nothing ran
    # a higher target judges the past, reopens the study, and ends it at the new target
    again.optimize(climb, workers=1, backend="thread", show_progress=False,
                   stop=[Target(score=60.0)])
    reason = again.stop_reason
    assert reason is not None and again.trial(fired_trial(reason)).metrics["score"] >= 60.0


def test_rules_given_to_optimize_are_checked_before_anything_runs(tmp_path: Path) -> None:
    study = make(tmp_path, None, name="checked")
    with pytest.raises(pbtune.ConfigError, match="Target"):
        study.optimize(climb, workers=1, show_progress=False, stop=Target(accuracy=0.9))
    with pytest.raises(pbtune.ConfigError, match="stop must be a stop rule"):
        study.optimize(climb, workers=1, show_progress=False, stop="accuracy>0.9")
    assert study.config.stop == () and all(
        t.state == TrialState.QUEUED for t in study.trials())
