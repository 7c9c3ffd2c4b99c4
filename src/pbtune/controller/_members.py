"""A member's trials, one after another, inside the controller's transactions.

Its first trial, the next one decided after each result (continue, exploit or explore), a
retry after a failure, the end of the study once nothing is left to run, and the
checkpoints that nobody needs any more. Each function works on the open `Transaction` it
is given, so a result and everything it causes commit together.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pbtune.controller._config import StudyConfig, retry_backoff
from pbtune.storages import Holder, MemberState, NewTrial, StudyState, Transaction
from pbtune.strategies import (
    NO_HISTORY,
    Continue,
    Decision,
    Exploit,
    Explore,
    History,
    Observation,
    Pending,
    Restart,
    Stop,
    decide_next,
)
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
    parent, params, kind = _next_segment(tx, finished, population, decision, notes)
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


def with_stored_budget(tx: Transaction, config: StudyConfig) -> StudyConfig:
    """``config`` with the study's stored ``max_steps``, read in this transaction: another
    process may have raised (or lowered) the budget since this one read its settings (see
    `revise_study`), and every decision from then on must follow it."""
    stored = tx.max_steps()
    return config if stored == config.max_steps else replace(config, max_steps=stored)


def read_history(tx: Transaction, config: StudyConfig) -> History:
    """The recent results and pending trials the study's strategies asked for (their
    ``history_size``); nothing is read when they ask for none."""
    size = max(config.exploit.history_size, config.explore.history_size)
    if size <= 0:
        return NO_HISTORY
    observations = tuple(
        Observation(
            trial_id=t.id, member=t.member, parent_id=t.parent_id, params=t.params,
            start_step=t.start_step, end_step=t.end_step, start_fitness=t.start_fitness,
            end_fitness=t.fitness,
        )
        for t in tx.recent_complete(size)
        if t.fitness is not None
    )
    pending = tuple(
        Pending(trial_id=t.id, member=t.member, params=t.params, start_step=t.start_step,
                end_step=t.end_step, start_fitness=t.start_fitness)
        for t in tx.active_with_start()
    )
    return History(observations, pending)


def _next_segment(
    tx: Transaction, finished: FrozenTrial, population: list[FrozenTrial], decision: Decision,
    notes: list[str],
) -> tuple[FrozenTrial, dict[str, object], str]:
    """The trial to warm-start from, the params and the decision's name, for a decision
    to go on. An `Exploit` or `Explore` whose trial to start from has no checkpoint (none
    was written, or it was collected) cannot use it: the member goes on from its own
    trial with its own params, recorded as a continue, with a note saying so."""
    if isinstance(decision, Continue):
        return finished, finished.params, "continue"
    if isinstance(decision, Explore):
        chosen: FrozenTrial | None = finished
        kind, source = "explore", "its own trial"
    else:
        assert isinstance(decision, (Exploit, Restart))
        # Decisions of one study are serialized, so the snapshot read in this
        # transaction is current.
        chosen = next((t for t in population if t.id == decision.parent_id), None)
        if chosen is None:
            chosen = tx.trial(decision.parent_id)
        kind = "restart" if isinstance(decision, Restart) else "exploit"
        source = f"the trial it would copy ({decision.parent_id})"
    if chosen is not None and chosen.checkpoint is not None:
        return chosen, decision.params, kind
    notes.append(f"member {finished.member} continues as it was: {source} has no checkpoint "
                 f"to {kind}")
    return finished, finished.params, "continue"


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
        tx.add_trial(retry_of(tx, config, failed, not_before=now + delay if delay else None), now)
    if tx.study_state() != StudyState.RUNNING:
        return
    # Broken training code fails the study at once; a lost trial (a killed or silent
    # worker) says nothing about the code, so it costs a retry, never the study.
    everyone = tx.all_members()
    if (
        tx.count_complete() == 0
        and all(m.failures > 0 for m in everyone)
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


def retry_of(tx: Transaction, config: StudyConfig, failed: FrozenTrial, *,
             not_before: float | None = None) -> NewTrial:
    """The trial that retries ``failed``, claimable from ``not_before``: the one place
    that chooses a retry's parent.

    The same segment from the same parent, with the same params; if that parent's
    checkpoint was collected meanwhile (a member given its retries back after the rest
    of the study trained on), the member goes on from its own latest COMPLETE trial
    (always kept), with that trial's params.
    """
    parent = tx.trial(failed.parent_id) if failed.parent_id is not None else None
    if parent is not None and parent.checkpoint is None:
        own = tx.member(failed.member).latest_complete_id
        latest = tx.trial(own) if own is not None else None
        if latest is not None and latest.checkpoint is not None:
            return NewTrial(
                member=failed.member, generation=latest.generation + 1, parent_id=latest.id,
                params=latest.params, start_step=latest.end_step,
                end_step=min(latest.end_step + config.steps_per_trial, tx.max_steps()),
                decision="retry", not_before=not_before,
            )
    return NewTrial(
        member=failed.member,
        generation=failed.generation,
        parent_id=failed.parent_id,
        params=failed.params,
        start_step=failed.start_step,
        end_step=failed.end_step,
        decision="retry",
        not_before=not_before,
    )


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
        tx.add_trial(retry_of(tx, config, failed), now)
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
    """The ``keep_best`` best trials that hold a checkpoint, as the study compares them."""
    criteria = config.criteria
    if criteria.plain:
        sign = -1.0 if config.mode == "max" else 1.0
        return sorted((t for t in holders if t.fitness is not None),
                      key=lambda t: (sign * t.fitness, t.id),  # type: ignore[operator]
                      )[: config.keep_best]
    scored = [t for t in holders if t.metrics is not None]
    scores = criteria.scores(scored)
    return sorted(scored, key=lambda t: (-scores[t.id], t.id))[: config.keep_best]


def collect_garbage(
    tx: Transaction, config: StudyConfig, population: list[FrozenTrial]
) -> list[Holder]:
    """Forget the checkpoints nobody needs; the caller deletes them after commit.

    Kept: parents of trials not finished yet, each member's latest COMPLETE trial
    (``population``, read in this transaction), trials waiting for their evaluation
    and the ``keep_best`` best.
    """
    holders = tx.checkpoint_holders()
    keep = tx.pending_parent_ids()
    keep.update(t.id for t in population)
    if config.evaluated:
        keep.update(tx.awaiting_evaluation())
    keep.update(t.id for t in _best_holders(holders, config))
    garbage = [t for t in holders if t.id not in keep]
    tx.forget_checkpoints(t.id for t in garbage)
    return garbage
