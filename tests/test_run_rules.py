"""What bounds one run and what it reports as it goes: ``optimize(timeout=...)`` and
``join(timeout=...)`` (the running trials go back in the queue unchanged and the study
stays resumable), and ``callbacks=[...]`` (each finished trial once, in order of
completion, in the process that runs the study)."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pbtune
from pbtune import ConfigError, StudyState, TrialState
from pbtune.worker import Deadline, run_worker

WAIT_S = 300.0  # a generous bound for a busy machine; no test waits this long when it passes

HANGS = '''
import pathlib, time

MARKS = pathlib.Path({marks!r})


def hangs(trial):
    """Blocks until the test lets it go (a file appears), so it is certainly running at
    the deadline."""
    (MARKS / f"started-{{trial.id}}").touch()
    give_up = time.monotonic() + {wait}
    while not (MARKS / "release").exists() and time.monotonic() < give_up:
        time.sleep(0.05)
    (trial.checkpoint_dir / "state").write_text("slow")
    return {{"m": 0.0}}


def quick(trial):
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {{"m": trial.params["x"] + trial.end_step}}
'''


def quick(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
    return {"m": trial.params["x"] + trial.end_step}


def make_study(root: Path, storage: str | None = None, *, population: int = 2,
               max_steps: int = 2, name: str = "rules") -> pbtune.Study:
    return pbtune.create_study(name, storage=storage, space={"x": pbtune.Float(0, 1)},
                               metric="m", population_size=population, steps_per_trial=1,
                               max_steps=max_steps, checkpoint_root=root / "ckpt")


def started(marks: Path) -> set[int]:
    """The trials whose training began (each touched a file)."""
    return {int(p.name.removeprefix("started-")) for p in marks.glob("started-*")}


def failures(study: pbtune.Study) -> list[int]:
    return [m.failures for m in study.storage.get_members(study.id)]


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


@pytest.fixture
def deadline_once_training(monkeypatch: pytest.MonkeyPatch, marks: Path) -> None:
    """The timeout passes only once it has and a training has begun, so a trial is
    certainly running at the deadline, however slow the machine."""
    passed = Deadline.passed

    def once_training(self: Deadline) -> bool:
        return bool(started(marks)) and passed(self)

    monkeypatch.setattr(Deadline, "passed", once_training)


def timeout_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "timeout of" in r.getMessage()]


def assert_put_back(study: pbtune.Study, marks: Path, before: list[int]) -> set[int]:
    """The run stopped at its timeout and left the study resumable: RUNNING, nothing held,
    the trials that were training QUEUED again (the same rows), no failure counted."""
    assert study.state == StudyState.RUNNING
    assert not study.trials([TrialState.RUNNING])
    queued = {t.id for t in study.trials([TrialState.QUEUED])}
    began = started(marks)
    assert began and began <= queued
    assert not study.trials([TrialState.FAILED]) and not study.trials([TrialState.LOST])
    assert failures(study) == before
    for trial in study.trials([TrialState.QUEUED]):
        assert trial.worker is None and trial.started_at is None
    return began


# -- timeout -----------------------------------------------------------------------------
@pytest.mark.usefixtures("deadline_once_training")
def test_timeout_with_threads_puts_the_running_trials_back(
        tmp_path: Path, marks: Path, caplog: pytest.LogCaptureFixture) -> None:
    study = make_study(tmp_path)
    release = threading.Event()
    seen: list[int] = []

    def member_1_hangs(trial: pbtune.Trial) -> dict[str, float]:
        if trial.member == 0:
            return quick(trial)
        (marks / f"started-{trial.id}").touch()
        release.wait(WAIT_S)  # the deadline does not wait for this
        (trial.checkpoint_dir / "state").write_text("slow")
        return {"m": 0.0}

    before = failures(study)
    with caplog.at_level(logging.INFO, logger="pbtune"):
        summary = study.optimize(member_1_hangs, workers=2, timeout=0.2, show_progress=False,
                                 callbacks=[lambda trial: seen.append(trial.id)])
    began = assert_put_back(study, marks, before)
    assert summary.state == StudyState.RUNNING and summary.timeout_s == 0.2
    assert "the run stopped at its timeout (0.2 s)" in str(summary)
    # What finished before the deadline reached the callbacks, the last of it at the end.
    complete = sorted(study.trials([TrialState.COMPLETE]),
                      key=lambda t: (t.finished_at or 0.0, t.id))
    assert seen == [t.id for t in complete]
    [line] = timeout_lines(caplog)
    assert line.levelno == logging.WARNING
    assert re.fullmatch(
        rf"timeout of 0\.2 s passed: {len(began)} running trial\(s\) put back in the queue "
        r"unchanged \(a timeout does not wait for a segment to end\); they run again from "
        r"their start and do not count as failures; call optimize again to continue study "
        r"'rules'", line.getMessage()), line.getMessage()
    release.set()  # the threads that could not be stopped end: their results are refused
    _join_worker_threads()
    assert {t.id for t in study.trials([TrialState.QUEUED])} >= began
    assert not study.trials([TrialState.RUNNING])
    study.optimize(quick, workers=2, show_progress=False)
    assert study.state == StudyState.COMPLETE
    assert all(Path(t.checkpoint).is_dir() for t in study.trials([TrialState.COMPLETE])
               if t.checkpoint is not None)


@pytest.mark.usefixtures("deadline_once_training")
def test_timeout_with_processes_puts_the_running_trials_back(
        tmp_path: Path, marks: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = tmp_path / "hangs.py"
    script.write_text(HANGS.format(marks=str(marks), wait=WAIT_S))
    study = make_study(tmp_path, f"sqlite:///{tmp_path / 'rules.db'}", population=3)
    before = failures(study)
    with caplog.at_level(logging.INFO, logger="pbtune"):
        summary = study.optimize(f"{script}:hangs", workers=2, timeout=0.2,
                                 show_progress=False)
    began = assert_put_back(study, marks, before)
    assert len(study.trials()) == 3  # no retry rows: the same trials wait in the queue
    assert summary.state == StudyState.RUNNING and summary.timeout_s == 0.2
    [line] = timeout_lines(caplog)
    back = int(re.search(r"passed: (\d+) running", line.getMessage()).group(1))  # type: ignore[union-attr]
    assert len(began) <= back <= 2
    assert line.getMessage().endswith(
        "run the same command (or call optimize) again to continue study 'rules'")
    summary = study.optimize(f"{script}:quick", workers=2, show_progress=False)
    assert summary.state == StudyState.COMPLETE and summary.timeout_s is None
    assert {t.id for t in study.trials([TrialState.COMPLETE])} >= began
    assert failures(study) == before


@pytest.mark.usefixtures("deadline_once_training")
def test_a_late_result_of_a_thread_that_could_not_be_stopped_harms_nothing(
        tmp_path: Path, marks: Path) -> None:
    """Trial 0 is put back at the deadline while its thread still trains; the next run
    trains it again and commits its checkpoint; then the old thread ends and tries to
    commit under the same name: it is refused, and the new checkpoint stays."""
    study = make_study(tmp_path, population=1, max_steps=3)
    release = threading.Event()

    def hangs(trial: pbtune.Trial) -> dict[str, float]:
        (marks / f"started-{trial.id}").touch()
        release.wait(WAIT_S)
        (trial.checkpoint_dir / "state").write_text("late")
        return {"m": 5.0}

    study.optimize(hangs, timeout=1, show_progress=False)
    assert [t.state for t in study.trials()] == [TrialState.QUEUED]
    assert study.join(quick, max_trials=1) == 1
    first = study.trial(0)
    assert first.state == TrialState.COMPLETE and first.checkpoint is not None
    release.set()
    _join_worker_threads()
    assert study.trial(0) == first
    assert (Path(first.checkpoint) / "state").read_text() == "1"
    study.optimize(quick, show_progress=False)
    assert study.state == StudyState.COMPLETE


def test_join_with_one_worker_stops_in_the_middle_of_a_trial(
        tmp_path: Path, marks: Path, deadline_once_training: None) -> None:
    script = tmp_path / "hangs.py"
    script.write_text(HANGS.format(marks=str(marks), wait=WAIT_S))
    study = make_study(tmp_path, f"sqlite:///{tmp_path / 'rules.db'}")
    before = failures(study)
    assert study.join(f"{script}:hangs", timeout=0.2) == 0
    assert_put_back(study, marks, before)
    assert study.join(f"{script}:quick") == len(study.trials())
    assert study.state == StudyState.COMPLETE


@pytest.mark.parametrize(
    "timeout", [True, "60", 0, -1.0, math.inf, math.nan, [60]],
    ids=["bool", "str", "zero", "negative", "inf", "nan", "list"],
)
def test_bad_timeouts_are_refused_before_anything_runs(tmp_path: Path, timeout: Any) -> None:
    study = make_study(tmp_path)
    trials = study.trials()
    with pytest.raises(ConfigError, match=r"timeout must be a positive, finite number of "
                                          r"seconds \(e\.g\. timeout=3600\), or None"):
        study.optimize(quick, timeout=timeout)
    with pytest.raises(ConfigError, match="timeout must be"):
        study.join(quick, timeout=timeout)
    assert study.trials() == trials and study.state == StudyState.RUNNING


def test_a_study_that_ends_before_its_timeout_says_nothing_of_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    study = make_study(tmp_path)
    with caplog.at_level(logging.INFO, logger="pbtune"):
        summary = study.optimize(quick, timeout=WAIT_S, show_progress=False)
    assert summary.state == StudyState.COMPLETE and summary.timeout_s is None
    assert not timeout_lines(caplog) and "timeout" not in str(summary)


# -- callbacks ---------------------------------------------------------------------------
def test_callbacks_see_every_finished_trial_once_in_order_of_completion(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    study = make_study(tmp_path, population=3, max_steps=4)
    one: list[pbtune.FrozenTrial] = []
    two: list[tuple[object, pbtune.FrozenTrial]] = []
    threads: set[str] = set()

    def fails_once(trial: pbtune.Trial) -> dict[str, float]:
        if trial.id == 1:  # a FAILED trial, then its retry
            raise ValueError("planted")
        return quick(trial)

    def with_study(study: pbtune.Study, trial: pbtune.FrozenTrial) -> None:
        threads.add(threading.current_thread().name)
        two.append((study, trial))

    def broken(trial: pbtune.FrozenTrial) -> None:
        raise RuntimeError(f"broken on {trial.id}")

    with caplog.at_level(logging.INFO, logger="pbtune"):
        study.optimize(fails_once, workers=2, show_progress=False,
                       callbacks=(one.append, broken, with_study))
    assert study.state == StudyState.COMPLETE  # the broken callback did not stop it
    finished = sorted((t for t in study.trials() if not t.state.is_active),
                      key=lambda t: (t.finished_at or 0.0, t.id))
    assert TrialState.FAILED in {t.state for t in finished}
    order = [(t.id, t.state) for t in finished]
    assert [(t.id, t.state) for t in one] == order  # each once, in order of completion
    assert [(t.id, t.state) for _, t in two] == order and all(s is study for s, _ in two)
    assert threads == {"MainThread"}  # in the process (and here the thread) of optimize
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == len(finished)
    for record, trial in zip(errors, finished, strict=True):
        assert record.name == "pbtune.study" and record.exc_info is not None
        assert (f"callback test_callbacks_see_every_finished_trial_once_in_order_of_completion"
                f".<locals>.broken raised on trial {trial.id}") in record.getMessage()


def test_callbacks_are_not_called_after_ctrl_c(tmp_path: Path) -> None:
    study = make_study(tmp_path, population=3, max_steps=6)
    calls: list[int] = []

    def ctrl_c(trial: pbtune.FrozenTrial) -> None:
        calls.append(trial.id)
        raise KeyboardInterrupt  # as if Ctrl-C came while it ran

    with pytest.raises(KeyboardInterrupt):
        study.optimize(quick, workers=2, show_progress=False, callbacks=[ctrl_c])
    assert len(calls) == 1


def test_join_callbacks_see_only_the_trials_run_there(tmp_path: Path) -> None:
    study = make_study(tmp_path, f"sqlite:///{tmp_path / 'rules.db'}", population=2,
                       max_steps=3)
    seen: list[pbtune.FrozenTrial] = []

    def meanwhile_elsewhere(trial: pbtune.Trial) -> dict[str, float]:
        if trial.id == 0:  # another machine's worker finishes a trial during the join
            run_worker(study.storage, study.name, quick, worker_id="elsewhere:1:w",
                       max_trials=1)
        return quick(trial)

    done = study.join(meanwhile_elsewhere, callbacks=[seen.append])
    assert study.state == StudyState.COMPLETE
    elsewhere = [t for t in study.trials() if t.worker == "elsewhere:1:w"]
    assert len(elsewhere) == 1
    here = [t for t in study.trials() if t.worker != "elsewhere:1:w"]
    assert done == len(here) and sorted(t.id for t in seen) == sorted(t.id for t in here)


@pytest.mark.parametrize(
    ("callbacks", "message"),
    [
        (print, "callbacks must be a list of functions"),
        ("on_trial", "callbacks must be a list of functions"),
        (3, "callbacks must be a list of functions"),
        ([3], "callback 3 is not callable"),
        ([lambda study, trial, more: None], r"cannot be called with a trial"),
        ([lambda: None], r"cannot be called with a trial"),
        ([lambda trial, *, verbose: None], r"cannot be called with a trial"),
    ],
)
def test_bad_callbacks_are_refused_before_anything_runs(
        tmp_path: Path, callbacks: Any, message: str) -> None:
    study = make_study(tmp_path)
    trials = study.trials()
    with pytest.raises(ConfigError, match=message) as error:
        study.optimize(quick, callbacks=callbacks)
    assert "callbacks=[on_trial]" in str(error.value)
    with pytest.raises(ConfigError, match=message):
        study.join(quick, callbacks=callbacks)
    assert study.trials() == trials and study.state == StudyState.RUNNING


def test_callback_signatures(tmp_path: Path) -> None:
    from pbtune.study._callbacks import check_callbacks

    class OnTrial:
        def __call__(self, trial: pbtune.FrozenTrial) -> None: ...

    def optional(trial: pbtune.FrozenTrial, verbose: bool = False) -> None: ...

    given: list[Callable[..., object]] = [
        lambda trial: None, lambda study, trial: None, lambda *args: None, OnTrial(),
        optional, lambda trial, *rest: None,
    ]
    assert [two for _, two in check_callbacks(given)] == [False, True, True, False, False,
                                                          False]


def _join_worker_threads() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("pbtune-worker-"):
            thread.join(timeout=WAIT_S)
            assert not thread.is_alive()


@pytest.fixture(autouse=True)
def _no_threads_left_behind() -> Iterator[None]:
    yield
    give_up = time.monotonic() + WAIT_S
    while any(t.name.startswith("pbtune-worker-") for t in threading.enumerate()):
        assert time.monotonic() < give_up
        time.sleep(0.05)
