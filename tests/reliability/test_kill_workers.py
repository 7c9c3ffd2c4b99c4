"""Workers SIGKILLed at random moments: the study still spends its budget, every killed
trial is failed as lost and retried once, and nobody ever sees a missing or partial
checkpoint. Real processes on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pbtune
from pbtune import Storage, StudyState, TrialState
from pbtune.controller import Claimed, Controller
from reliability import workload
from reliability.workload import CheckpointAudit, Run

POPULATION, STEPS_PER_TRIAL, MAX_STEPS = 3, 1, 5
INTERRUPTED_SHARE = 0.2


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from workload.storage_urls(request.param, tmp_path)


def test_killed_workers_cost_only_their_segments(storage_url: str, tmp_path: Path) -> None:
    rng = random.Random(20240611)
    name = "kill-workers"
    run = Run(storage_url, name, tmp_path / "ckpt", tmp_path / "log.jsonl", tmp_path / "out.txt",
              options=dict(workers=2, population=POPULATION, steps_per_trial=STEPS_PER_TRIAL,
                           max_steps=MAX_STEPS, delay="0.2,0.3", max_retries=100))
    storage = Storage(storage_url)  # the schema exists before the run opens it
    # Kill until the interrupted trials make up a safe margin above 20% of all trials.
    completions = POPULATION * MAX_STEPS // STEPS_PER_TRIAL
    wanted = math.ceil(0.28 * completions / 0.72)
    kills = 0
    # At most three deaths in a row without a trial completing in between: twice as
    # many, and the run would rightly take it for a crash loop and stop.
    in_a_row, completed_at_kill = 0, -1
    run.start()
    try:
        study_id = workload.wait_for(workload.find_study(storage, name), 60, "the study")
        study_dir = workload.study_dir(storage, name)
        audit = CheckpointAudit(storage, study_id, name, study_dir, run.log)
        deadline = time.time() + 120
        while run.process is not None and run.process.poll() is None:
            assert time.time() < deadline, f"the study did not finish:\n{run.tail()}"
            audit.poll()
            trials = storage.get_trials(study_id)
            running = [t for t in trials if t.state == TrialState.RUNNING]
            completed = sum(t.state == TrialState.COMPLETE for t in trials)
            if completed != completed_at_kill:
                in_a_row = 0
            if len(workload.lost_trials(trials)) < wanted and running and in_a_row < 3:
                victim = rng.choice(running)
                # A random moment: mostly while it trains, sometimes as it tells or asks.
                time.sleep(rng.uniform(0.0, 0.3))
                pid = workload.worker_pid(victim)
                if pid is not None and run.owns(pid):
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                    in_a_row, completed_at_kill = in_a_row + 1, completed
            time.sleep(0.05)
        assert run.wait(10) == 0, run.tail()
        audit.poll()
        audit.check_final_dirs()
    finally:
        run.stop()

    trials = storage.get_trials(study_id)
    events = workload.read_log(run.log)
    lost = workload.lost_trials(trials)
    assert len(lost) >= INTERRUPTED_SHARE * len(trials), (len(lost), len(trials), kills)
    assert workload.study_problems(storage, name, events) == []
    assert workload.log_problems(events, name) == {
        "double_claims": [], "completed_twice": [], "bad_parents": []}
    assert audit.problems == []
    assert audit.checkpoints_checked >= POPULATION
    print(f"kills {kills}, lost {len(lost)} of {len(trials)} trials, "
          f"{audit.checkpoints_checked} checkpoints read whole while running")
    children = [e for e in events if e.get("event") == "start" and e["start_step"] > 0]
    assert children, "no trial warm-started from a parent"
    # Every retry repeats its lost trial exactly: same member, parent, steps and params.
    retries = [t for t in trials if t.decision == "retry"]
    assert len(retries) == len(lost)
    assert not (study_dir / ".staging").exists()
    storage.dispose()


def test_lost_first_trials_do_not_fail_the_study_but_broken_code_does(tmp_path: Path) -> None:
    """Every member losing its first trial to a killed worker, before anything completed,
    is bad luck, not broken code: the trials are retried and the study goes on."""
    study = pbtune.create_study(
        "lost-first", storage=f"sqlite:///{tmp_path / 's.db'}",
        space={"x": pbtune.Float(0.0, 1.0)}, metric="score", population_size=2,
        steps_per_trial=1, max_steps=2, checkpoint_root=tmp_path / "ckpt",
        retry_delay=0)  # each retry claimed at once (backoff: test_disk_full.py)
    controller = Controller(study.storage, study.storage.get_study("lost-first"), study.config)

    def claim() -> Claimed:
        asked = controller.ask("host:1:w")
        assert isinstance(asked, Claimed)
        return asked

    for _ in range(2):  # both members' first trials, twice
        first, second = claim(), claim()
        assert controller.fail_lost(first, "lost: worker process 1 died")
        assert controller.fail_lost(second, "lost: worker process 2 died")
        assert study.state == StudyState.RUNNING
    # Broken code still fails the study at once, quoting the traceback, not a loss.
    assert controller.tell_failure(claim(), "Traceback ...\nValueError: broken")
    assert study.state == StudyState.RUNNING
    assert controller.tell_failure(claim(), "Traceback ...\nValueError: broken too")
    assert study.state == StudyState.FAILED
    assert (study.error or "").endswith("ValueError: broken")
    assert "lost" not in (study.error or "")
