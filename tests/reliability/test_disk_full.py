"""A disk that fills after the first trials, and the neighbours of that fault.

An environmental failure (no space left, a lost mount) fails every member's trials at
once. pbtune must not use up every member's retries within a second (each retry waits
its backoff, stored with the queued trial so that every worker respects it), the study
must end FAILED with a clear error, and once the cause is gone, running it again must
finish it with nothing lost: every member reaches ``max_steps`` from its last good
checkpoint, and the trials recorded before are unchanged. A training function that is
broken for good must not loop: each new run gives it ``max_retries`` fresh tries per
member, then fails again.

Spacing is checked on the timestamps and ``not_before`` rows the storage recorded, never
on how long the test took.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import select

import pbtune
from pbtune import FrozenTrial, StudyState, TrialState
from pbtune.controller import Claimed, Controller, StudyConfig
from pbtune.controller._config import retry_backoff
from pbtune.controller._members import after_failure
from pbtune.storages import SYSTEM_CLOCK, MemberState, VirtualClock
from pbtune.storages._schema import trials as trials_table

STEPS, MAX_STEPS, FILLS_AT = 2, 8, 4  # the disk fills once a trial has trained to step 4
RETRIES, DELAY = 2, 0.05
Train = Callable[[pbtune.Trial], dict[str, float]]


def _train(full: Callable[[pbtune.Trial], bool], fill: Callable[[], None]) -> Train:
    """A training function that writes its checkpoint, raises ENOSPC while ``full``, and
    calls ``fill`` once it has trained to `FILLS_AT` (the disk fills after it)."""

    def train(trial: pbtune.Trial) -> dict[str, float]:
        if full(trial):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(trial.checkpoint_dir))
        value = 0.0
        if trial.parent_checkpoint is not None:
            value = float((trial.parent_checkpoint / "state").read_text())
        value += trial.params["x"] * (trial.end_step - trial.start_step)
        (trial.checkpoint_dir / "state").write_text(repr(value))
        (trial.checkpoint_dir / "weights.bin").write_bytes(b"w" * 20_000)
        if trial.end_step >= FILLS_AT:
            fill()
        return {"score": value}

    return train


def _flag_train(flag: Path) -> Train:
    """`_train` whose disk is "full" while ``flag`` exists; it is made once, after step 4
    (a disk freed stays free)."""
    once = flag.with_name(flag.name + ".filled")

    def fill() -> None:
        if not once.exists():
            once.touch()
            flag.touch()

    return _train(lambda trial: flag.exists(), fill)


def _create(tmp_path: Path, root: Path, name: str = "disk", retry_delay: float = DELAY
            ) -> pbtune.Study:
    return pbtune.create_study(
        name, storage=f"sqlite:///{tmp_path / 'pbtune.db'}",
        space={"x": pbtune.Float(0.1, 1.0)}, metric="score", population_size=3,
        steps_per_trial=STEPS, max_steps=MAX_STEPS, max_retries=RETRIES,
        retry_delay=retry_delay, checkpoint_root=root)


def _optimize(study: pbtune.Study, train: Train) -> None:
    study.optimize(train, workers=2, backend="thread", show_progress=False)


def _not_before(study: pbtune.Study) -> dict[int, float | None]:
    """Each trial's stored ``not_before`` (the storage's own row, read as it is)."""
    rows = study.storage._read(lambda c: c.execute(
        select(trials_table.c.number, trials_table.c.not_before)
        .where(trials_table.c.study_id == study.id)).all())
    return {int(number): value for number, value in rows}


def assert_retries_spaced(study: pbtune.Study) -> int:
    """Each retry after a counted failure waited its backoff: its ``not_before`` is the
    failure's time plus `retry_backoff` of the member's failures in a row, and it
    started no earlier. Returns how many retries were checked."""
    config = StudyConfig.from_dict(study.storage.get_study_by_id(study.id).config)
    not_before = _not_before(study)
    checked = 0
    for member in range(config.population_size):
        own = sorted((t for t in study.trials() if t.member == member), key=lambda t: t.id)
        in_a_row = 0
        for failed, retry in pairwise(own):
            if failed.state == TrialState.COMPLETE:
                in_a_row = 0
                continue
            if failed.state != TrialState.FAILED or retry.decision != "retry":
                continue
            in_a_row += 1
            if not_before[retry.id] is None:  # given back by a new run: at once
                in_a_row = 0
                continue
            assert failed.finished_at is not None
            wait = retry_backoff(config, in_a_row)
            assert not_before[retry.id] == pytest.approx(failed.finished_at + wait)
            if retry.started_at is not None:
                assert retry.started_at >= failed.finished_at + wait
            checked += 1
    return checked


def _complete(study: pbtune.Study) -> list[FrozenTrial]:
    return study.trials([TrialState.COMPLETE])


def assert_finished_with_nothing_lost(study: pbtune.Study, before: list[FrozenTrial]
                                      ) -> None:
    """COMPLETE, every member at the budget, and the earlier COMPLETE trials unchanged."""
    assert study.state == StudyState.COMPLETE
    members = study.storage.get_members(study.id)
    assert {m.state for m in members} == {MemberState.DONE}
    population = study.storage.get_population(study.id)
    assert sorted(t.end_step for t in population) == [MAX_STEPS] * len(members)
    # Unchanged but for checkpoints collected since (garbage collection, as always).
    after = {t.id: replace(t, checkpoint=None) for t in _complete(study)}
    assert [after[t.id] for t in before] == [replace(t, checkpoint=None) for t in before]


def test_a_full_disk_spaces_the_retries_and_the_study_resumes_once_freed(
    tmp_path: Path,
) -> None:
    flag = tmp_path / "disk-full"
    study = _create(tmp_path, tmp_path / "checkpoints")
    with pytest.raises(pbtune.StudyFailedError, match="No space left on device"):
        _optimize(study, _flag_train(flag))
    record = study.storage.get_study_by_id(study.id)
    assert record.state == StudyState.FAILED
    assert "every member failed more than max_retries times" in (record.error or "")
    assert {m.state for m in study.storage.get_members(study.id)} == {MemberState.FAILED}
    before = _complete(study)
    assert before and max(t.end_step for t in before) >= FILLS_AT  # the first trials ran
    assert assert_retries_spaced(study) == 3 * RETRIES  # every retry of every member

    flag.unlink()  # space freed
    resumed = pbtune.load_study("disk", storage=study.storage)
    _optimize(resumed, _flag_train(flag))
    assert_finished_with_nothing_lost(resumed, before)
    assert_retries_spaced(resumed)


def test_a_cause_not_fixed_fails_again_after_max_retries_fresh_tries(tmp_path: Path) -> None:
    flag = tmp_path / "disk-full"
    study = _create(tmp_path, tmp_path / "checkpoints")
    train = _flag_train(flag)
    with pytest.raises(pbtune.StudyFailedError):
        _optimize(study, train)
    first_error = study.storage.get_study_by_id(study.id).error
    failed_before = len(study.trials([TrialState.FAILED]))
    for _ in range(2):  # run again without freeing the disk: bounded, never a loop
        with pytest.raises(pbtune.StudyFailedError, match="No space left on device"):
            _optimize(study, train)
        assert study.state == StudyState.FAILED
        failed_now = len(study.trials([TrialState.FAILED]))
        assert failed_now - failed_before == 3 * (RETRIES + 1)
        failed_before = failed_now
    assert study.storage.get_study_by_id(study.id).error == first_error
    flag.unlink()
    before = _complete(study)
    _optimize(study, train)
    assert_finished_with_nothing_lost(study, before)


def test_a_complete_study_with_members_that_gave_up_runs_them_again_when_asked(
        tmp_path: Path) -> None:
    # Member 0's trials land on a full disk; the others finish: the study is COMPLETE,
    # one member short. Running it again runs nothing (as for any COMPLETE study), and
    # with retry_failed=True, once the disk is freed, member 0 trains on to max_steps.
    flag = tmp_path / "disk-full"
    train = _train(lambda trial: trial.member == 0 and flag.exists(), lambda: None)
    study = _create(tmp_path, tmp_path / "checkpoints")
    flag.touch()
    _optimize(study, train)
    assert study.state == StudyState.COMPLETE
    states = {m.member: m.state for m in study.storage.get_members(study.id)}
    assert states == {0: MemberState.FAILED, 1: MemberState.DONE, 2: MemberState.DONE}
    assert assert_retries_spaced(study) == RETRIES
    flag.unlink()
    trials_before = study.trials()
    _optimize(study, train)
    assert study.trials() == trials_before

    study.optimize(train, workers=2, backend="thread", show_progress=False,
                   retry_failed=True)
    assert study.state == StudyState.COMPLETE
    states = {m.member: m.state for m in study.storage.get_members(study.id)}
    assert states == {0: MemberState.DONE, 1: MemberState.DONE, 2: MemberState.DONE}
    member_0 = [t for t in study.trials() if t.member == 0 and t.state == TrialState.COMPLETE]
    assert max(t.end_step for t in member_0) == MAX_STEPS
    before = {t.id: t for t in trials_before if t.state == TrialState.COMPLETE}
    after = {t.id: t for t in study.trials()}
    assert all(after[i].metrics == t.metrics for i, t in before.items())  # nothing lost


def test_a_retry_is_claimed_by_no_worker_before_its_backoff(tmp_path: Path) -> None:
    """The backoff is in the database: ``ask`` of any worker waits, and the claim at the
    stored time, not a second before, gets the retry."""
    study = _create(tmp_path, tmp_path / "checkpoints", retry_delay=600.0)
    record = study.storage.get_study_by_id(study.id)
    controller = Controller(study.storage, record, StudyConfig.from_dict(record.config))
    first = controller.ask("w0")
    assert isinstance(first, Claimed)
    assert controller.tell_failure(first, OSError(errno.EIO, "I/O error"))
    for other in ("w1", "w2"):  # the other two first trials
        claimed = controller.ask(other)
        assert isinstance(claimed, Claimed) and claimed.trial.member != first.trial.member
        assert controller.tell(claimed, {"score": 1.0}, None) is not False
    not_before = _not_before(study)
    queued_retry = [t for t in study.trials([TrialState.QUEUED]) if t.decision == "retry"]
    assert len(queued_retry) == 1
    [pending] = queued_retry
    failed = study.trials([TrialState.FAILED])[0]
    assert failed.finished_at is not None
    at = not_before[pending.id]
    assert at == pytest.approx(failed.finished_at + 600.0)

    def claim_at(now: float) -> int | None:
        study.storage.clock = VirtualClock(now)  # the backoff is judged at ``now``
        try:
            held = study.storage.write(
                study.id, lambda tx: tx.claim_next("w9", uuid.uuid4().hex, now))
        finally:
            study.storage.clock = SYSTEM_CLOCK
        return held.trial.id if held is not None else None

    assert at is not None
    while (taken := claim_at(at - 1.0)) is not None:  # the others' next trials
        assert taken != pending.id
    assert claim_at(at) == pending.id


# -- a real filesystem that fills (a tmpfs; needs the right to mount) ---------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at ``tmp_path / "small"``; skipped where mounting is not permitted."""
    mount = shutil.which("mount")
    where = tmp_path / "small"
    where.mkdir()
    if mount is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> None:
    """Take the rest of ``disk`` with one file (as another program would)."""
    with open(disk / "filler", "ab") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC


