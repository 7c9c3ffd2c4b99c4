"""The controller driven directly (ask / tell / failures / reaping / garbage collection) on
the in-memory storage, without processes."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from pbtune import (
    PB2,
    CheckpointGoneError,
    Choice,
    ConfigError,
    Float,
    Int,
    Perturb,
    SearchSpace,
    SearchSpaceError,
    Storage,
    StudyState,
    Tournament,
    TrialFailedError,
    TrialState,
    Truncation,
    create_study,
)
from pbtune.checkpoints import _local as checkpoints
from pbtune.checkpoints import study_dir_name
from pbtune.controller import (
    DONE,
    WAIT,
    Claimed,
    Controller,
    StudyConfig,
    check_metrics,
    initial_trials,
)
from pbtune.storages import SYSTEM_CLOCK, MemberState, VirtualClock
from pbtune.storages._clock import DatabaseNow
from pbtune.strategies import ExploreStrategy, History, Mode
from pbtune.trial import FrozenTrial

SPACE = SearchSpace({"lr": Float(1e-4, 1.0, log=True), "units": Int(8, 512),
                     "act": Choice(["relu", "tanh"])})
# Explore that is easy to predict: every float and int is doubled (then clipped).
DOUBLE = Perturb(factors=(2.0,), resample_probability=0.0)


def make_controller(tmp_path: Path, **settings: Any) -> Controller:
    settings.setdefault("space", SPACE)
    settings.setdefault("metric", "acc")
    settings.setdefault("mode", "max")
    settings.setdefault("population_size", 2)
    settings.setdefault("steps_per_trial", 10)
    settings.setdefault("max_steps", 100)
    settings.setdefault("explore", DOUBLE)
    settings.setdefault("checkpoint_root", str(tmp_path / "ckpt"))
    # Retries go at once here: their backoff is tested in tests/reliability/test_disk_full.py.
    settings.setdefault("retry_delay", 0)
    config = StudyConfig(**settings)
    storage = Storage(None)
    record = storage.create_study(
        "study", config.to_dict(), study_dir_name("study", "salt"),
        initial_trials(config), time.time(),
    )
    return Controller(storage, record, config)


def claim(controller: Controller, worker: str = "w") -> Claimed:
    asked = controller.ask(worker)
    assert isinstance(asked, Claimed), asked
    return asked


def study_dir(controller: Controller) -> Path:
    return Path(controller.config.checkpoint_root) / controller.study.checkpoint_dir


def write_checkpoint(controller: Controller, claimed: Claimed) -> Path:
    path = checkpoints.final_dir(study_dir(controller), claimed.trial.number)
    path.mkdir(parents=True)
    (path / "weights.txt").write_text(str(claimed.trial.id))
    return path


def stored(controller: Controller, trial_id: int) -> FrozenTrial:
    """The study's trial ``trial_id`` as stored now."""
    return controller.storage.get_trial(controller.study.id, trial_id)


def complete(controller: Controller, claimed: Claimed, fitness: float) -> FrozenTrial:
    path = write_checkpoint(controller, claimed)
    assert controller.tell(claimed, {"acc": fitness}, path)
    return stored(controller, claimed.trial.id)


def run(controller: Controller, fitness: float, worker: str = "w") -> FrozenTrial:
    """Claim the next trial and complete it with ``fitness``."""
    return complete(controller, claim(controller, worker), fitness)


def trials(controller: Controller) -> list[FrozenTrial]:
    return controller.storage.get_trials(controller.study.id)


def queued(controller: Controller) -> list[FrozenTrial]:
    return controller.storage.get_trials(controller.study.id, [TrialState.QUEUED])


def children_of(controller: Controller, trial: FrozenTrial) -> list[FrozenTrial]:
    return [t for t in trials(controller) if t.parent_id == trial.id]


def stored_claim(controller: Controller, trial_id: int) -> str | None:
    """The claim a trial was last held under, as stored (None once revoked)."""
    found = controller.storage.write(controller.study.id,
                                     lambda tx: tx.trial_with_claim(trial_id))
    assert found is not None
    return found[1]


def study_state(controller: Controller) -> StudyState:
    return controller.storage.get_study_by_id(controller.study.id).state


# -- initial trials ------------------------------------------------------------------------------


def test_initial_trials_are_seeded_and_inside_the_space() -> None:
    config = StudyConfig(space=SPACE, metric="acc", mode="max", population_size=5,
                         steps_per_trial=30, max_steps=20 * 30, seed=3)
    first = initial_trials(config)
    assert [t.member for t in first] == [0, 1, 2, 3, 4]
    assert all((t.start_step, t.end_step, t.generation, t.parent_id, t.decision)
               == (0, 30, 0, None, "initial") for t in first)
    assert all(SPACE.validate(t.params) == t.params for t in first)
    assert len({t.params["lr"] for t in first}) == 5
    assert initial_trials(config) == first
    other = StudyConfig(space=SPACE, metric="acc", mode="max", population_size=5,
                        steps_per_trial=30, max_steps=600, seed=4)
    assert [t.params for t in initial_trials(other)] != [t.params for t in first]


def test_create_study_drives_a_controller(tmp_path: Path) -> None:
    study = create_study("direct", space=SPACE, storage=None, metric="acc", population_size=2,
                         steps_per_trial=5, max_steps=10, checkpoint_root=tmp_path)
    controller = Controller(study.storage, study.storage.get_study("direct"), study.config)
    for fitness in (1.0, 2.0, 3.0, 4.0):
        run(controller, fitness)
    kept = [t.checkpoint for t in study.trials() if t.checkpoint is not None]
    assert kept and all(Path(c).parent == study.checkpoint_dir for c in kept)
    assert study.state == StudyState.COMPLETE
    assert study.best_trial.fitness == 4.0


# -- ask / tell ----------------------------------------------------------------------------------


