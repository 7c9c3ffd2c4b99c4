"""A member's trials, one after another, inside the controller's transactions.

Its first trial, the next one decided after each result (continue, exploit or explore), a
retry after a failure, the end of the study once nothing is left to run, and the
checkpoints that nobody needs any more. Each function works on the open `Transaction` it
is given, so a result and everything it causes commit together.
"""

from __future__ import annotations

import numpy as np

from pbtune.controller._config import StudyConfig, retry_backoff
from pbtune.controller._parents import (
    next_segment,
    read_history,
    retry_of,
    with_stored_budget,
)
from pbtune.storages import Holder, MemberState, NewTrial, StudyState, Transaction
from pbtune.strategies import Stop, decide_next
from pbtune.trial import FrozenTrial


def initial_trials(config: StudyConfig) -> list[NewTrial]:
    """The first trial of every member, params drawn from the seeded generator."""
    first: list[NewTrial] = []
    for member in range(config.population_size):
        rng = np.random.default_rng([config.seed, member, 0])
        first.append(
            NewTrial(
                member=member,
                generation=0,
                parent_id=None,
                params=config.space.sample(rng),
                start_step=0,
                end_step=min(config.steps_per_trial, config.max_steps),
                decision="initial",
            )
        )
    return first


def enqueue_next(
    tx: Transaction, config: StudyConfig, finished: FrozenTrial, population: list[FrozenTrial],
    now: float, notes: list[str],
) -> bool:
    """Decide and enqueue the member's next trial; False if the member is done. What the
    caller should log once the transaction commits is added to ``notes``."""
    config = with_stored_budget(tx, config)
    criteria = config.criteria
    lagging = tx.member(finished.member).lagging if config.early_stop is not None else 0
    following = decide_next(
        finished,
        population,
        space=config.space,
        exploit=config.exploit,
        explore=config.explore,
        mode=config.mode,
        max_steps=config.max_steps,
        rng=np.random.default_rng([config.seed, finished.number, 1]),
        history=lambda: read_history(tx, config),
        criteria=criteria,
        early_stop=config.early_stop,
        lagging=lagging,
    )
    decision = following.decision
    if isinstance(decision, Stop):
        tx.member_done(finished.member)
        return False
    if following.lagging != lagging:
        tx.member_lagging(finished.member, following.lagging)
    parent, params, kind = next_segment(tx, finished, population, decision, notes)
    start = parent.end_step
    tx.add_trial(
        NewTrial(
            member=finished.member,
            generation=parent.generation + 1,
            parent_id=parent.id,
            params=params,
            start_step=start,
            end_step=min(start + config.steps_per_trial, config.max_steps),
            decision=kind,
        ),
        now,
    )
    return True


def after_failure(
    tx: Transaction, config: StudyConfig, failed: FrozenTrial, now: float, *, counts: bool = True
) -> None:
    """Retry the member's failed trial, or give the member up after ``max_retries``; fail
    the study when every member's first trial failed, or finish it when nothing is left.
    In a study that has ended (stopped, or failed) the retry is queued, and waits there
    like any queued trial, but the study's state is left as it is.

    A counted failure's retry waits its backoff (`retry_backoff`: ``retry_delay``, then
    twice as long after each failure in a row), stored with the trial so that every
    worker respects it: an outage (a full disk, a lost mount) does not use up every
    member's retries within a second. An uncounted one (an interrupted run) goes at once.
    """
    member = tx.member(failed.member)
    failures = member.failures + (1 if counts else 0)
    gave_up = failures > config.max_retries
    tx.member_failed(failed.member, failures, gave_up=gave_up)
    if not gave_up:
        delay = retry_backoff(config, failures) if counts else 0.0
        # Another parent if its parent's checkpoint is gone.
        retry = retry_of(tx, config, failed, not_before=now + delay if delay else None)
        if retry is not None:
            tx.add_trial(retry, now)
        else:
            tx.member_done(failed.member)
    if tx.study_state() != StudyState.RUNNING:
        return
    # Broken training code fails the study at once; a lost trial (a killed or silent
    # worker) says nothing about the code, so it costs a retry, never the study.
    everyone = tx.all_members()
    if (
        all(m.failures > 0 for m in everyone)
        and not tx.any_complete()
        and tx.members_with_reported_failures() >= {m.member for m in everyone}
    ):
        first = tx.first_failure(reported=True)
        assert first is not None
        tx.set_study_state(
            StudyState.FAILED,
            f"every member's first trial failed; the first error (trial {first.id}):\n"
            f"{first.error}",
        )
        return
    maybe_finish_study(tx)


def give_retries_back(tx: Transaction, config: StudyConfig, now: float) -> list[int]:
    """Members that gave up (FAILED after more than ``max_retries`` failures in a row)
    train again: each gets ``max_retries`` fresh tries, starting with a retry of its
    latest failed trial (queued now). Returns those members.

    For a study that failed by failures and runs again once its user fixed the cause (a
    full disk freed): a member that only failed because of it goes on from its last good
    checkpoint; one whose code is broken fails ``max_retries + 1`` times again and gives up.
    """
    given: list[int] = []
    for member in tx.all_members():
        if member.state != MemberState.FAILED:
            continue
        failed = tx.latest_failure(member.member)
        if failed is None:  # nothing to retry (cannot happen for a member that gave up)
            continue
        tx.member_given_retries(member.member)
        retry = retry_of(tx, config, failed)
        if retry is not None:
            tx.add_trial(retry, now)
        else:
            tx.member_done(member.member)
        given.append(member.member)
    return given


def maybe_finish_study(tx: Transaction) -> None:
    """COMPLETE the study when no trial is left unfinished (FAILED if every member is)."""
    if tx.count_active() > 0:
        return
    if all(m.state == MemberState.FAILED for m in tx.all_members()):
        first = tx.first_failure()
        tx.set_study_state(
            StudyState.FAILED,
            "every member failed more than max_retries times; the first error:\n"
            f"{first.error if first else '?'}",
        )
    else:
        tx.set_study_state(StudyState.COMPLETE)


def _best_holders(holders: list[Holder], config: StudyConfig) -> list[Holder]:
    """The ``keep_best`` best trials that hold a checkpoint, as the study's criteria
    (several objectives, constraints) compare them."""
    scored = [t for t in holders if t.metrics is not None]
    scores = config.criteria.scores(scored)
    return sorted(scored, key=lambda t: (-scores[t.id], t.id))[: config.keep_best]


def collect_garbage(
    tx: Transaction, config: StudyConfig, population: list[FrozenTrial]
) -> list[Holder]:
    """Forget the checkpoints nobody needs; the caller deletes them after commit.

    Kept: parents of trials not finished yet, each member's latest COMPLETE trial
    (``population``, read in this transaction), trials waiting for their evaluation
    and the ``keep_best`` best. With one plain fitness the database picks them in one
    statement (`Transaction.collect_garbage`); the best under several objectives or
    constraints are ranked here, from every holder's metrics.
    """
    if config.criteria.plain:
        return tx.collect_garbage(config.keep_best, config.mode)
    holders = tx.checkpoint_holders()
    keep = tx.pending_parent_ids()
    keep.update(t.id for t in population)
    if config.evaluated:
        keep.update(tx.awaiting_evaluation())
    keep.update(t.id for t in _best_holders(holders, config))
    garbage = [t for t in holders if t.id not in keep]
    tx.forget_checkpoints(t.id for t in garbage)
    return garbage
