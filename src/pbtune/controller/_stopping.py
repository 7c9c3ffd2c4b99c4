"""A study that ends before its budget, and one that runs again.

- `StopCheck`: a study's stop rules judge each COMPLETE trial in the transaction that
  records it; when one fires, the study ends (COMPLETE, with the reason) and nothing new
  is decided. Trials running elsewhere finish their segment and are recorded; queued
  trials stay queued.
- `stop_study`: the same end from outside (`Study.stop`).
- `revive`: a study that failures ended (FAILED) runs again, its members that gave up
  given their retries back.
- `judge_past` and `reopen`: a study whose rules change, or whose budget is raised after
  it stopped, has its past judged by its rules as they are now (`replay_rules`); if they
  would not have stopped it, it runs again, and each member whose last result came in
  after the end (and so decided nothing) gets its next trial.

The rules' state is stored under each rule's position (``{"0": ..., "1": ...}``), with
``"fired"``: the position of the rule that stopped the study, which tells a study a rule
stopped from one a user stopped.
"""

from __future__ import annotations

from typing import Any

from pbtune.controller._config import StudyConfig, stop_context
from pbtune.controller._members import enqueue_next, give_retries_back, maybe_finish_study
from pbtune.storages import MemberState, Storage, StudyState, Transaction
from pbtune.strategies import StopRule, Verdict, check_rules, replay_rules, stop_from_dict
from pbtune.trial import FrozenTrial

FIRED = "fired"
USER_STOP = "Study.stop() was called"


class StopCheck:
    """The stop rules of one controller's study, checked at each COMPLETE result.

    The rules are read with the study's state and budget (one statement the decision
    reads anyway), so rules changed by another process hold from the next result on; a
    study without rules reads nothing more. Parsed rules are kept while they stay the same.
    """

    def __init__(self, config: StudyConfig) -> None:
        self._config = config
        self._stored: list[dict[str, Any]] = []
        self._rules: tuple[StopRule, ...] = ()

    def __call__(self, tx: Transaction, finished: FrozenTrial) -> str | None:
        """Check ``finished`` (just recorded, in a RUNNING study); stop the study and
        return the reason if a rule fires, else None."""
        stored = tx.stop_rules()
        if not stored:
            return None
        if stored != self._stored:
            self._rules, self._stored = stop_from_dict(stored), stored
        before = tx.stop_state()
        verdict = check_rules(self._rules, finished, before,
                              stop_context(self._config, tx.max_steps()))
        return _apply(tx, verdict, before)


def _apply(tx: Transaction, verdict: Verdict, before: dict[str, Any]) -> str | None:
    """Store the rules' new state (when it changed) and, if one fired, stop the study."""
    state = dict(verdict.state)
    if verdict.fired is not None:
        state[FIRED] = verdict.fired
    if state != before:
        tx.set_stop_state(state)
    if verdict.reason is not None:
        tx.stop_study(verdict.reason)
    return verdict.reason


def stop_study(storage: Storage, study_id: int, reason: str) -> bool:
    """End a RUNNING study now (COMPLETE, with ``reason``): no new trial is decided, and
    every worker, here or elsewhere, stops after the trial it runs. False (and nothing
    changed) for a study that is not RUNNING."""

    def work(tx: Transaction) -> bool:
        if tx.study_state() != StudyState.RUNNING:
            return False
        tx.stop_study(reason)
        return True

    return storage.write(study_id, work)


def judge_past(tx: Transaction, config: StudyConfig) -> Verdict:
    """What ``config``'s rules say of the study's COMPLETE trials, as if they had judged
    each one as it came in (nothing to read for a study without rules)."""
    if not config.stop:
        return Verdict(None, None, {})
    return replay_rules(config.stop, tx.complete_trials(), stop_context(config))


def stop_for(tx: Transaction, verdict: Verdict) -> None:
    """Stop the study (or keep it stopped) for ``verdict``, a rule that fired."""
    assert verdict.reason is not None
    _apply(tx, verdict, tx.stop_state())


def reopen(tx: Transaction, config: StudyConfig, notes: list[str]) -> bool:
    """Run a study that ended early again: RUNNING, and each ACTIVE member without an
    unfinished trial (its last result came in after the end, so it decided nothing) gets
    its next trial decided now. Returns whether it runs: False, with nothing changed,
    when nothing is left to run (no unfinished trial and no such member), and False once
    those members' decisions found them all at the budget (it is then COMPLETE)."""
    busy = {t.member for t in tx.active_with_start()}
    idle = [m.member for m in tx.all_members()
            if m.state == MemberState.ACTIVE and m.member not in busy]
    if not busy and not idle:
        return False
    tx.set_study_state(StudyState.RUNNING)
    state = tx.stop_state()
    if FIRED in state:
        tx.set_stop_state({k: v for k, v in state.items() if k != FIRED})
    population = tx.population()
    latest = {t.member: t for t in population}
    now = tx.clock.time()
    for member in idle:
        if member in latest:
            enqueue_next(tx, config, latest[member], population, now, notes)
    maybe_finish_study(tx)  # every idle member had reached the budget: nothing to run
    return tx.study_state() == StudyState.RUNNING


def stopped_by_rule(tx: Transaction) -> bool:
    """Whether a stop rule (rather than `Study.stop`) ended the study."""
    return tx.study_state() == StudyState.COMPLETE and FIRED in tx.stop_state()


def revive(storage: Storage, study_id: int, config: StudyConfig, *,
           complete_too: bool = False) -> bool:
    """Run a FAILED study again (its user fixed the cause, a full disk freed): the
    members that gave up get ``max_retries`` fresh tries from their last good checkpoint
    (`give_retries_back`), the queued retries go on, and members whose results came in
    after it failed get their next trials. Returns whether the study is RUNNING now;
    False (nothing changed) if nothing is left to run.

    A COMPLETE study is left as it is, also one with members that gave up while the
    others reached the budget, unless ``complete_too`` (`Study.optimize`'s
    ``retry_failed``): then its members that gave up train on the same way.
    """

    def work(tx: Transaction) -> bool:
        state = tx.study_state()
        gave_up = any(m.state == MemberState.FAILED for m in tx.all_members())
        if state == StudyState.COMPLETE and complete_too and gave_up:
            give_retries_back(tx, config, tx.clock.time())
            return reopen(tx, config, [])
        if state != StudyState.FAILED:
            return state == StudyState.RUNNING
        give_retries_back(tx, config, tx.clock.time())
        return reopen(tx, config, [])

    return storage.write(study_id, work)
