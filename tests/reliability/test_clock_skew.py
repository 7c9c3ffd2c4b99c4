"""Clocks that disagree between machines: a worker whose clock runs minutes ahead is
reaped as soon after its death as any other, and one whose clock runs minutes behind is
never reaped while it works. The worker is a real process (`skewed_worker.py`, its
``time.time`` off by the skew); the reaper is a controller in this process, on the true
clock, as on another machine. SQLite and PostgreSQL."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import pbtune
from pbtune import TrialState
from pbtune.controller import Claimed, Controller
from reliability import skewed_worker, workload

HEARTBEAT_TIMEOUT = 3.0  # a heartbeat every 0.5 s: a busy machine still beats in time
SKEW_S = 300.0
# Before the fix, a worker 300 s ahead was reaped about 300 s after its death. Reaped
# within 60 s is a bound far below that yet far above the few seconds it takes (the
# timeout, a look an interval later, and whatever a loaded machine adds): it tells the
# two apart without timing this test.
REAPED_WITHIN_S = 60.0


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from workload.storage_urls(request.param, tmp_path)  # PostgreSQL: its own schema


def new_study(url: str, tmp_path: Path) -> pbtune.Study:
    return pbtune.create_study(
        f"skew-{uuid.uuid4().hex[:8]}", storage=url, space={"x": pbtune.Float(0.0, 1.0)},
        metric="score", population_size=1, steps_per_trial=1, max_steps=2,
        heartbeat_timeout=HEARTBEAT_TIMEOUT, checkpoint_root=tmp_path / "ckpt", seed=1)


@contextmanager
def skewed_worker_running(study: pbtune.Study, url: str, tmp_path: Path, skew: float
                          ) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A worker process whose clock is off by ``skew`` seconds, holding the study's first
    trial: (the process, the trial's id)."""
    marker = tmp_path / f"claimed{skew:+.0f}"
    env = {**os.environ, skewed_worker.SKEW_ENV: str(skew),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, skewed_worker.__file__, url, study.name, str(marker)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, f"the worker exited ({process.returncode})"
            assert time.monotonic() < deadline, "the worker did not start its trial"
            time.sleep(0.05)
        trial_id, pid = (int(part) for part in marker.read_text().split())
        assert pid == process.pid
        yield process, trial_id
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def reap_until_lost(reaper: Controller, since: float) -> float:
    """Look for silent workers every half interval until one is reaped; return when
    (by this process's monotonic clock) the look that reaped it began."""
    while True:
        looked = time.monotonic()
        if reaper.reap_stale():
            return looked
        assert looked - since < REAPED_WITHIN_S, (
            f"a dead worker was not reaped within {REAPED_WITHIN_S:g} s of its death")
        time.sleep(reaper.config.heartbeat_interval / 2)


def test_a_killed_worker_whose_clock_runs_ahead_is_reaped_after_the_timeout(
    url: str, tmp_path: Path
) -> None:
    study = new_study(url, tmp_path)
    reaper = Controller(study.storage, study.storage.get_study(study.name), study.config)
    with skewed_worker_running(study, url, tmp_path, +SKEW_S) as (process, trial_id):
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed = time.monotonic()
        looked = reap_until_lost(reaper, killed)
    lost = study.storage.get_trial(reaper.study.id, trial_id)
    assert lost.state == TrialState.LOST
    found = re.fullmatch(r"lost: no heartbeat from worker (.+) for (\d+)s", lost.error or "")
    assert found is not None, lost.error
    # The message does not understate the silence: it began before the kill, and the
    # reaping look began this long after the kill (rounded to whole seconds).
    silence = int(found[2])
    assert silence >= max(math.floor(HEARTBEAT_TIMEOUT), math.floor(looked - killed) - 1)
    # ... and the member retries it (a lost trial is not its fault).
    retries = [t for t in study.trials() if t.decision == "retry"]
    assert [(t.member, t.params) for t in retries] == [(lost.member, lost.params)]


def test_a_live_worker_whose_clock_runs_behind_is_not_reaped(url: str, tmp_path: Path) -> None:
    study = new_study(url, tmp_path)
    reaper = Controller(study.storage, study.storage.get_study(study.name), study.config)
    with skewed_worker_running(study, url, tmp_path, -SKEW_S) as (process, trial_id):
        # Looks over two timeouts of this process's clock. By the reaper's clock its
        # heartbeats would be 300 s old on every look: it must not be taken for dead.
        watched = time.monotonic()
        while time.monotonic() - watched < 2 * HEARTBEAT_TIMEOUT:
            assert reaper.reap_stale() == 0
            time.sleep(reaper.config.heartbeat_interval / 2)
        assert process.poll() is None
        held = study.storage.get_trial(reaper.study.id, trial_id)
        assert held.state == TrialState.RUNNING
        # Once it is dead, it is reaped like any other (so the looks above could reap).
        process.send_signal(signal.SIGKILL)
        process.wait()
        reap_until_lost(reaper, time.monotonic())
    assert study.storage.get_trial(reaper.study.id, trial_id).state == TrialState.LOST


def test_trial_timeout_is_timed_by_the_monitors_clock_not_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A trial claimed by a worker whose clock runs 300 s behind has a started_at 300 s in
    # the monitor's past: it must not be killed for that, nor spared for a clock ahead.
    from pbtune.worker._restarts import TrialTimeout

    study = pbtune.create_study(
        "timed", storage=f"sqlite:///{tmp_path / 'study.db'}",
        space={"x": pbtune.Float(0.0, 1.0)}, metric="score", population_size=2,
        steps_per_trial=1, max_steps=2, trial_timeout=60.0, checkpoint_root=tmp_path / "c")
    controller = Controller(study.storage, study.storage.get_study("timed"), study.config)
    real_time = time.time
    for worker, skew in (("behind", -SKEW_S), ("ahead", +SKEW_S)):
        monkeypatch.setattr(time, "time", lambda skew=skew: real_time() + skew)
        assert isinstance(controller.ask(worker), Claimed)
    monkeypatch.undo()
    killed: list[str] = []
    clock = [1000.0]  # the monitor's monotonic clock, moved by hand
    timeout = TrialTimeout(controller, {"behind", "ahead"}, killed.append,
                           monotonic=lambda: clock[0])
    timeout()
    clock[0] += 59.0
    timeout()
    assert killed == []
    clock[0] += 2.0  # 61 s after the monitor first saw them
    timeout()
    assert sorted(killed) == ["ahead", "behind"]
    assert {t.state for t in study.trials() if t.worker} == {TrialState.FAILED}