def test_a_real_disk_that_fills_after_the_first_trials(tmp_path: Path, small_disk: Path
                                                       ) -> None:
    train = _train(lambda trial: False, lambda: _fill(small_disk))
    study = _create(tmp_path, small_disk / "checkpoints")
    with pytest.raises(pbtune.StudyFailedError, match="No space left on device"):
        _optimize(study, train)
    assert study.state == StudyState.FAILED
    assert assert_retries_spaced(study) == 3 * RETRIES
    before = _complete(study)
    (small_disk / "filler").unlink()  # space freed
    resumed = pbtune.load_study("disk", storage=study.storage)
    _optimize(resumed, _train(lambda trial: False, lambda: None))
    assert_finished_with_nothing_lost(resumed, before)


def test_a_backoff_written_by_a_clock_that_runs_ahead_waits_only_the_backoff(
        tmp_path: Path) -> None:
    """The worker that failed has a clock 300 s ahead: its retry's wait is kept on the
    database's clock, so the retry waits its backoff, not the backoff plus the skew."""
    study = _create(tmp_path, tmp_path / "checkpoints", retry_delay=60.0)
    record = study.storage.get_study_by_id(study.id)
    controller = Controller(study.storage, record, StudyConfig.from_dict(record.config))
    first = controller.ask("w0")
    assert isinstance(first, Claimed)
    ahead = time.time() + 300.0
    study.storage.write(study.id, lambda tx: after_failure(
        tx, controller.config, replace(first.trial, state=TrialState.FAILED), ahead))
    [retry] = [t for t in study.trials([TrialState.QUEUED]) if t.decision == "retry"]
    waits_until = _not_before(study)[retry.id]
    assert waits_until is not None
    # The database's clock, here this machine's: 60 s from the failure (not 360 s).
    assert 0.0 < waits_until - time.time() <= 60.0