def test_tell_enqueues_the_members_next_trial(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1)
    first = run(controller, 0.5)
    assert first.state == TrialState.COMPLETE
    assert first.metrics == {"acc": 0.5} and first.fitness == 0.5
    assert first.checkpoint == checkpoints.final_dir(study_dir(controller), first.number)
    assert first.finished_at is not None
    [nxt] = queued(controller)
    assert nxt.member == first.member
    assert nxt.parent_id == first.id
    assert (nxt.start_step, nxt.end_step) == (first.end_step, first.end_step + 10)
    assert nxt.generation == first.generation + 1
    assert nxt.params == first.params
    assert nxt.decision == "continue"
    [member] = controller.storage.get_members(controller.study.id)
    assert (member.latest_complete_id, member.failures, member.state) == (
        first.id, 0, MemberState.ACTIVE)
    assert controller.parent_checkpoint(Claimed(nxt, "token")) == first.checkpoint
    assert controller.parent_checkpoint(Claimed(first, "token")) is None


def test_ask_takes_the_member_furthest_behind(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=3)
    run(controller, 1.0)  # member 0 finishes 0 -> 10 and is queued for 10 -> 20
    second, third = claim(controller), claim(controller)
    assert {second.trial.member, third.trial.member} == {1, 2}
    assert second.trial.end_step == third.trial.end_step == 10
    assert claim(controller).trial.end_step == 20


def test_ask_waits_while_trials_run_and_is_done_at_the_end(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1, max_steps=25)
    running = claim(controller)
    assert controller.ask("other") is WAIT
    complete(controller, running, 1.0)
    run(controller, 2.0)
    last = run(controller, 3.0)
    assert (last.start_step, last.end_step) == (20, 25)  # the last segment is cut short
    assert controller.ask("w") is DONE
    assert study_state(controller) == StudyState.COMPLETE
    assert [m.state for m in controller.storage.get_members(controller.study.id)] == [
        MemberState.DONE]


def test_study_completes_only_when_nothing_is_queued_or_running(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2, max_steps=10)
    a, b = claim(controller), claim(controller)
    complete(controller, a, 1.0)
    assert study_state(controller) == StudyState.RUNNING  # b still runs
    complete(controller, b, 2.0)
    assert study_state(controller) == StudyState.COMPLETE
    assert controller.ask("w") is DONE


def test_exploit_copies_the_opponent_and_explores_its_params(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2, exploit=Tournament())
    a, b = claim(controller), claim(controller)
    winner = complete(controller, a, 1.0)  # alone in the population: continues
    assert children_of(controller, winner)[0].decision == "continue"
    loser = complete(controller, b, 0.0)  # meets member 0 and loses
    [child] = [t for t in queued(controller) if t.member == loser.member]
    assert child.decision == "exploit"
    assert child.parent_id == winner.id
    assert child.generation == winner.generation + 1
    assert (child.start_step, child.end_step) == (winner.end_step, winner.end_step + 10)
    assert child.params["lr"] == min(winner.params["lr"] * 2.0, 1.0)
    assert child.params["units"] == min(winner.params["units"] * 2, 512)
    assert child.params["act"] in ("relu", "tanh")
    assert SPACE.validate(child.params) == child.params
    assert controller.parent_checkpoint(Claimed(child, "token")) == winner.checkpoint


def test_an_exploit_of_a_parent_without_a_checkpoint_continues_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    controller = make_controller(tmp_path, population_size=2, exploit=Tournament())
    a, b = claim(controller), claim(controller)
    winner = complete(controller, a, 1.0)
    controller.storage.write(controller.study.id,
                             lambda tx: tx.forget_checkpoints([winner.id]))
    with caplog.at_level("WARNING", logger="pbtune.controller"):
        loser = complete(controller, b, 0.0)  # would copy member 0, which has no checkpoint
    [child] = [t for t in queued(controller) if t.member == loser.member]
    assert (child.decision, child.parent_id, child.params) == ("continue", loser.id,
                                                                 loser.params)
    assert f"the trial it would copy ({winner.id}) has no checkpoint" in caplog.text


def test_on_a_plateau_a_member_explores_from_its_own_checkpoint(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2, exploit=Tournament())
    a, b = claim(controller), claim(controller)
    first = complete(controller, a, 0.0)  # alone in the population: continues
    assert children_of(controller, first)[0].decision == "continue"
    tied = complete(controller, b, 0.0)  # both at 0: nobody is fitter
    [child] = [t for t in queued(controller) if t.member == tied.member]
    assert child.decision == "explore"
    assert child.parent_id == tied.id and child.start_step == tied.end_step
    assert child.params["lr"] == min(tied.params["lr"] * 2.0, 1.0)
    assert controller.parent_checkpoint(Claimed(child, "token")) == tied.checkpoint


