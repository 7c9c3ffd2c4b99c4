"""The statements of the controller's path, built once.

A statement object is reused with new parameters (SQLAlchemy caches its compiled form),
which saves building the expression for every trial. Bound names start with "b_" so they
never clash with a column that an UPDATE sets from the parameters.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Float,
    Integer,
    Select,
    bindparam,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)

from pbtune.storages._clock import DatabaseNow
from pbtune.storages._schema import members, studies, trials
from pbtune.trial import TrialState

ACTIVE = tuple(s.value for s in TrialState if s.is_active)
HELD = tuple(s.value for s in TrialState if s.is_held)
AWAITING = (TrialState.TRAINED.value, TrialState.EVALUATING.value)  # their evaluation
STUDY: BindParameter[int] = bindparam("b_study", type_=Integer)


def state_in(states: tuple[str, ...]) -> ColumnElement[bool]:
    """The trial's state is one of ``states``, written into the SQL rather than bound. A
    prepared statement's generic plan (psycopg prepares what a connection runs often) then
    knows which states it asks for, so it uses an index for the rare ones (the few QUEUED or
    RUNNING trials among thousands of COMPLETE ones); bound, it planned for any state and
    scanned the study's every trial."""
    return trials.c.state.in_([literal(state, literal_execute=True) for state in states])

# A trial is named by its number in the study (the id users see); the unique index
# ix_pbtune_trials_number finds it.
TRIAL_BY_ID = select(trials).where(
    trials.c.number == bindparam("b_id"), trials.c.study_id == STUDY
)


def _next_in(state: TrialState) -> Select[Any]:
    """The study's trial in ``state`` with the smallest end_step (the member furthest
    behind), then the lowest number."""
    return (
        select(trials)
        .where(trials.c.study_id == STUDY, state_in((state.value,)))
        .order_by(trials.c.end_step, trials.c.number)
        .limit(1)
    )


# A retry waiting for its backoff is left in the queue: its `not_before` is on the
# database's clock (or b_clock, a caller's own; see _clock.py), never a worker's.
_CLOCK = func.coalesce(cast(bindparam("b_clock", type_=Float), Float), DatabaseNow())
NEXT_QUEUED = _next_in(TrialState.QUEUED).where(
    or_(trials.c.not_before.is_(None), trials.c.not_before <= _CLOCK)
)
DATABASE_NOW = select(DatabaseNow())
NEXT_QUEUED_SKIP_LOCKED = NEXT_QUEUED.with_for_update(skip_locked=True)
HELD_BY = select(trials).where(
    trials.c.study_id == STUDY,
    trials.c.claim == bindparam("b_claim"),
    state_in(HELD),
)
# A claim in one statement: the trial NEXT_QUEUED finds (locked, SKIP LOCKED on PostgreSQL)
# becomes RUNNING, with a first heartbeat on the clock that judges backoffs; the caller
# sets the held trial's other columns, and gets its new row.
CLAIM_NEXT = update(trials).where(
    trials.c.study_id == STUDY,
    state_in((TrialState.QUEUED.value,)),
    trials.c.number == NEXT_QUEUED.with_only_columns(trials.c.number)
    .with_for_update(skip_locked=True).scalar_subquery(),
).values(heartbeat_at=_CLOCK).returning(*trials.c)
NEXT_TRAINED = _next_in(TrialState.TRAINED)
NEXT_TRAINED_SKIP_LOCKED = NEXT_TRAINED.with_for_update(skip_locked=True)
AWAITING_EVALUATION = select(trials.c.number).where(
    trials.c.study_id == STUDY,
    state_in(AWAITING),
)
MOVE = update(trials).where(
    trials.c.number == bindparam("b_id"),
    trials.c.study_id == STUDY,
    trials.c.state == bindparam("b_state"),
)
MOVE_IF_CLAIM = MOVE.where(trials.c.claim == bindparam("b_claim"))
MOVE_RETURNING = MOVE.returning(*trials.c)
MOVE_IF_CLAIM_RETURNING = MOVE_IF_CLAIM.returning(*trials.c)
# The held trials silent for longer than b_age seconds, and for how long: the time of a
# heartbeat is judged by the clock that stamped it, the database's (or b_now, a caller's
# own clock; see _clock.py), never by the reader's.
_NOW = func.coalesce(cast(bindparam("b_now", type_=Float), Float), DatabaseNow())
HELD_STALE = select(trials, (_NOW - trials.c.heartbeat_at).label("silence")).where(
    trials.c.study_id == STUDY,
    state_in(HELD),
    trials.c.heartbeat_at < _NOW - bindparam("b_age", type_=Float),
)
HELD_WITH_SILENCE = select(trials, (_NOW - trials.c.heartbeat_at).label("silence")).where(
    trials.c.study_id == STUDY, state_in(HELD)
)
ALL_HELD = select(trials).where(trials.c.study_id == STUDY, state_in(HELD))
NEXT_NUMBER = select(func.coalesce(func.max(trials.c.number), -1) + 1).where(
    trials.c.study_id == STUDY
)
# A new trial takes the next number in the same statement (ix_pbtune_trials_number finds
# the highest); the writes that add trials hold the study's lock, so none takes it twice.
INSERT_TRIAL = trials.insert().values(number=NEXT_NUMBER.scalar_subquery())
INSERT_TRIAL_NUMBERED = INSERT_TRIAL.returning(trials.c.number)
COUNT_ACTIVE = select(func.count()).where(
    trials.c.study_id == STUDY, state_in(ACTIVE)
)


