"""A zombie worker: paused (SIGSTOP) past the heartbeat timeout, its trial is failed as lost
and retried elsewhere; continued (SIGCONT), its late result must change nothing."""

from __future__ import annotations

import dataclasses
import os
import signal
import uuid
from pathlib import Path

import pytest

import pbtune
from conftest import postgres_url
from pbtune import TrialState
from reliability.contention_workload import (
    CONTROL_ENV,
    LOG_ENV,
    read_log,
    start_run,
    wait_for,
    worker_pid,
)

HEARTBEAT_TIMEOUT = 2.0


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        return stat.read().rpartition(")")[2].split()[0]


def without_checkpoint(trial: pbtune.FrozenTrial) -> pbtune.FrozenTrial:
    # Garbage collection may drop a checkpoint later; everything else must stay put.
    return dataclasses.replace(trial, checkpoint=None)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_zombie_workers_late_result_is_refused_and_changes_nothing(
    backend: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}" if backend == "sqlite" else postgres_url()
    name = f"zombie-{uuid.uuid4().hex[:8]}"
    control, log = tmp_path / "control", tmp_path / "claims.log"
    control.mkdir()
    # Member 0 cannot finish, so neither can the study, until the hold is lifted.
    (control / "hold").write_text("60")
    run = start_run(tmp_path, url, name, entry="pausable", workers=2, population=2,
                    steps_per_trial=1, max_steps=60, heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    env={CONTROL_ENV: str(control), LOG_ENV: str(log)})
    try:
        marker = wait_for(lambda: (control / "zombie").exists() and (control / "zombie"),
                          60, "the zombie's trial to start")
        zombie_id, pid = (int(part) for part in marker.read_text().split())
        wait_for(lambda: process_state(pid) == "T", 10, f"worker {pid} to stop")
        study = pbtune.load_study(name, storage=url)

        # Past the heartbeat timeout, the other worker fails the trial as lost and retries it.
        def retried() -> tuple[pbtune.FrozenTrial, pbtune.FrozenTrial] | None:
            original = study.trial(zombie_id)
            retries = [t for t in study.trials() if t.decision == "retry"
                       and t.member == original.member and t.start_step == original.start_step]
            if retries and retries[0].state == TrialState.COMPLETE:
                return original, retries[0]
            return None

        original, retry = wait_for(retried, 30, "the lost trial's retry to complete")
        assert process_state(pid) == "T", "the zombie must still be paused"
        assert original.state == TrialState.LOST
        assert (original.error or "").startswith("lost: no heartbeat"), original.error
        stored = study.storage.write(study.id, lambda tx: tx.trial_with_claim(zombie_id))
        assert stored is not None and stored[1] is None  # the claim was revoked
        assert worker_pid(original) == pid and worker_pid(retry) != pid
        assert study.state == pbtune.StudyState.RUNNING

        # The zombie comes back, trains on, and tells a result that nobody may record.
        (control / "resume").touch()
        os.kill(pid, signal.SIGCONT)
        zombie_checkpoint = study.checkpoint_dir / f"trial-{original.number:06d}"
        refusal = f"pbtune worker {pid}: refused the result of trial {zombie_id}"
        wait_for(lambda: refusal in run.stderr, 30, "the zombie's result to be refused")
        wait_for(lambda: zombie_id in {e.trial_id for e in read_log(log)}, 5,
                 "the zombie's execution in the log")
        # Its committed checkpoint directory is removed by the worker itself, while the
        # study still runs (so not by the sweep at the end of the study).
        wait_for(lambda: not zombie_checkpoint.exists(), 10, "the zombie's checkpoint removal")
        assert study.state == pbtune.StudyState.RUNNING
        assert without_checkpoint(study.trial(zombie_id)) == without_checkpoint(original)
        assert without_checkpoint(study.trial(retry.id)) == without_checkpoint(retry)

        (control / "hold").unlink()
        code = run.wait(timeout=120)
    finally:
        run.kill()
    assert code == 0, run.stderr[-4000:]

    study = pbtune.load_study(name, storage=url)
    trials = study.trials()
    assert study.state == pbtune.StudyState.COMPLETE
    # The original stays LOST; the retry's result is the one recorded.
    assert study.trial(zombie_id) == original
    assert without_checkpoint(study.trial(retry.id)) == without_checkpoint(retry)
    assert [t.id for t in trials if t.state.is_failure] == [zombie_id]
    assert study.trial(zombie_id).state == TrialState.LOST
    assert all("zombie" not in (t.metrics or {}) for t in trials)
    assert all(t.fitness != -1000.0 for t in trials)
    assert all(t.parent_id != zombie_id for t in trials)
    assert not zombie_checkpoint.exists()
    assert all("zombie" not in (t.checkpoint / "who").read_text()
               for t in trials if t.checkpoint is not None)
    for member in range(study.config.population_size):
        latest = max((t for t in trials if t.member == member), key=lambda t: t.number)
        assert latest.state == TrialState.COMPLETE
        assert latest.end_step == study.config.max_steps
    # Both executions happened (the log is independent of the database), once each.
    executions = [e.trial_id for e in read_log(log)]
    assert executions.count(zombie_id) == 1 and executions.count(retry.id) == 1
    assert sorted(executions) == sorted({*executions})
    assert "Traceback" not in run.stderr, run.stderr[-4000:]