def test_a_member_without_a_checkpoint_continues_instead_of_exploring(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    controller = make_controller(tmp_path, population_size=2, exploit=Tournament())
    a, b = claim(controller), claim(controller)
    complete(controller, a, 0.0)
    with caplog.at_level("WARNING", logger="pbtune.controller"):
        assert controller.tell(b, {"acc": 0.0}, None)  # tied, and no checkpoint to explore
    [child] = [t for t in queued(controller) if t.member == b.trial.member]
    assert (child.decision, child.parent_id, child.params) == ("continue", b.trial.id,
                                                                 b.trial.params)
    assert "its own trial has no checkpoint to explore" in caplog.text


def test_exploit_warm_starts_at_the_parents_step(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2)
    slow = claim(controller)  # member 0, steps 0 -> 10, still running below
    ahead = run(controller, 1.0)  # member 1, 0 -> 10
    ahead = run(controller, 2.0)  # member 1 again, 10 -> 20
    assert (ahead.member, ahead.end_step) == (1, 20)
    behind = complete(controller, slow, 0.0)
    [child] = [t for t in queued(controller) if t.member == behind.member]
    assert (child.decision, child.parent_id) == ("exploit", ahead.id)
    # it continues from the copied checkpoint's step, not its own
    assert (child.start_step, child.end_step) == (20, 30)
    assert child.generation == ahead.generation + 1


def test_truncation_exploit_through_the_controller(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=4, exploit=Truncation(0.25))
    claimed = {c.trial.member: c for c in (claim(controller) for _ in range(4))}
    done = {m: complete(controller, claimed[m], float(m)) for m in (3, 2, 1, 0)}
    nxt = {t.member: t for t in queued(controller)}
    # member 3 finished first, alone, and continues; each later one finished as the
    # bottom quantile (of 2, 3, then 4 members) and copies member 3
    assert (nxt[3].decision, nxt[3].parent_id) == ("continue", done[3].id)
    for member in (0, 1, 2):
        assert (nxt[member].decision, nxt[member].parent_id) == ("exploit", done[3].id)
        assert nxt[member].params["units"] == min(done[3].params["units"] * 2, 512)


def test_decisions_are_the_same_for_the_same_seed_and_order(tmp_path: Path) -> None:
    def play(root: Path, seed: int) -> list[tuple[Any, ...]]:
        controller = make_controller(root, population_size=4, seed=seed, explore=Perturb())
        for i in range(16):
            run(controller, float((i * 7) % 5))
        return [(t.member, t.parent_id, t.params, t.decision, t.start_step)
                for t in trials(controller)]

    assert play(tmp_path / "a", 1) == play(tmp_path / "b", 1)
    assert play(tmp_path / "c", 1) != play(tmp_path / "d", 2)


class Recording(ExploreStrategy):
    """Doubles like DOUBLE, and keeps the history each decision was handed."""

    history_size = 3

    def __init__(self) -> None:
        self.seen: list[tuple[int, History]] = []

    def explore(self, params: Any, space: SearchSpace, rng: np.random.Generator
                ) -> dict[str, Any]:
        return DOUBLE.explore(params, space, rng)

    def explore_from(self, parent: FrozenTrial, space: SearchSpace, rng: np.random.Generator,
                     *, history: History, mode: Mode) -> dict[str, Any]:
        self.seen.append((parent.member, history))
        return self.explore(parent.params, space, rng)

    def to_dict(self) -> dict[str, Any]:
        return {"type": f"{__name__}:Recording"}


def test_a_strategy_with_a_history_sees_the_newest_results(tmp_path: Path) -> None:
    recording = Recording()
    controller = make_controller(tmp_path, population_size=3, explore=recording,
                                 exploit=Truncation(fraction=0.34))
    finished = [run(controller, float(i % 3)) for i in range(9)]
    assert recording.seen, "the weakest member copied at least once"
    for _, history in recording.seen:
        ids = [o.trial_id for o in history.observations]
        assert len(ids) == 3 and ids == sorted(ids)
        assert set(ids) <= {t.id for t in finished}
        for o in history.observations:
            trial = stored(controller, o.trial_id)
            parent = (None if o.parent_id is None
                      else stored(controller, o.parent_id))
            assert (o.member, o.params, o.start_step, o.end_step, o.end_fitness) == (
                trial.member, trial.params, trial.start_step, trial.end_step, trial.fitness)
            assert o.start_fitness == (parent.fitness if parent else None)
        # The member deciding has no trial pending; each of the two others has one.
        assert len({p.member for p in history.pending}) == len(history.pending) == 2


def test_strategies_without_a_history_read_none(tmp_path: Path) -> None:
    controller = make_controller(tmp_path)
    reads: list[str] = []
    original = controller.storage.write

    def spy(study_id: int, work: Any, **kwargs: Any) -> Any:
        def watched(tx: Any) -> Any:
            for name in ("recent_complete", "active_with_start"):
                method = getattr(tx, name)
                setattr(tx, name, lambda *a, m=method, n=name: reads.append(n) or m(*a))
            return work(tx)
        return original(study_id, watched, **kwargs)

    controller.storage.write = spy  # type: ignore[method-assign]
    for i in range(6):
        run(controller, float(i))
    assert reads == []


def test_pb2_decides_the_same_after_a_restart(tmp_path: Path) -> None:
    """A controller opened again on the same rows decides what the first one would have."""
    def play(root: Path, restart_at: int | None) -> list[tuple[Any, ...]]:
        controller = make_controller(root, population_size=4, seed=3, explore=PB2(
            min_observations=2))
        for i in range(40):
            if i == restart_at:
                controller = Controller(controller.storage, controller.study,
                                        controller.config)
            run(controller, float((i * 7) % 5) + 0.1 * i)
        return [(t.member, t.parent_id, t.params, t.decision, t.start_step)
                for t in trials(controller)]

    straight = play(tmp_path / "a", None)
    assert any(t[3] == "exploit" for t in straight)
    assert play(tmp_path / "b", 17) == straight


# -- refused results ---------------------------------------------------------------------------


def test_tell_of_a_finished_trial_is_refused(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1)
    claimed = claim(controller)
    complete(controller, claimed, 1.0)
    before = trials(controller)
    assert controller.tell(claimed, {"acc": 9.0}, None) is False
    assert controller.tell_failure(claimed, "late failure") is False
    assert trials(controller) == before


def test_tell_with_the_wrong_claim_is_refused(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1)
    claimed = claim(controller)
    before = trials(controller)
    forged = Claimed(claimed.trial, "not-the-claim")
    assert controller.tell(forged, {"acc": 9.0}, None) is False
    assert controller.tell_failure(forged, "boom") is False
    assert trials(controller) == before
    assert stored(controller, claimed.trial.id).state == TrialState.RUNNING
    assert controller.heartbeat(claimed) is True
    assert controller.heartbeat(forged) is False


@pytest.mark.parametrize(
    ("metrics", "message"),
    [({"acc": float("nan")}, "must be finite"), ({"loss": 1.0}, "lack the study's metric"),
     ([("acc", 1.0)], "must return a dict of metrics")],
)
def test_tell_checks_what_it_is_told_and_records_nothing_bad(
    tmp_path: Path, metrics: Any, message: str,
) -> None:
    controller = make_controller(tmp_path, population_size=1)
    claimed = claim(controller)
    before = trials(controller)
    with pytest.raises(TrialFailedError, match=message):
        controller.tell(claimed, metrics, None)
    assert trials(controller) == before  # the trial is still held; the worker fails it


def test_a_result_for_a_trial_that_is_not_held_is_refused_up_front(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1)
    [queued_trial] = queued(controller)
    with pytest.raises(TrialFailedError, match="is QUEUED: nothing to tell"):
        controller.tell(Claimed(queued_trial, "token"), {"acc": 1.0}, None)


# -- failures --------------------------------------------------------------------------------


def test_failures_are_retried_up_to_max_retries(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2, max_retries=2, max_steps=20)
    run(controller, 1.0)  # member 0 completes, so the study is not failed outright
    original = claim(controller)
    assert original.trial.member == 1
    current = original
    for attempt in (1, 2):
        assert controller.tell_failure(current, f"error {attempt}")
        failed = stored(controller, current.trial.id)
        assert (failed.state, failed.error, failed.checkpoint) == (
            TrialState.FAILED, f"error {attempt}", None)
        current = claim(controller)
        retry = current.trial
        assert retry.decision == "retry"
        assert (retry.member, retry.params, retry.start_step, retry.end_step,
                retry.parent_id, retry.generation) == (
            1, original.trial.params, original.trial.start_step, original.trial.end_step,
            original.trial.parent_id, original.trial.generation)
        assert controller.storage.get_members(controller.study.id)[1].failures == attempt
    assert controller.tell_failure(current, "error 3")
    member = controller.storage.get_members(controller.study.id)[1]
    assert (member.state, member.failures) == (MemberState.FAILED, 3)
    assert [t.member for t in queued(controller)] == [0]  # no fourth attempt
    assert study_state(controller) == StudyState.RUNNING
    run(controller, 2.0)  # member 0 finishes its budget
    assert study_state(controller) == StudyState.COMPLETE


def test_a_success_resets_the_failure_count(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2, max_retries=1)
    run(controller, 1.0)
    assert controller.tell_failure(claim(controller), "flaky")
    assert controller.storage.get_members(controller.study.id)[1].failures == 1
    run(controller, 0.5)  # the retry of member 1 succeeds
    member = controller.storage.get_members(controller.study.id)[1]
    assert (member.failures, member.state) == (0, MemberState.ACTIVE)


def test_every_first_trial_failing_fails_the_study(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=3, max_retries=3)
    first_error = "Traceback ...\nValueError: lr 'x' is \"bad\"\n"
    for i, error in enumerate([first_error, "second", "third"]):
        assert study_state(controller) == StudyState.RUNNING
        assert controller.tell_failure(claim(controller), error)
        time.sleep(0.002)  # distinct finish times
        if i < 2:
            assert study_state(controller) == StudyState.RUNNING
    record = controller.storage.get_study_by_id(controller.study.id)
    assert record.state == StudyState.FAILED
    assert "every member's first trial failed" in (record.error or "")
    assert first_error in (record.error or "")
    assert "second" not in (record.error or "")
    assert controller.ask("w") is DONE


def test_every_member_out_of_retries_fails_the_study(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1, max_retries=0)
    run(controller, 1.0)
    assert controller.tell_failure(claim(controller), "diverged")
    record = controller.storage.get_study_by_id(controller.study.id)
    assert record.state == StudyState.FAILED
    assert "more than max_retries" in (record.error or "")
    assert "diverged" in (record.error or "")


def test_interrupted_trials_are_retried_without_using_up_retries(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1, max_retries=0)
    for _ in range(3):
        claimed = claim(controller)
        assert controller.tell_failure(claimed, "interrupted", counts=False)
        assert stored(controller, claimed.trial.id).state == TrialState.FAILED
    member = controller.storage.get_members(controller.study.id)[0]
    assert (member.failures, member.state) == (0, MemberState.ACTIVE)
    assert study_state(controller) == StudyState.RUNNING
    assert [t.decision for t in queued(controller)] == ["retry"]
    run(controller, 1.0)


# -- lost trials -------------------------------------------------------------------------------


def silent(controller: Controller, claimed: Claimed, seconds: float) -> None:
    """Make ``claimed``'s last heartbeat ``seconds`` old, by the database's clock (the
    one the storage stamps heartbeats with and judges them by)."""
    storage = controller.storage
    now = storage._read(lambda c: c.execute(select(DatabaseNow())).scalar_one())
    storage.clock = VirtualClock(now - seconds)  # stamps ``seconds`` ago
    try:
        assert storage.heartbeat(controller.study.id, claimed.trial.id, claimed.claim)
    finally:
        storage.clock = SYSTEM_CLOCK


def test_reap_stale_fails_silent_trials_and_retries_them(tmp_path: Path) -> None:
    # The reaper's own times (its monotonic clock) only space its looks; how long a trial
    # has been silent is the database's to say.
    controller = make_controller(tmp_path, population_size=2, heartbeat_timeout=30.0)
    lost = claim(controller, "dead-worker")
    alive = claim(controller, "live-worker")
    silent(controller, lost, 20)
    assert controller.reap_stale(100.0) == 0  # younger than the timeout
    silent(controller, lost, 31)
    assert controller.reap_stale(101.0) == 0  # stale on a first look only
    assert controller.reap_stale(101.0 + 5) == 1  # still stale a heartbeat later
    failed = stored(controller, lost.trial.id)
    assert failed.state == TrialState.LOST
    assert failed.error is not None and "lost" in failed.error and "dead-worker" in failed.error
    assert "for 31s" in failed.error or "for 32s" in failed.error  # the silence, measured
    assert stored(controller, alive.trial.id).state == TrialState.RUNNING
    [retry] = queued(controller)
    assert (retry.member, retry.params, retry.decision) == (
        lost.trial.member, lost.trial.params, "retry")
    # the dead worker comes back late: its result is refused
    assert controller.heartbeat(lost) is False
    assert controller.tell(lost, {"acc": 1.0}, None) is False
    assert stored(controller, lost.trial.id).state == TrialState.LOST
    assert controller.reap_stale(101.0 + 10) == 0  # reaped once


def test_fail_worker_fails_only_that_workers_trials(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=3)
    gone = [claim(controller, "gone"), claim(controller, "gone")]
    kept = claim(controller, "kept")
    assert controller.fail_worker("gone", "process died") == 2
    for c in gone:
        trial = stored(controller, c.trial.id)
        assert (trial.state, trial.error) == (TrialState.LOST, "process died")
    assert stored(controller, kept.trial.id).state == TrialState.RUNNING
    assert len(queued(controller)) == 2


# -- garbage collection -----------------------------------------------------------------------


def _gc_scenario(controller: Controller, first_fitness: float) -> dict[str, FrozenTrial]:
    """Two members; returns the trials by name. See the assertions for the lineage."""
    a, b = claim(controller), claim(controller)
    t0 = complete(controller, a, first_fitness)  # m0: continues -> t2 (parent t0)
    t1 = complete(controller, b, 0.0)  # m1 loses to t0 -> t3 (parent t0)
    c2 = claim(controller)
    c3 = claim(controller)
    assert (c2.trial.member, c2.trial.parent_id) == (0, t0.id)
    assert (c3.trial.member, c3.trial.parent_id) == (1, t0.id)
    t2 = complete(controller, c2, 2.0)  # t0 is no member's latest, but t3 runs from it
    assert t0.checkpoint is not None and t0.checkpoint.is_dir()
    assert stored(controller, t0.id).checkpoint == t0.checkpoint
    t3 = complete(controller, c3, 0.5)  # m1 loses to t2 -> t5 (parent t2)
    assert children_of(controller, t3) == []
    return {"t0": t0, "t1": t1, "t2": t2, "t3": t3}


def test_garbage_collection_keeps_what_is_needed(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2, keep_best=0)
    t = _gc_scenario(controller, first_fitness=1.0)
    for name in ("t0", "t1"):  # nobody refers to these any more
        path = t[name].checkpoint
        assert path is not None and not path.exists()
        assert stored(controller, t[name].id).checkpoint is None
    for name in ("t2", "t3"):  # t2: parent of queued trials; t3: member 1's latest
        path = t[name].checkpoint
        assert path is not None and (path / "weights.txt").read_text() == str(t[name].id)
        assert stored(controller, t[name].id).checkpoint == path


def test_garbage_collection_keeps_the_best(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2, keep_best=1)
    t = _gc_scenario(controller, first_fitness=10.0)
    assert t["t0"].checkpoint is not None and t["t0"].checkpoint.is_dir()  # the best
    assert stored(controller, t["t0"].id).checkpoint is not None
    assert t["t1"].checkpoint is not None and not t["t1"].checkpoint.exists()
    assert stored(controller, t["t1"].id).checkpoint is None


def test_garbage_collection_keep_best_in_mode_min(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1, keep_best=1, mode="min")
    first = run(controller, 0.1)  # the best (lowest)
    second = run(controller, 0.5)
    third = run(controller, 0.9)
    assert first.checkpoint is not None and first.checkpoint.is_dir()
    assert second.checkpoint is not None and not second.checkpoint.exists()
    assert third.checkpoint is not None and third.checkpoint.is_dir()  # latest


def test_a_collected_parent_checkpoint_fails_the_child_clearly(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1)
    first = run(controller, 1.0)
    [child] = queued(controller)
    controller.storage.write(controller.study.id,
                             lambda tx: tx.forget_checkpoints([first.id]))
    with pytest.raises(CheckpointGoneError, match=rf"trial {first.id} is gone; trial "):
        controller.parent_checkpoint(Claimed(child, "token"))


def test_a_parent_checkpoint_missing_on_disk_is_recorded_as_gone_once(tmp_path: Path) -> None:
    # A directory deleted by hand (or a worker on a machine that does not share
    # checkpoint_root): the child must not silently train from scratch, and the study
    # records the checkpoint as gone the first time, so that nothing copies it again.
    controller = make_controller(tmp_path, population_size=1)
    first = run(controller, 1.0)
    [child] = queued(controller)
    assert first.checkpoint is not None
    shutil.rmtree(first.checkpoint)
    claimed = Claimed(child, "token", first)  # as claimed before it was found gone
    with pytest.raises(CheckpointGoneError) as raised:
        controller.parent_checkpoint(claimed)
    message = str(raised.value)
    assert "\n" not in message and f"trial {first.id} ({first.checkpoint}) is gone" in message
    assert "pbtune recorded it as gone" in message and f"trial {child.id} " in message
    recorded = stored(controller, first.id)
    assert recorded.checkpoint is None and recorded.checkpoint_gone == first.checkpoint
    with pytest.raises(CheckpointGoneError, match="it was recorded as gone"):
        controller.parent_checkpoint(claimed)  # a second finder records nothing new
    with pytest.raises(CheckpointGoneError, match="as recorded before"):
        controller.parent_checkpoint(Claimed(child, "token"))  # read after the record
    assert stored(controller, first.id).checkpoint_gone == first.checkpoint


def fail_on_gone_parent(controller: Controller) -> FrozenTrial:
    """Claim the next trial, find its parent's checkpoint gone, and fail it as a worker
    does; return the retry that follows."""
    claimed = claim(controller, "w")
    with pytest.raises(CheckpointGoneError) as raised:
        controller.parent_checkpoint(claimed)
    run_ = controller.start(claimed)
    run_.fail(raised.value)
    [retry] = [t for t in queued(controller) if t.member == claimed.trial.member]
    return retry


def test_a_member_whose_own_checkpoint_is_gone_restarts_from_a_copy(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2, max_retries=0)
    mine, better = run(controller, 0.5), run(controller, 0.9)
    assert mine.checkpoint is not None and mine.member == 0
    shutil.rmtree(mine.checkpoint)
    child = next(t for t in queued(controller) if t.member == 0)
    assert child.parent_id == mine.id  # it continues from its own, which is gone
    retry = fail_on_gone_parent(controller)
    assert retry.parent_id == better.id and retry.decision == "restart"
    assert retry.start_step == better.end_step
    member = controller.storage.get_members(controller.study.id)[0]
    assert member.state == MemberState.ACTIVE  # max_retries=0: the failure did not count


def test_with_no_checkpoint_left_a_member_trains_again_from_step_0(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1, max_retries=0)
    first = run(controller, 0.5)
    assert first.checkpoint is not None
    shutil.rmtree(first.checkpoint)
    retry = fail_on_gone_parent(controller)
    assert (retry.parent_id, retry.start_step, retry.end_step) == (None, 0, 10)
    assert stored(controller, first.id).checkpoint_gone == first.checkpoint


# -- metrics ---------------------------------------------------------------------------------

CONFIG = StudyConfig(space=SPACE, metric="acc", mode="max", population_size=2,
                     steps_per_trial=10, max_steps=100)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"acc": float("nan")}, r"metric 'acc' is nan; metrics must be finite"),
        ({"acc": float("inf")}, r"metric 'acc' is inf; metrics must be finite"),
        ({"acc": -float("inf")}, r"metrics must be finite"),
        ({"acc": 0.5, "loss": float("nan")}, r"metric 'loss' is nan"),
        ({"acc": np.float64("nan")}, r"metrics must be finite"),
        ({"acc": None}, r"metric 'acc' is None; metrics must be numbers"),
        ({"acc": "0.5"}, r"metric 'acc' is '0\.5'; metrics must be numbers"),
        ({"acc": b"1"}, r"metrics must be numbers"),
        ({"acc": True}, r"metric 'acc' is True; metrics must be numbers"),
        ({"acc": [0.5]}, r"metrics must be numbers"),
        ({"acc": {"top1": 0.5}}, r"metrics must be numbers"),
        ({"loss": 0.1}, r"the returned metrics \['loss'\] lack the study's metric 'acc'"),
        ({}, r"lack the study's metric 'acc'"),
        (None, r"returned None; it must return a dict of metrics, e\.g\. \{'acc': 0\.93\}"),
        (0.93, r"returned 0\.93; it must return a dict"),
        ([("acc", 0.9)], r"must return a dict"),
        ("acc", r"must return a dict"),
    ],
)
def test_check_metrics_rejects_unusable_results(result: Any, message: str) -> None:
    with pytest.raises(TrialFailedError, match=message):
        check_metrics(result, CONFIG)


