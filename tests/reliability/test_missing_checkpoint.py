"""A checkpoint deleted from outside pbtune (a disk cleaned by hand, a bucket's lifecycle
rule): it is recorded as gone the first time a child finds it missing, the child's retry
warm-starts from another parent, nothing copies it again, and no member is lost for it.

The study runs in worker processes on SQLite; the checkpoints are deleted between two
runs (the budget raised in between), so which ones are gone does not depend on how the
processes were scheduled.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pbtune
from pbtune import Float, SearchSpace, TrialState
from pbtune.storages import MemberState

WORKLOAD = Path(__file__).with_name("missing_checkpoint_workload.py")
SPACE = SearchSpace({"x": Float(0.0, 1.0)})


def test_checkpoints_deleted_from_outside_cost_no_member(tmp_path: Path) -> None:
    study = pbtune.create_study(
        "deleted", storage=f"sqlite:///{tmp_path / 'db.sqlite'}", space=SPACE,
        metric="score", mode="max", population_size=4, steps_per_trial=1, max_steps=3,
        max_retries=1, checkpoint_root=tmp_path / "ckpt", seed=3,
    )
    study.optimize(f"{WORKLOAD}:train", workers=2, show_progress=False)
    study.extend(6)  # each member's next trial is queued now, with its parent
    trials = {t.id: t for t in study.trials()}
    queued = sorted((t for t in trials.values() if t.state == TrialState.QUEUED),
                    key=lambda t: t.member)
    # The parents two of them need (a member's own checkpoint, or the one it copies).
    parents = list(dict.fromkeys(t.parent_id for t in queued if t.parent_id is not None))
    deleted = {number: trials[number].checkpoint for number in parents[:2]}
    assert len(deleted) == 2
    for path in deleted.values():
        assert isinstance(path, Path) and path.is_dir()
        shutil.rmtree(path)

    study.optimize(f"{WORKLOAD}:train", workers=2, show_progress=False)

    trials = {t.id: t for t in study.trials()}
    assert study.state == pbtune.StudyState.COMPLETE
    assert all(m.state == MemberState.DONE
               for m in study.storage.get_members(study.id))
    assert sorted(t.end_step for t in _latest(study).values()) == [6, 6, 6, 6]
    for number, path in deleted.items():
        assert trials[number].checkpoint is None, number
        assert trials[number].checkpoint_gone == path
        children = [t for t in trials.values() if t.parent_id == number]
        # Only trials queued before it was found gone name it as parent, and each failed
        # with one clear line; the first of them recorded it as gone, once.
        assert all(t.state == TrialState.FAILED for t in children)
        errors = [str(t.error).strip() for t in children]
        assert all(len(e.splitlines()) == 1 and "CheckpointGoneError" in e and
                   f"trial {number} ({path})" in e for e in errors)
        [first] = [t for t in children if "pbtune recorded it as gone" in str(t.error)]
        # Its record came before the failure that made the retry: no trial made since
        # then warm-starts from it.
        retry = min(t.id for t in trials.values()
                    if t.member == first.member and t.id > first.id)
        assert all(t.parent_id != number for t in trials.values() if t.id >= retry)


def _latest(study: pbtune.Study) -> dict[int, pbtune.FrozenTrial]:
    latest: dict[int, pbtune.FrozenTrial] = {}
    for trial in study.trials():
        if trial.state == TrialState.COMPLETE:
            latest[trial.member] = trial
    return latest

