"""Torn writes: workers (and once the whole run) SIGKILLed while their training code is
half-way through writing a large checkpoint file. A directory under its final name
``trial-NNNNNN`` is never partial; partial files stay under ``.staging/``, which the end
of the run sweeps; every committed file is exactly what its trial wrote."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from pbtune import Storage, TrialState
from pbtune.worker._process import pid_alive
from reliability import workload
from reliability.workload import BLOB, CheckpointAudit, Run

BLOB_BYTES = 4 * 1024 * 1024
WORKER_KILLS = 3


def _partial_blobs(study_dir: Path) -> dict[int, int]:
    """Trial number -> size of a ``blob.bin`` that is being written in ``.staging``."""
    found: dict[int, int] = {}
    try:
        staged = list((study_dir / ".staging").iterdir())
    except FileNotFoundError:
        return found
    for directory in staged:
        try:
            size = (directory / BLOB).stat().st_size
        except FileNotFoundError:
            continue
        if 0 < size < BLOB_BYTES:
            found[int(directory.name.split("-")[1])] = size
    return found


def test_a_checkpoint_torn_by_a_kill_is_never_committed(tmp_path: Path) -> None:
    name = "torn-writes"
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run = Run(url, name, tmp_path / "ckpt", tmp_path / "log.jsonl", tmp_path / "out.txt",
              options=dict(workers=2, population=2, steps_per_trial=1, max_steps=4,
                           delay="0", blob_bytes=BLOB_BYTES, blob_chunks=32))
    storage = Storage(url)
    torn: dict[int, int] = {}  # trial number -> bytes on disk when its writer died
    run.start()
    try:
        study_id = workload.wait_for(workload.find_study(storage, name), 60, "the study")
        study_dir = workload.study_dir(storage, name)
        audit = CheckpointAudit(storage, study_id, name, study_dir, run.log)

        def kill_a_writer(*, whole_run: bool) -> bool:
            audit.check_final_dirs()
            writing = _partial_blobs(study_dir)
            running = {t.number: t for t in storage.get_trials(study_id, [TrialState.RUNNING])}
            for number in set(writing) - set(torn):
                pid = workload.worker_pid(running[number]) if number in running else None
                if pid is None or not run.owns(pid):
                    continue
                if whole_run:
                    run.kill_tree()
                else:
                    os.kill(pid, signal.SIGKILL)
                    workload.wait_for(lambda: not pid_alive(pid), 10, "the worker to die")  # noqa: B023
                size = _partial_blobs(study_dir).get(number)
                if size is None:
                    return False  # it finished its file just before the kill landed
                torn[number] = size
                # The killed writer left its partial file in staging, not a final dir.
                assert not workload_final(study_dir, number).exists()
                return True
            return False

        for _ in range(WORKER_KILLS):
            workload.wait_for(lambda: kill_a_writer(whole_run=False), 60, "a writer to kill",
                              interval=0.005)
        workload.wait_for(lambda: kill_a_writer(whole_run=True), 60, "a writer to kill",
                          interval=0.005)
        assert (study_dir / ".staging").is_dir()
        run.start()  # the same command again
        deadline = time.time() + 120
        while run.process is not None and run.process.poll() is None:
            assert time.time() < deadline, run.tail()
            audit.poll()
            time.sleep(0.02)
        assert run.wait(10) == 0, run.tail()
        audit.poll()
        audit.check_final_dirs()
    finally:
        run.stop()

    assert len(torn) == WORKER_KILLS + 1
    events = workload.read_log(run.log)
    assert workload.study_problems(storage, name, events) == []
    assert workload.log_problems(events, name) == {
        "double_claims": [], "completed_twice": [], "bad_parents": []}
    assert audit.problems == []
    trials = {t.number: t for t in storage.get_trials(study_id)}
    for number in torn:
        assert trials[number].state == TrialState.LOST
        assert (trials[number].error or "").startswith("lost")
        assert not workload_final(study_dir, number).exists()
    # The end of the run swept the staging area with the torn files in it.
    assert not (study_dir / ".staging").exists()
    kept = [t for t in trials.values() if t.checkpoint is not None]
    assert kept
    for trial in kept:
        blob = trial.checkpoint / BLOB  # type: ignore[operator]
        assert blob.stat().st_size == BLOB_BYTES
        assert workload.blob_sha256(name, trial.number, BLOB_BYTES) == workload.file_sha256(blob)
    storage.dispose()


def workload_final(study_dir: Path, number: int) -> Path:
    return study_dir / f"trial-{number:06d}"