def test_check_metrics_accepts_numbers_of_any_kind() -> None:
    metrics, fitness = check_metrics(
        {"acc": 1, "loss": np.float32(0.25), "n": np.int64(3)}, CONFIG)
    assert metrics == {"acc": 1.0, "loss": 0.25, "n": 3.0}
    assert all(type(v) is float for v in metrics.values())
    assert fitness == 1.0 and type(fitness) is float


def test_check_metrics_with_a_fitness_function() -> None:
    config = StudyConfig(space=SPACE, metric=None, fitness=lambda m: m["acc"] - m["cost"],
                         mode="max", population_size=2, steps_per_trial=10, max_steps=100)
    assert check_metrics({"acc": 0.75, "cost": 0.25}, config) == (
        {"acc": 0.75, "cost": 0.25}, 0.5)
    with pytest.raises(TrialFailedError, match=r"the fitness function raised KeyError\('cost'\)"):
        check_metrics({"acc": 0.9}, config)
    nan_config = StudyConfig(space=SPACE, metric=None, fitness=lambda m: float("nan"),
                             mode="max", population_size=2, steps_per_trial=10, max_steps=100)
    with pytest.raises(TrialFailedError, match=r"fitness is nan; it must be a finite number"):
        check_metrics({"acc": 0.9}, nan_config)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "maximize"}, r"mode must be 'max' or 'min', got 'maximize'"),
        ({"metric": None}, r"exactly one of metric="),
        ({"metric": ""}, r"metric must be a non-empty string"),
        ({"population_size": 0}, r"population_size must be an int >= 1, got 0"),
        ({"population_size": 2.0}, r"population_size must be an int"),
        ({"steps_per_trial": True}, r"steps_per_trial must be an int >= 1, got True"),
        ({"steps_per_trial": 200}, r"steps_per_trial \(200\) must not exceed max_steps \(100\)"),
        ({"max_retries": -1}, r"max_retries must be an int >= 0"),
        ({"keep_best": -1}, r"keep_best must be an int >= 0"),
        ({"seed": -1}, r"seed must be an int >= 0"),
        ({"exploit": "tournament"}, r"exploit must be pbtune.Tournament\(\)"),
        ({"explore": Tournament()}, r"explore must be pbtune.Perturb\(\)"),
        ({"heartbeat_timeout": 0}, r"heartbeat_timeout must be a positive number"),
        ({"heartbeat_timeout": float("inf")}, r"heartbeat_timeout must be a positive number"),
        ({"trial_timeout": -5.0}, r"trial_timeout must be a positive number"),
        ({"space": {}}, r"non-empty dict"),
    ],
)
def test_bad_study_config_raises(changes: dict[str, Any], message: str) -> None:
    settings = {"space": SPACE, "metric": "acc", "mode": "max", "population_size": 2,
                "steps_per_trial": 10, "max_steps": 100, **changes}
    with pytest.raises((ConfigError, SearchSpaceError), match=message):
        StudyConfig(**settings)


