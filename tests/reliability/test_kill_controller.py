"""The whole optimize process tree SIGKILLed mid-run, twice, and the same command run
again: the study resumes; nothing completed is lost or run twice (by the records and by
the training code's own log); the budget is met, and the only extra training is the
segments that were interrupted. Real processes on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pbtune import FrozenTrial, Storage, TrialState
from reliability import workload
from reliability.workload import CheckpointAudit, Run

POPULATION, STEPS_PER_TRIAL, MAX_STEPS, WORKERS = 3, 1, 8, 2
KILLS = 2


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from workload.storage_urls(request.param, tmp_path)


def test_killed_controller_resumes_and_repeats_only_interrupted_segments(
    storage_url: str, tmp_path: Path
) -> None:
    name = "kill-controller"
    # An hour-long heartbeat timeout: only the restart's check for dead local workers
    # can retry the interrupted trials in time.
    run = Run(storage_url, name, tmp_path / "ckpt", tmp_path / "log.jsonl", tmp_path / "out.txt",
              options=dict(workers=WORKERS, population=POPULATION, max_steps=MAX_STEPS,
                           steps_per_trial=STEPS_PER_TRIAL, delay="0.1,0.2",
                           heartbeat_timeout=3600))
    storage = Storage(storage_url)
    budget = POPULATION * MAX_STEPS // STEPS_PER_TRIAL
    snapshots: list[dict[int, FrozenTrial]] = []
    run.start()
    try:
        study_id = workload.wait_for(workload.find_study(storage, name), 60, "the study")
        audit = CheckpointAudit(storage, study_id, name, workload.study_dir(storage, name),
                                run.log)
        for kill in range(1, KILLS + 1):
            def training_mid_run(kill: int = kill) -> bool:
                audit.poll()
                trials = storage.get_trials(study_id)
                done = sum(t.state == TrialState.COMPLETE for t in trials)
                started = {e["id"] for e in workload.read_log(run.log)
                           if e.get("event") == "start"}
                training = [t for t in trials
                            if t.state == TrialState.RUNNING and t.id in started]
                return done >= kill * budget // (KILLS + 1) and bool(training)

            workload.wait_for(training_mid_run, 60, f"kill {kill}'s moment", interval=0.01)
            run.kill_tree()
            snapshots.append({t.id: t for t in storage.get_trials(study_id)})
            run.start()  # the same command again
        assert run.wait(120) == 0, run.tail()
        audit.poll()
        audit.check_final_dirs()
    finally:
        run.stop()

    after = {t.id: t for t in storage.get_trials(study_id)}
    events = workload.read_log(run.log)
    assert workload.study_problems(storage, name, events) == []
    assert workload.log_problems(events, name) == {
        "double_claims": [], "completed_twice": [], "bad_parents": []}
    assert audit.problems == []

    interrupted: dict[int, FrozenTrial] = {}
    for before in snapshots:
        for trial_id, trial in before.items():
            if trial.state == TrialState.COMPLETE:
                # Nothing completed is lost or run again (its checkpoint may be collected).
                assert replace(after[trial_id], checkpoint=None) == replace(
                    trial, checkpoint=None)
            elif trial.state == TrialState.RUNNING:
                interrupted[trial_id] = trial
                assert after[trial_id].state == TrialState.LOST
                assert (after[trial_id].error or "").startswith("lost")
                retries = [t for t in after.values() if t.decision == "retry"
                           and (t.member, t.start_step, t.end_step, t.parent_id)
                           == (trial.member, trial.start_step, trial.end_step, trial.parent_id)
                           and t.number > trial.number]
                assert len(retries) == 1
    assert 1 <= len(interrupted) <= KILLS * WORKERS
    # The trials failed as lost are exactly the ones the kills interrupted.
    assert {t.id for t in workload.lost_trials(after.values())} == set(interrupted)

    # Steps that training code ran = what a run without faults trains (every COMPLETE
    # segment once) + the interrupted segments that had started.
    started = {e["id"] for e in events if e.get("event") == "start"}
    complete = sum(t.end_step - t.start_step for t in after.values()
                   if t.state == TrialState.COMPLETE)
    repeated = sum(t.end_step - t.start_step for t in interrupted.values() if t.id in started)
    assert repeated >= 1
    assert workload.trained_steps(events, name) == complete + repeated
    assert repeated <= KILLS * WORKERS * STEPS_PER_TRIAL
    storage.dispose()


def test_the_storage_url_options_reach_postgresql() -> None:
    """A restarted command must reach the same study: libpq options in the URL (here the
    schema that isolates this test) are honoured next to pbtune's own session options."""
    from conftest import postgres_url

    base = postgres_url()
    schema = f"pbtune_rel_{uuid.uuid4().hex[:12]}"
    storage = Storage(workload.postgres_schema(base, schema))
    try:
        rows = storage._read(lambda c: c.exec_driver_sql(
            "SELECT current_schema(), current_setting('idle_in_transaction_session_timeout')"
        ).all())
        assert rows == [(schema, "1min")]
    finally:
        storage.dispose()
        workload.drop_postgres_schema(base, schema)
