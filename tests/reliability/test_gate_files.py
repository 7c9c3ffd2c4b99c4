"""The SQLite write gate's lock file: nothing is left behind once a study's processes
have closed their storages, and writers still take turns one at a time while gates close
(and remove the file) and open again around them."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

import pbtune
from pbtune.storages._gate import WriteGate

PROCESSES = 4
TURNS = 300


def train(trial: pbtune.Trial) -> dict[str, float]:
    (trial.checkpoint_dir / "w.txt").write_text("w")
    return {"loss": float(trial.params["lr"])}


def test_a_study_leaves_no_lock_file_behind(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    temp = tmp_path / "tmp"  # this test's own temporary folder, its workers' too
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    folder = tmp_path / "study"
    folder.mkdir()
    storage = pbtune.Storage(f"sqlite:///{folder / 'study.db'}")
    study = pbtune.create_study(
        name="gate", storage=storage, metric="loss", mode="min",
        space={"lr": pbtune.Float(1e-3, 0.5, log=True)}, population_size=2,
        steps_per_trial=1, max_steps=3, checkpoint_root=str(tmp_path / "ckpt"))
    study.optimize(train, workers=2, show_progress=False)  # worker processes write too
    storage.dispose()
    assert [p.name for p in folder.iterdir()] == ["study.db"]
    assert [str(p) for p in temp.rglob("*.lock")] == []  # nor in the temporary folder


def _writer(database: str, inside: str, barrier: Barrier) -> None:
    """Take the gate ``TURNS`` times, each time through a gate opened anew and closed
    after (closing removes the file when no one holds it); inside, prove to be alone by
    making ``inside`` exclusively."""
    barrier.wait(60)
    for _ in range(TURNS):
        gate = WriteGate(database)
        with gate.held():
            fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if not alone
            os.close(fd)
            os.unlink(inside)
        gate.close()


def test_writers_take_turns_while_gates_remove_and_make_the_lock_file(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    database, inside = str(tmp_path / "study.db"), str(tmp_path / "inside")
    team = [context.Process(target=_writer, args=(database, inside, barrier))
            for _ in range(PROCESSES)]
    for process in team:
        process.start()
    for process in team:
        process.join(timeout=120)
    assert [process.exitcode for process in team] == [0] * PROCESSES
    assert list(tmp_path.iterdir()) == []