def test_study_config_round_trips() -> None:
    config = StudyConfig(space=SPACE, metric="acc", mode="min", population_size=3,
                         steps_per_trial=7, max_steps=70, exploit=Truncation(0.5),
                         explore=Perturb(factors=(0.5, 2.0), resample_probability=0.1),
                         seed=9, max_retries=1, keep_best=2, heartbeat_timeout=5.0,
                         trial_timeout=100.0)
    again = StudyConfig.from_dict(config.to_dict())
    assert again == config
    assert again.differences(config) == []
    changed = StudyConfig.from_dict({**config.to_dict(), "seed": 10, "max_steps": 77})
    assert sorted(changed.differences(config)) == ["max_steps", "seed"]


def test_a_repeated_tell_of_the_same_result_is_idempotent(tmp_path: Path) -> None:
    # A write retried after its COMMIT went through (the reply was lost) tells twice.
    controller = make_controller(tmp_path, population_size=1)
    claimed = claim(controller)
    path = write_checkpoint(controller, claimed)
    assert controller.tell(claimed, {"acc": 1.0}, path)
    before = trials(controller)
    assert controller.tell(claimed, {"acc": 1.0}, path) is True
    assert trials(controller) == before and path.is_dir()


def test_a_lost_trial_revokes_the_claim_so_the_worker_is_refused(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1)
    claimed = claim(controller)
    assert controller.fail_lost(claimed, "lost: no heartbeat")
    assert controller.tell_failure(claimed, "lost: no heartbeat") is False
    assert controller.tell(claimed, {"acc": 1.0}, None) is False
    assert stored_claim(controller, claimed.trial.id) is None