@functools.cache
def look(claimable: tuple[str, ...]) -> Select[Any]:
    """An idle worker's look, in one statement: the study's state, whether a trial is in
    one of the ``claimable`` states, and whether any is active. Each is an index probe
    (ix_pbtune_trials_queue) that stops at the first row: the cost of a look does not
    grow with the trials in flight, and thousands of idle workers poll."""

    def any_in(states: tuple[str, ...]) -> Any:
        return (select(trials.c.number)
                .where(trials.c.study_id == STUDY, state_in(states))
                .exists())

    return select(studies.c.state, any_in(claimable), any_in(ACTIVE)).where(
        studies.c.id == STUDY)


ANY_COMPLETE = select(
    select(trials.c.number)
    .where(trials.c.study_id == STUDY, state_in((TrialState.COMPLETE.value,)))
    .exists()
)
ACTIVE_BY_STATE = (
    select(trials.c.state, func.count())
    .where(trials.c.study_id == STUDY, state_in(ACTIVE))
    .group_by(trials.c.state)
)
UPDATE_MEMBER = update(members).where(
    members.c.study_id == STUDY, members.c.member == bindparam("b_member")
)
# The population: each member's latest COMPLETE trial, as numbers and checkpoints (no JSON
# to decode), by member. The checkpoint is a subquery per member that the unique index
# ix_pbtune_trials_number answers: a join let the planner hash the study's every trial.
POPULATION_CHECKPOINTS = (
    select(members.c.latest_complete_id,
           select(trials.c.checkpoint)
           .where(trials.c.study_id == members.c.study_id,
                  trials.c.number == members.c.latest_complete_id)
           .scalar_subquery())
    .where(members.c.study_id == STUDY, members.c.latest_complete_id.is_not(None))
    .order_by(members.c.member)
)
TRIALS_BY_NUMBER = select(trials).where(
    trials.c.study_id == STUDY, trials.c.number.in_(bindparam("b_ids", expanding=True))
)
CHECKPOINT_HOLDERS = select(
    trials.c.number, trials.c.fitness, trials.c.checkpoint, trials.c.metrics
).where(trials.c.study_id == STUDY, trials.c.checkpoint.is_not(None))
FORGET_CHECKPOINTS = update(trials).where(
    trials.c.study_id == STUDY, trials.c.number.in_(bindparam("b_ids", expanding=True))
).values(checkpoint=None)
PENDING_PARENTS = select(trials.c.parent_id).where(
    trials.c.study_id == STUDY,
    state_in(ACTIVE),
    trials.c.parent_id.is_not(None),
)
_LATEST = select(members.c.latest_complete_id).where(
    members.c.study_id == STUDY, members.c.latest_complete_id.is_not(None)
)


def _garbage(best_first: Any) -> Select[Any]:
    """The checkpoints nobody needs: held by no member's latest result, no unfinished
    trial's parent, no trial awaiting its evaluation, and not among the b_keep best by
    fitness (``best_first``; ties: the lower number). One statement, whose subqueries
    read the unfinished trials, the members and the holders: its cost follows the
    population, never the trials the study has stored."""
    best = (
        select(trials.c.number)
        .where(trials.c.study_id == STUDY, trials.c.checkpoint.is_not(None),
               trials.c.fitness.is_not(None))
        .order_by(best_first, trials.c.number)
        .limit(bindparam("b_keep", type_=Integer))
    )
    return select(trials.c.number, trials.c.fitness, trials.c.checkpoint).where(
        trials.c.study_id == STUDY,
        trials.c.checkpoint.is_not(None),
        ~state_in(AWAITING),
        trials.c.number.not_in(PENDING_PARENTS),
        trials.c.number.not_in(_LATEST),
        trials.c.number.not_in(best),
    )


GARBAGE = {"max": _garbage(trials.c.fitness.desc()), "min": _garbage(trials.c.fitness.asc())}
_PARENT = trials.alias("parent")
_WITH_START = select(
    trials.c.number, trials.c.member, trials.c.parent_id, trials.c.params,
    trials.c.start_step, trials.c.end_step, trials.c.fitness,
    _PARENT.c.fitness.label("start_fitness"),
).outerjoin(_PARENT, (_PARENT.c.study_id == trials.c.study_id)
            & (_PARENT.c.number == trials.c.parent_id))
# Newest first by number: SQLite and PostgreSQL walk ix_pbtune_trials_number backwards and
# stop after the limit, so the read costs the same however many trials the study holds.
RECENT_COMPLETE = (
    _WITH_START.where(trials.c.study_id == STUDY, state_in((TrialState.COMPLETE.value,)))
    .order_by(trials.c.number.desc())
    .limit(bindparam("b_limit", type_=Integer))
)
ACTIVE_WITH_START = _WITH_START.where(
    trials.c.study_id == STUDY, state_in(ACTIVE)
).order_by(trials.c.number)
# What a decision reads of its study: its state, its budget, its stop rules (another
# process may have changed them; NULL without rules) and their state; the PostgreSQL lock
# that serializes decisions reads the same row.
STUDY_ROW = select(studies.c.state, studies.c.config["max_steps"].as_integer(),
                   studies.c.config["stop"], studies.c.stop_state).where(studies.c.id == STUDY)
LOCK_STUDY = STUDY_ROW.with_for_update()
