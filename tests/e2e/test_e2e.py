"""End-to-end: real worker processes on a real SQLite file (and PostgreSQL where set)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

import pbtune
from pbtune import TrialState

HERE = Path(__file__).resolve().parent
TRAINERS = HERE / "trainers.py"
SPACE = {"h0": pbtune.Float(0.0, 1.0), "h1": pbtune.Float(0.0, 1.0)}


def make_study(tmp_path: Path, name: str = "e2e", **overrides: object) -> pbtune.Study:
    settings: dict[str, object] = dict(
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        space=SPACE,
        metric="q",
        mode="max",
        population_size=4,
        steps_per_trial=4,
        max_steps=40,
        checkpoint_root=tmp_path / "ckpt",
    )
    settings.update(overrides)
    return pbtune.create_study(name, **settings)  # type: ignore[arg-type]


def assert_accounted_for(study: pbtune.Study) -> None:
    """Every member reached max_steps; every trial ended; checkpoints match the records."""
    trials = study.trials()
    assert study.state == pbtune.StudyState.COMPLETE
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAILED, TrialState.LOST)
               for t in trials)
    by_id = {t.id: t for t in trials}
    for t in trials:
        if t.parent_id is not None:
            assert by_id[t.parent_id].state == TrialState.COMPLETE
            assert by_id[t.parent_id].finished_at <= t.created_at  # type: ignore[operator]
    final = {t.member: t for t in trials if t.state == TrialState.COMPLETE}
    for member in range(study.config.population_size):
        latest = max((t for t in trials if t.member == member), key=lambda t: t.number)
        assert latest.state == TrialState.COMPLETE and latest.end_step == study.config.max_steps
        assert member in final
    on_disk = {p.name for p in study.checkpoint_dir.iterdir() if p.name.startswith("trial-")}
    recorded = {t.checkpoint.name for t in trials if t.checkpoint is not None}
    assert on_disk == recorded
    assert len(recorded) <= study.config.population_size + study.config.keep_best
    for t in trials:
        if t.checkpoint is not None:
            assert (t.checkpoint / "theta.json").is_file()
            assert (t.checkpoint / "theta.json").stat().st_mode & 0o222 == 0  # read-only


def test_study_runs_to_its_budget_with_processes(tmp_path: Path) -> None:
    study = make_study(tmp_path, population_size=5)
    study.optimize(f"{TRAINERS}:quadratic", workers=2, show_progress=False)
    assert_accounted_for(study)
    assert study.best_trial.end_step == study.config.max_steps  # from the final population
    first = max(t.fitness or 0.0 for t in study.trials() if t.generation == 0)
    assert study.best_trial.fitness is not None and study.best_trial.fitness > first
    schedule = study.schedule()
    assert schedule[0].start_step == 0 and schedule[-1].end_step == 40
    assert [s.trial_id for s in schedule] == [t.id for t in study.lineage()]


def test_function_objects_work_as_well_as_entry_strings(tmp_path: Path) -> None:
    from e2e import trainers  # importable by worker processes: tests/ is on sys.path

    study = make_study(tmp_path, population_size=2, max_steps=12)
    study.optimize(trainers.quadratic, workers=2, show_progress=False)
    assert_accounted_for(study)


def test_in_memory_study_runs_in_threads(tmp_path: Path) -> None:
    from e2e import trainers

    study = pbtune.create_study(
        "memory", storage=None, space=SPACE, metric="q", population_size=3,
        steps_per_trial=5, max_steps=30, checkpoint_root=tmp_path / "ckpt",
    )
    study.optimize(trainers.quadratic, workers=2, show_progress=False)
    assert_accounted_for(study)
    assert study.storage.url is None


@pytest.mark.parametrize("explore", [pbtune.Perturb(), pbtune.PB2(min_observations=1)],
                         ids=["perturb", "pb2"])
def test_same_seed_and_one_worker_give_identical_studies(
    tmp_path: Path, explore: pbtune.ExploreStrategy
) -> None:
    def run(directory: Path) -> list[tuple[object, ...]]:
        directory.mkdir()
        study = make_study(directory, population_size=4, max_steps=24, seed=7,
                           explore=explore)
        study.optimize(f"{TRAINERS}:quadratic", workers=1, show_progress=False)
        numbers = {t.id: t.number for t in study.trials()}
        return [
            (t.number, t.member, t.generation, numbers.get(t.parent_id), t.params,
             t.start_step, t.end_step, t.decision, t.state, t.fitness)
            for t in study.trials()
        ]

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert first == second
    assert any(row[7] == "exploit" for row in first), "the run should contain exploits"


def test_every_first_trial_failing_stops_with_the_first_traceback(tmp_path: Path) -> None:
    study = make_study(tmp_path, population_size=3)
    with pytest.raises(pbtune.StudyFailedError) as raised:
        study.optimize(f"{TRAINERS}:always_raises", workers=2, show_progress=False)
    message = str(raised.value)
    assert "RuntimeError: broken training code for member" in message
    assert "Traceback" in message
    failed = study.trials([TrialState.FAILED])
    assert len(failed) >= 3 and study.state == pbtune.StudyState.FAILED
    # Nothing recorded is lost, and the study continues once the code is fixed.
    study.optimize(f"{TRAINERS}:quadratic", workers=2, show_progress=False)
    assert_accounted_for(study)
    assert len(study.trials([TrialState.FAILED])) == len(failed)


def test_bad_results_fail_the_trial_and_the_member_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PBTUNE_TEST_MARKERS", str(tmp_path / "markers"))
    study = make_study(tmp_path, population_size=4, max_steps=24)
    study.optimize(f"{TRAINERS}:flaky", workers=2, show_progress=False)
    assert_accounted_for(study)
    failed = study.trials([TrialState.FAILED])
    errors = "\n".join(t.error or "" for t in failed)
    assert "metric 'q' is nan" in errors
    assert "ValueError: flaky failure" in errors
    assert "lack the study's metric 'q'" in errors
    retries = [t for t in study.trials() if t.decision == "retry"]
    assert len(retries) == len(failed) == 4
    # Member 3's failure had a parent; its retry starts from the same one.
    [child] = [t for t in failed if t.member == 3]
    assert child.start_step == 20 and child.parent_id is not None
    assert [t.parent_id for t in retries if t.member == 3] == [child.parent_id]


def _start(tmp_path: Path, storage: str, **args: object) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(HERE / "run_study.py"), "--storage", storage,
               "--checkpoint-root", str(tmp_path / "ckpt")]
    for key, value in args.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    env = dict(os.environ, PBTUNE_TEST_DELAY="0.05")
    return subprocess.Popen(command, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_killed_worker_costs_one_segment_and_the_study_finishes(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    process = _start(tmp_path, storage, workers=2, max_steps=60)
    killed: set[int] = set()
    try:
        def running_trial() -> pbtune.FrozenTrial | None:
            try:
                study = pbtune.load_study("e2e", storage=storage)
            except pbtune.StorageError:
                return None
            completed = study.trials([TrialState.COMPLETE])
            running = study.trials([TrialState.RUNNING])
            return running[0] if len(completed) >= 4 and running else None

        for _ in range(2):
            seen: list[pbtune.FrozenTrial | None] = []

            def found() -> bool:
                seen.append(running_trial())  # noqa: B023
                return seen[-1] is not None  # noqa: B023

            _wait_for(found)
            victim = seen[-1]
            assert victim is not None and victim.worker is not None
            pid = int(victim.worker.split(":")[1])
            os.kill(pid, signal.SIGKILL)
            killed.add(victim.id)
            # The run notices the death and fails what the worker held, so the next
            # victim is a live worker's (a fixed pause can be too short under load).
            _wait_for(lambda pid=pid: not holds_trials(storage, pid))
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output.decode()
    study = pbtune.load_study("e2e", storage=storage)
    assert_accounted_for(study)
    lost = study.trials([TrialState.LOST])
    assert all((t.error or "").startswith("lost") for t in lost)
    assert {t.id for t in lost} >= killed - {t.id for t in study.trials([TrialState.COMPLETE])}
    assert len(lost) >= 1


def test_workers_end_when_only_the_run_that_started_them_is_killed(tmp_path: Path) -> None:
    # A worker forked by the forkserver is the server's child, and the server outlives
    # the run: the worker watches the run itself, or it would train on as an orphan.
    from pbtune.worker._process import pid_alive

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    process = _start(tmp_path, storage, workers=2, max_steps=4000)
    workers: set[int] = set()
    try:
        def both_train() -> bool:
            try:
                running = pbtune.load_study("e2e", storage=storage).trials([TrialState.RUNNING])
            except pbtune.StorageError:
                return False
            workers.update(int((t.worker or "").split(":")[1]) for t in running)
            return len(workers) >= 2

        _wait_for(both_train)
        os.kill(process.pid, signal.SIGKILL)  # the run only, not its process group
        process.wait()
        _wait_for(lambda: not any(pid_alive(pid) for pid in workers))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def holds_trials(storage: str, pid: int) -> bool:
    """Whether a RUNNING trial is recorded as held by worker process ``pid``."""
    try:
        running = pbtune.load_study("e2e", storage=storage).trials([TrialState.RUNNING])
    except pbtune.StorageError:
        return True
    return any((t.worker or "").split(":")[1:2] == [str(pid)] for t in running)


def test_killed_controller_resumes_with_the_same_command(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # With an hour-long heartbeat timeout, only the check for dead local workers can
    # retry the interrupted trials before the rerun's 120 s limit.
    process = _start(tmp_path, storage, workers=2, max_steps=60, heartbeat_timeout=3600)
    try:
        def some_completed() -> bool:
            try:
                done = pbtune.load_study("e2e", storage=storage).trials([TrialState.COMPLETE])
            except pbtune.StorageError:
                return False
            return len(done) >= 6

        _wait_for(some_completed)
        os.killpg(process.pid, signal.SIGKILL)  # the controller and its workers
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    before = {t.id: t for t in pbtune.load_study("e2e", storage=storage).trials()}
    rerun = _start(tmp_path, storage, workers=2, max_steps=60, heartbeat_timeout=3600)
    output, _ = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, output.decode()
    study = pbtune.load_study("e2e", storage=storage)
    assert_accounted_for(study)
    after = {t.id: t for t in study.trials()}
    for trial_id, trial in before.items():
        if trial.state == TrialState.COMPLETE:
            # Nothing completed is lost or run again (its checkpoint may be collected).
            assert replace(after[trial_id], checkpoint=None) == replace(trial, checkpoint=None)
    interrupted = [t for t in before.values() if t.state == TrialState.RUNNING]
    for trial in interrupted:
        assert after[trial.id].state == TrialState.LOST
        retries = [t for t in after.values() if t.decision == "retry" and t.member == trial.member
                   and t.start_step == trial.start_step and t.number > trial.number]
        assert len(retries) == 1


def test_a_trial_past_its_timeout_is_killed_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PBTUNE_TEST_MARKERS", str(tmp_path / "markers"))
    study = make_study(tmp_path, population_size=2, max_steps=12, trial_timeout=2.0)
    study.optimize(f"{TRAINERS}:hangs_once", workers=2, show_progress=False)
    assert_accounted_for(study)
    assert_only_timeouts_failed(study, 2.0)


def assert_only_timeouts_failed(study: pbtune.Study, limit: float) -> None:
    """The trial that hung (member 0's first) was killed for the timeout and retried; any
    other trial killed likewise ran past the limit too (a loaded machine can stall one)."""
    failed = study.trials([TrialState.FAILED])
    assert any(t.member == 0 and t.start_step == 0 for t in failed)
    for t in failed:
        assert t.error == f"timed out: ran longer than trial_timeout={limit}s"
        assert t.started_at is not None and t.finished_at is not None
        assert t.finished_at - t.started_at > limit
    retries = [t for t in study.trials() if t.decision == "retry"]
    assert len(retries) == len(failed)


def test_workers_end_when_their_controller_is_killed(tmp_path: Path) -> None:
    from pbtune.worker._process import pid_alive

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    process = _start(tmp_path, storage, workers=2, max_steps=4000)
    try:
        def running_workers() -> set[int]:
            try:
                running = pbtune.load_study("e2e", storage=storage).trials([TrialState.RUNNING])
            except pbtune.StorageError:
                return set()
            return {int((t.worker or "").split(":")[1]) for t in running}

        _wait_for(lambda: len(running_workers()) > 0)
        workers = running_workers()
        os.kill(process.pid, signal.SIGKILL)  # the controller only
        process.wait(timeout=30)
        _wait_for(lambda: not any(pid_alive(pid) for pid in workers), timeout=60)
    finally:
        # Whatever is left of the group (multiprocessing's resource tracker exits soon
        # after the workers, and may be gone already).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def test_workers_that_keep_dying_end_the_run_with_an_error(tmp_path: Path) -> None:
    # max_retries is high, so the bound on replacement workers is what ends the run.
    study = make_study(tmp_path, population_size=2, max_steps=8, max_retries=100)
    with pytest.raises(pbtune.StudyFailedError, match="worker processes kept dying"):
        study.optimize(f"{TRAINERS}:kills_its_process", workers=2, show_progress=False)
    assert study.state == pbtune.StudyState.RUNNING  # unfinished, not wrongly COMPLETE
    lost = study.trials([TrialState.LOST])
    assert lost and all("exit code 3" in (t.error or "") for t in lost)
    assert not study.trials([TrialState.FAILED])  # no trial failed by the code's own hand


def test_sys_exit_in_training_code_fails_only_that_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PBTUNE_TEST_MARKERS", str(tmp_path / "markers"))
    study = make_study(tmp_path, population_size=2, max_steps=8)
    study.optimize(f"{TRAINERS}:exits_once", workers=2, show_progress=False)
    assert_accounted_for(study)
    [failed] = study.trials([TrialState.FAILED])
    assert "SystemExit" in (failed.error or "")


def test_a_study_whose_members_all_failed_runs_again_once_fixed(tmp_path: Path) -> None:
    study = make_study(tmp_path, population_size=2, max_steps=8, max_retries=0)
    with pytest.raises(pbtune.StudyFailedError):
        study.optimize(f"{TRAINERS}:always_raises", workers=1, show_progress=False)
    recorded = study.trials()
    # Still broken: each member that gave up gets max_retries + 1 = 1 fresh try, no more.
    with pytest.raises(pbtune.StudyFailedError, match="failed"):
        study.optimize(f"{TRAINERS}:always_raises", workers=1, show_progress=False)
    assert len(study.trials()) == 2 * len(recorded)
    assert study.trials()[: len(recorded)] == recorded
    study.optimize(f"{TRAINERS}:quadratic", workers=1, show_progress=False)  # fixed
    assert study.state == pbtune.StudyState.COMPLETE