def test_a_retried_lost_failure_finds_its_own_record(tmp_path: Path) -> None:
    # A transaction retried after its COMMIT went through (the reply was lost) finds the
    # failure it recorded, claim revoked, and says it was recorded.
    controller = make_controller(tmp_path, population_size=1)
    claimed = claim(controller)
    assert controller.fail_lost(claimed, "lost: no heartbeat")
    assert controller.fail_lost(claimed, "lost: no heartbeat")
    assert len([t for t in trials(controller) if t.decision == "retry"]) == 1


def test_a_storage_outage_does_not_reap_live_workers(tmp_path: Path) -> None:
    # Every heartbeat stops while the storage is down; once it is back, a live worker
    # beats again within an interval and keeps its trial, while a dead one is reaped.
    controller = make_controller(tmp_path, population_size=2, heartbeat_timeout=30.0)
    dead = claim(controller, "dead-worker")
    live = claim(controller, "live-worker")
    for each in (dead, live):  # the outage ends two minutes later
        silent(controller, each, 120)
    assert controller.reap_stale(100.0) == 0  # both look stale: suspects only
    assert controller.heartbeat(live)
    assert controller.reap_stale(100.0 + 5) == 1
    assert stored(controller, dead.trial.id).state == TrialState.LOST
    assert stored(controller, live.trial.id).state == TrialState.RUNNING
    # a lost trial is not the member's fault: it does not use up max_retries
    assert controller.storage.get_members(controller.study.id)[0].failures == 0


