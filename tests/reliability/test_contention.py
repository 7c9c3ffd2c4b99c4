"""Contention: 16 worker processes on one study of near-zero-work trials, on SQLite and
PostgreSQL. Nothing is claimed twice, no result is lost, and no locking or serialization
error reaches the user.

This is the fast variant; ``benchmarks/contention.py`` runs the same workload for 30 s or
more and prints its figures.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import pytest

import pbtune
from conftest import postgres_url
from reliability.contention_workload import LOG_ENV, TOGETHER_ENV, audit, start_run

WORKERS = 16


def storage_url(backend: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}" if backend == "sqlite" else postgres_url()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sixteen_workers_claim_each_trial_once_and_lose_nothing(
    backend: str, tmp_path: Path
) -> None:
    url = storage_url(backend, tmp_path)
    name = f"contention-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "claims.log"
    # However slowly the 16 processes start, half of them hold a trial at once before any
    # trial ends (without this, the first few could run every trial on a busy machine).
    together = tmp_path / "together"
    together.mkdir()
    env = {LOG_ENV: str(log), TOGETHER_ENV: f"{together}:{WORKERS // 2}"}
    run = start_run(tmp_path, url, name, env=env, workers=WORKERS,
                    population=2 * WORKERS, steps_per_trial=1, max_steps=6)
    try:
        code = run.wait(timeout=120)
    finally:
        run.kill()
    assert code == 0, f"the run ended with {code}:\n{run.stderr[-4000:]}"
    assert "seconds" in json.loads(run.stdout_path.read_text())

    study = pbtune.load_study(name, storage=url)
    checked = audit(study, log, run.stderr)
    assert checked.problems == [], "\n".join(checked.problems[:40])
    assert checked.failed == 0 and checked.double_claims == [] and checked.errors == []
    # The workers really ran at once: many distinct processes claimed trials.
    claimers = {t.worker for t in study.trials()}
    assert len(claimers) >= WORKERS // 2, claimers
    assert checked.complete == checked.executions == checked.trials >= 2 * (2 * WORKERS)


def posix_locks_held_on(path: Path) -> list[str]:
    """This process's POSIX locks on ``path``, as /proc/locks lists them."""
    inode = os.stat(path).st_ino
    held = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "POSIX" not in fields:
            continue
        at = fields.index("POSIX")
        pid, device = int(fields[at + 3]), fields[at + 4]
        if pid == os.getpid() and int(device.rsplit(":", 1)[1]) == inode:
            held.append(" ".join(fields[at:]))
    return held


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/locks")
def test_a_second_handle_on_an_sqlite_file_keeps_the_locks_of_the_first(tmp_path: Path) -> None:
    """Closing any descriptor of a file drops all of the process's POSIX locks on it, and
    SQLite's shared lock is what keeps other processes from checkpointing under a reader.
    Opening another `Storage` on the file (``load_study`` while a study runs) keeps it."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = pbtune.Storage(url)
    held = posix_locks_held_on(tmp_path / "study.db")
    assert held, "an open WAL database holds a shared lock"
    second = pbtune.Storage(url)
    assert posix_locks_held_on(tmp_path / "study.db") == held
    assert first.list_studies() == second.list_studies() == []