# -- tell and claim the next trial in one transaction ------------------------------------------
def test_tell_and_ask_claims_the_next_trial_with_its_parent(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2)
    first = claim(controller, "w1")
    path = write_checkpoint(controller, first)
    told, following = controller.tell_and_ask(first, {"acc": 1.0}, path, "w1")
    assert told and following is not None
    # The member furthest behind comes first: the other member's first trial.
    assert following.trial.member != first.trial.member and following.trial.parent_id is None
    row = stored(controller, following.trial.id)
    assert row.state == TrialState.RUNNING and row.worker == "w1"
    assert stored_claim(controller, row.id) == following.claim
    path = write_checkpoint(controller, following)
    told, third = controller.tell_and_ask(following, {"acc": 2.0}, path, "w1")
    assert told and third is not None and third.trial.parent_id is not None
    # The parent was read in the claiming transaction: no further read is needed.
    assert third.parent is not None and third.parent.id == third.trial.parent_id
    assert controller.parent_checkpoint(third) == third.parent.checkpoint


def test_tell_and_ask_without_a_worker_claims_nothing(tmp_path: Path) -> None:
    controller = make_controller(tmp_path)
    first = claim(controller)
    told, following = controller.tell_and_ask(first, {"acc": 1.0}, None, None)
    assert told and following is None
    assert controller.storage.count_states(controller.study.id)[TrialState.RUNNING] == 0


def test_a_refused_tell_claims_nothing(tmp_path: Path) -> None:
    controller = make_controller(tmp_path)
    first = claim(controller)
    [held] = controller.held_trials()
    assert controller.fail_lost(held, "lost: test")
    told, following = controller.tell_and_ask(first, {"acc": 1.0}, None, "w")
    assert not told and following is None
    assert controller.storage.count_states(controller.study.id)[TrialState.RUNNING] == 0


def test_tell_and_ask_claims_nothing_once_the_study_is_done(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1, steps_per_trial=10,
                                 max_steps=10)
    only = claim(controller)
    told, following = controller.tell_and_ask(only, {"acc": 1.0}, None, "w")
    assert told and following is None
    assert controller.storage.get_study_state(controller.study.id) == StudyState.COMPLETE


def test_release_gives_a_claimed_trial_back_to_the_queue(tmp_path: Path) -> None:
    controller = make_controller(tmp_path)
    held = claim(controller, "w1")
    assert controller.release(held)
    back = stored(controller, held.trial.id)
    assert back.state == TrialState.QUEUED and back.worker is None
    assert stored_claim(controller, back.id) is None
    again = claim(controller, "w2")
    assert again.trial.id == held.trial.id and again.claim != held.claim
    assert not controller.release(held)  # the old claim no longer holds it


def test_a_worker_that_stops_early_leaves_no_trial_claimed(tmp_path: Path) -> None:
    from pbtune.worker import run_worker

    controller = make_controller(tmp_path, population_size=3)

    def train(trial: Any) -> dict[str, float]:
        (trial.checkpoint_dir / "state").write_text(str(trial.end_step))
        return {"acc": float(trial.end_step)}

    assert run_worker(controller.storage, "study", train, max_trials=4) == 4
    counts = controller.storage.count_states(controller.study.id)
    assert counts[TrialState.COMPLETE] == 4 and counts[TrialState.RUNNING] == 0
    stop = threading.Event()
    done: list[int] = []

    def stopping_train(trial: Any) -> dict[str, float]:
        if len(done) == 2:
            stop.set()  # asked to stop while a trial runs: the next one is given back
        done.append(trial.id)
        return {"acc": 1.0}

    assert run_worker(controller.storage, "study", stopping_train, stop=stop) == 3
    assert controller.storage.count_states(controller.study.id)[TrialState.RUNNING] == 0


def test_collected_checkpoints_are_deleted_by_the_time_the_worker_returns(
    tmp_path: Path,
) -> None:
    from pbtune.worker import run_worker

    controller = make_controller(tmp_path, population_size=3, steps_per_trial=10,
                                 max_steps=60, keep_best=1)

    def train(trial: Any) -> dict[str, float]:
        (trial.checkpoint_dir / "w.txt").write_text(str(trial.id))
        return {"acc": float(trial.end_step + trial.member)}

    run_worker(controller.storage, "study", train)
    referenced = {t.checkpoint for t in controller.storage.get_trials(controller.study.id)
                  if t.checkpoint is not None}
    on_disk = {p for p in study_dir(controller).iterdir() if p.name.startswith("trial-")}
    assert on_disk == referenced and len(referenced) < 18  # GC ran, in the background


# -- evaluation apart from training ------------------------------------------------------------
def score_from_checkpoint(trial: Any) -> dict[str, float]:
    return {"acc": float((trial.checkpoint_dir / "weights.txt").read_text())}


def test_an_evaluated_trial_waits_trained_until_an_evaluator_scores_it(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1, evaluate=score_from_checkpoint)
    trained = claim(controller, "trainer")
    assert isinstance(controller.ask("evaluator", "evaluate"), type(WAIT))  # nothing trained
    path = write_checkpoint(controller, trained)
    told, following = controller.tell_and_ask(trained, {"loss": 0.5}, path, "trainer", "train")
    assert told and following is None  # a trainer does not evaluate; nothing else queued
    row = stored(controller, trained.trial.id)
    assert row.state == TrialState.TRAINED and row.fitness is None
    assert isinstance(controller.ask("trainer", "train"), type(WAIT))  # the member waits
    evaluation = claim_as(controller, "evaluator", "evaluate")
    assert evaluation.trial.id == trained.trial.id
    assert evaluation.trial.state == TrialState.EVALUATING
    merged = {**(evaluation.trial.metrics or {}), "acc": 7.0}
    told, _ = controller.tell_and_ask(evaluation, merged, path, None)
    done = stored(controller, trained.trial.id)
    assert told and done.state == TrialState.COMPLETE and done.fitness == 7.0
    assert done.metrics == {"loss": 0.5, "acc": 7.0}
    nxt = claim(controller, "trainer")  # now the member's next trial is decided
    assert nxt.trial.parent_id == trained.trial.id


def claim_as(controller: Controller, worker: str, role: Any) -> Claimed:
    asked = controller.ask(worker, role)
    assert isinstance(asked, Claimed), asked
    return asked


def test_a_lost_evaluator_costs_only_the_evaluation(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1, evaluate=score_from_checkpoint)
    trained = claim(controller)
    path = write_checkpoint(controller, trained)
    controller.tell_and_ask(trained, {"loss": 0.5}, path, None)
    first = claim_as(controller, "evaluator-1", "evaluate")
    [lost] = controller.held_trials()
    assert lost.trial.id == first.trial.id
    assert controller.fail_lost(lost, "lost: no heartbeat", counts=False)  # went silent
    back = stored(controller, first.trial.id)
    assert back.state == TrialState.TRAINED and back.checkpoint == path
    assert stored_claim(controller, back.id) is None
    second = claim_as(controller, "evaluator-2", "evaluate")
    assert second.trial.id == first.trial.id and second.claim != first.claim
    # the first evaluator's late result is refused; the second one's counts
    assert controller.tell_and_ask(first, {"acc": 1.0}, path, None)[0] is False
    assert controller.tell_and_ask(second, {"acc": 2.0}, path, None)[0] is True
    assert stored(controller, first.trial.id).fitness == 2.0
    # the training ran once: no retry was queued
    assert [t.decision for t in controller.storage.get_trials(controller.study.id)].count(
        "retry") == 0


def test_a_worker_doing_both_evaluates_its_own_trial_at_once(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2, evaluate=score_from_checkpoint)
    trained = claim(controller)
    path = write_checkpoint(controller, trained)
    told, following = controller.tell_and_ask(trained, {"loss": 0.1}, path, "w")
    assert told and following is not None
    assert following.trial.id == trained.trial.id
    assert following.trial.state == TrialState.EVALUATING
    assert stored_claim(controller, trained.trial.id) == following.claim


def test_checkpoints_waiting_for_evaluation_are_not_collected(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=2, keep_best=0,
                                 evaluate=score_from_checkpoint)
    slow = claim(controller, "a")
    slow_path = write_checkpoint(controller, slow)
    controller.tell_and_ask(slow, {}, slow_path, None)
    held = claim_as(controller, "slow-evaluator", "evaluate")  # a long evaluation
    assert held.trial.id == slow.trial.id
    for _ in range(4):  # meanwhile the other member trains and is evaluated again and again
        other = claim_as(controller, "b", "train")
        path = write_checkpoint(controller, other)
        controller.tell_and_ask(other, {}, path, None)
        evaluation = claim_as(controller, "b", "evaluate")
        assert evaluation.trial.id == other.trial.id
        controller.tell_and_ask(evaluation, {"acc": 1.0}, path, None)
    assert stored(controller, slow.trial.id).checkpoint == slow_path
    assert slow_path.is_dir()
    assert controller.storage.get_study_state(controller.study.id) == StudyState.RUNNING


def test_an_evaluation_that_crashes_its_worker_loses_the_trial(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1, max_retries=1,
                                 evaluate=score_from_checkpoint)
    for attempt in range(2):
        trained = claim(controller)
        path = write_checkpoint(controller, trained)
        controller.tell_and_ask(trained, {"loss": 0.5}, path, None)
        evaluation = claim_as(controller, f"evaluator-{attempt}", "evaluate")
        # the evaluator's process died (a crash counts): the trial fails, and is retried
        assert controller.fail_worker(f"evaluator-{attempt}", "lost: exit code -11") == 1
        assert stored(controller, evaluation.trial.id).state == TrialState.LOST
    # a crash loop ends after max_retries
    assert controller.storage.get_members(controller.study.id)[0].state == MemberState.FAILED


def test_release_gives_an_unstarted_evaluation_back(tmp_path: Path) -> None:
    controller = make_controller(tmp_path, population_size=1, evaluate=score_from_checkpoint)
    trained = claim(controller)
    path = write_checkpoint(controller, trained)
    _, evaluation = controller.tell_and_ask(trained, {}, path, "w")
    assert evaluation is not None and controller.release(evaluation)
    back = stored(controller, trained.trial.id)
    assert back.state == TrialState.TRAINED
    assert stored_claim(controller, back.id) is None


def test_a_retried_training_tell_finds_its_own_result_after_an_evaluator_took_it(
    tmp_path: Path,
) -> None:
    controller = make_controller(tmp_path, population_size=2, evaluate=score_from_checkpoint)
    trained = claim(controller, "trainer")
    path = write_checkpoint(controller, trained)
    assert controller.tell_and_ask(trained, {}, path, None)[0]
    claim_as(controller, "evaluator", "evaluate")  # moved on to EVALUATING
    # the same tell again (a retry whose first COMMIT went through) is a success
    assert controller.tell_and_ask(trained, {}, path, None)[0]
    assert stored(controller, trained.trial.id).state == TrialState.EVALUATING


def test_a_trial_that_writes_no_checkpoint_fails_at_once_and_the_study_stops(
    tmp_path: Path,
) -> None:
    from pbtune.worker import run_worker

    study = create_study("forgetful", space=SPACE, storage=None, metric="acc",
                         population_size=3, steps_per_trial=5, max_steps=20,
                         checkpoint_root=tmp_path)

    def train(trial: Any) -> dict[str, float]:
        (trial.checkpoint_dir / "empty-folder").mkdir()  # a folder with no file is empty
        return {"acc": float(trial.end_step)}

    run_worker(study.storage, "forgetful", train)
    assert study.state == StudyState.FAILED
    assert "wrote no checkpoint" in (study.error or "")
    trials = study.trials()
    assert not [t for t in trials if t.state == TrialState.COMPLETE]
    assert all(t.start_step == 0 for t in trials)  # stopped within its first generation
    assert {t.member for t in trials if t.state == TrialState.FAILED} == {0, 1, 2}
    progress = study.progress()
    assert (progress.steps_done, progress.steps_total) == (0, 60)  # nothing trained for good
