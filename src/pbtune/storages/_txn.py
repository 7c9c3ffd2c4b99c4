"""One transaction on one study: the controller's reads and its named writes.

A trial changes state only through a named transition (`start`, `start_evaluation`,
`complete`, `mark_trained`, `evaluate_at_once`, `fail`, `requeue`): each is a compare-and-set
on the trial's state (and, for a held trial, its claim), checked against
`pbtune.trial.TRANSITIONS`, that returns the new record (None when another writer got there
first). A member's row changes through
`member_completed`, `member_failed` and `member_done` (and `member_resumed`, when a raised
budget lets a finished member train on: see `StudyLifecycle`; `member_given_retries`, when
a member that gave up trains again), in `MembersAndPopulation`, with the population. The
checkpoints trials hold, and their collection, are in `CheckpointHolders`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    RowMapping,
    delete,
    select,
    update,
)

from pbtune.checkpoints import Location
from pbtune.storages import _statements as q
from pbtune.storages._clock import SYSTEM_CLOCK, Clock, stamp
from pbtune.storages._holders import CheckpointHolders
from pbtune.storages._lifecycle import StudyLifecycle
from pbtune.storages._planner import due
from pbtune.storages._population import MembersAndPopulation, checkpoint_text
from pbtune.storages._records import HeldTrial, NewTrial, StudyState
from pbtune.storages._rows import row_to_held, row_to_trial
from pbtune.storages._schema import reports, studies, trials
from pbtune.trial import FrozenTrial, TrialState


class Transaction(StudyLifecycle, CheckpointHolders, MembersAndPopulation):
    """One transaction scoped to one study: the controller's reads and writes.

    On PostgreSQL the study row is locked first, so the decisions of one study are
    serialized (as SQLite's BEGIN IMMEDIATE serializes every write); claims lock single
    trial rows with SKIP LOCKED and do not wait for decisions.
    """

    def __init__(self, connection: Connection, study_id: int, *, lock_study: bool,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._c = connection
        self.study_id = study_id
        self.clock = clock  # the storage's (see `pbtune.storages.Clock`)
        self._postgres = connection.dialect.name == "postgresql"
        self._study = {"b_study": study_id}
        # UPDATE ... RETURNING (SQLite 3.35+, PostgreSQL) saves a read per transition.
        self._returning = bool(connection.dialect.update_returning)
        self._row: StudyRow | None = None  # the study's state, budget and stop rules
        # Whether this transaction took the study's trials to a mark at which its
        # PostgreSQL tables are tidied after the commit (see `_planner`).
        self.tidy_due = False
        if lock_study and self._postgres:
            self._row = _study_row(self._c.execute(q.LOCK_STUDY, self._study).one())

    # -- trials ---------------------------------------------------------------------------
    def trial(self, trial_id: int) -> FrozenTrial | None:
        row = self._c.execute(q.TRIAL_BY_ID, {"b_id": trial_id, **self._study}).mappings().first()
        return row_to_trial(row) if row is not None else None

    def trial_with_claim(self, trial_id: int) -> tuple[FrozenTrial, str | None] | None:
        """The trial and the claim it was last held under (None once revoked)."""
        row = self._c.execute(q.TRIAL_BY_ID, {"b_id": trial_id, **self._study}).mappings().first()
        return (row_to_trial(row), row["claim"]) if row is not None else None

    def next_queued(self) -> FrozenTrial | None:
        """The QUEUED trial with the smallest end_step (the member furthest behind), of
        those claimable now (a retry waits for its backoff, `NewTrial.not_before`) by the
        database's clock, or by the storage's own where it has one (see `_clock`)."""
        query = q.NEXT_QUEUED_SKIP_LOCKED if self._postgres else q.NEXT_QUEUED
        row = self._c.execute(query, {"b_clock": self.clock.stamp(), **self._study}
                              ).mappings().first()
        return row_to_trial(row) if row is not None else None

    def held_by(self, claim: str) -> HeldTrial | None:
        """The RUNNING or EVALUATING trial that ``claim`` holds, if any."""
        row = self._c.execute(q.HELD_BY, {"b_claim": claim, **self._study}).mappings().first()
        return row_to_held(row) if row is not None else None

    def held(self, *, silent_for: float | None = None) -> list[HeldTrial]:
        """Trials held by a worker (RUNNING or EVALUATING). With ``silent_for``, only
        those without a heartbeat for longer than that many seconds, each with its
        ``silence``; with ``silent_for=0.0``, all, each with its ``silence``. Heartbeats are
        judged by the database's clock (or the storage's own: see `pbtune.storages._clock`)."""
        if silent_for is None:
            rows = self._c.execute(q.ALL_HELD, self._study)
        else:
            rows = self._c.execute(q.HELD_STALE if silent_for > 0 else q.HELD_WITH_SILENCE,
                                   {"b_age": silent_for, "b_now": self.clock.stamp(),
                                    **self._study})
        return [row_to_held(r) for r in rows.mappings()]

    def claim_next(self, worker: str, claim: str, now: float, *, fresh: bool = False
                   ) -> HeldTrial | None:
        """`start` the QUEUED trial of the member furthest behind, for ``worker``, at
        ``now`` (its clock, for users to read); a retry's backoff is judged by the
        database's clock (see `next_queued`).

        Idempotent per ``claim``: a retry whose first COMMIT went through (the reply was
        lost) gets the trial it already holds rather than a second one. A ``fresh`` claim
        (the first transaction to use it) holds nothing yet, so that look is skipped.
        """
        if not fresh:
            held = self.held_by(claim)
            if held is not None:
                return held
        if not self._returning:
            queued = self.next_queued()
            return self.start(queued, worker, claim, now) if queued is not None else None
        # Found and started in one statement (`CLAIM_NEXT`), as `start` would.
        row = self._c.execute(q.CLAIM_NEXT, {
            "b_clock": self.clock.stamp(), **self._study, "state": TrialState.RUNNING.value,
            "worker": worker, "claim": claim, "started_at": now,
        }).mappings().first()
        return row_to_held(row) if row is not None else None

    def claim_next_evaluation(self, worker: str, claim: str, now: float) -> HeldTrial | None:
        """`start_evaluation` of the oldest TRAINED trial (idempotent per claim)."""
        held = self.held_by(claim)
        if held is not None:
            return held
        query = q.NEXT_TRAINED_SKIP_LOCKED if self._postgres else q.NEXT_TRAINED
        row = self._c.execute(query, self._study).mappings().first()
        if row is None:
            return None
        return self.start_evaluation(row_to_trial(row), worker, claim, now)

    # -- transitions: each a compare-and-set on the state (and the claim) ----------------------
    def start(self, trial: FrozenTrial, worker: str, claim: str, now: float
              ) -> HeldTrial | None:
        """QUEUED -> RUNNING, held by ``worker`` under ``claim``, started at ``now`` (the
        worker's clock, for users to read) and with a first heartbeat (the database's)."""
        row = self._move(trial, None, TrialState.RUNNING, worker=worker, claim=claim,
                         started_at=now, beat=True)
        return row_to_held(row) if row is not None else None

    def start_evaluation(self, trial: FrozenTrial, worker: str, claim: str, now: float
                         ) -> HeldTrial | None:
        """TRAINED -> EVALUATING, held by ``worker`` under ``claim``, with a first
        heartbeat (the database's clock)."""
        row = self._move(trial, None, TrialState.EVALUATING, worker=worker, claim=claim,
                         beat=True)
        return row_to_held(row) if row is not None else None

    def complete(self, trial: FrozenTrial, claim: str, *, metrics: dict[str, float],
                 fitness: float | None, checkpoint: Location | None, now: float
                 ) -> FrozenTrial | None:
        """RUNNING or EVALUATING -> COMPLETE, with its result."""
        row = self._move(trial, claim, TrialState.COMPLETE, metrics=metrics, fitness=fitness,
                         checkpoint=checkpoint_text(checkpoint), finished_at=now, error=None)
        return row_to_trial(row) if row is not None else None

    def mark_trained(self, trial: FrozenTrial, claim: str, *, metrics: dict[str, float],
                     checkpoint: Location | None) -> FrozenTrial | None:
        """RUNNING -> TRAINED: the checkpoint waits for an evaluator."""
        row = self._move(trial, claim, TrialState.TRAINED, metrics=metrics,
                         checkpoint=checkpoint_text(checkpoint), error=None)
        return row_to_trial(row) if row is not None else None

    def evaluate_at_once(self, trial: FrozenTrial, claim: str, *, metrics: dict[str, float],
                         checkpoint: Location | None, evaluator: str, now: float
                         ) -> HeldTrial | None:
        """RUNNING -> EVALUATING: trained, and evaluated at once by the worker that trained
        it, under the new claim ``evaluator``."""
        row = self._move(trial, claim, TrialState.EVALUATING, metrics=metrics,
                         checkpoint=checkpoint_text(checkpoint), error=None, claim=evaluator,
                         beat=True)
        return row_to_held(row) if row is not None else None

    def fail(self, trial: FrozenTrial, claim: str, *, error: str, now: float,
             revoke: bool = False, state: TrialState = TrialState.FAILED
             ) -> FrozenTrial | None:
        """RUNNING or EVALUATING -> FAILED, or LOST (``state``). ``revoke`` (failed on
        behalf of a lost worker) clears the claim, so that worker's late result is refused."""
        assert state.is_failure
        values: dict[str, Any] = {"error": error, "finished_at": now, "checkpoint": None}
        if revoke:
            values["claim"] = None
        row = self._move(trial, claim, state, **values)
        return row_to_trial(row) if row is not None else None

    def requeue(self, trial: FrozenTrial, claim: str) -> FrozenTrial | None:
        """Give a held trial back as it was before the claim: RUNNING -> QUEUED (never
        started, or stopped at a run's timeout: what it reported is dropped, since it runs
        again from its start), EVALUATING -> TRAINED (its training kept; another evaluator
        takes it)."""
        if trial.state == TrialState.EVALUATING:
            row = self._move(trial, claim, TrialState.TRAINED, claim=None, heartbeat_at=None)
        else:
            row = self._move(trial, claim, TrialState.QUEUED, worker=None, claim=None,
                             started_at=None, heartbeat_at=None)
            if row is not None:
                self._c.execute(delete(reports).where(reports.c.trial_id == row["id"]))
        return row_to_trial(row) if row is not None else None

    def _move(self, trial: FrozenTrial, held_by: str | None, target: TrialState,
              beat: bool = False, **values: Any) -> RowMapping | None:
        """Move ``trial`` from the state it was read in to ``target`` if it is still in that
        state (and held by the claim ``held_by``); the new row, or None if someone got
        there first. ``beat`` stamps a heartbeat with the database's clock (or the
        storage's own)."""
        source = trial.state
        assert source.can_become(target), f"illegal transition {source.value} -> {target.value}"
        params = {**values, **self._study, "state": target.value, "b_id": trial.id,
                  "b_state": source.value}
        if held_by is not None:
            params["b_claim"] = held_by
        if self._returning:
            returning = q.MOVE_IF_CLAIM_RETURNING if held_by is not None else q.MOVE_RETURNING
            if beat:
                returning = returning.values(heartbeat_at=stamp(self.clock.stamp()))
            return self._c.execute(returning, params).mappings().first()
        query = q.MOVE_IF_CLAIM if held_by is not None else q.MOVE
        if beat:
            query = query.values(heartbeat_at=stamp(self.clock.stamp()))
        if self._c.execute(query, params).rowcount != 1:
            return None
        return self._c.execute(
            q.TRIAL_BY_ID, {"b_id": trial.id, **self._study}
        ).mappings().first()

    def add_trial(self, new: NewTrial, now: float) -> None:
        """Enqueue a trial (QUEUED); the storage numbers it (the next number, in the same
        statement)."""
        insert = q.INSERT_TRIAL_NUMBERED if self._postgres else q.INSERT_TRIAL
        inserted = self._c.execute(insert, {
            **self._study,
            "study_id": self.study_id,
            "member": new.member,
            "generation": new.generation,
            "parent_id": new.parent_id,
            "params": dict(new.params),
            "start_step": new.start_step,
            "end_step": new.end_step,
            "state": TrialState.QUEUED.value,
            "decision": new.decision,
            "created_at": now,
            "not_before": self._on_database_clock(new.not_before, now),
        })
        if self._postgres and due(inserted.scalar_one()):
            self.tidy_due = True

    def _on_database_clock(self, at: float | None, now: float) -> float | None:
        """``at`` of a caller whose clock reads ``now``, as the database's clock will read
        it: a wait written by one machine and judged by another must not carry the skew
        of their clocks."""
        if at is None or self.clock.stamp() is not None:
            return at  # the storage's own clock judges it, the one the caller read
        database_now = float(self._c.execute(q.DATABASE_NOW).scalar_one())
        return database_now + (at - now)

    def count_active(self) -> int:
        return int(self._c.execute(q.COUNT_ACTIVE, self._study).scalar_one())

    def queue_state(self) -> tuple[StudyState, dict[TrialState, int]]:
        """The study's state, and how many of its trials are in each active state."""
        counts = {state: 0 for state in TrialState if state.is_active}
        for state, n in self._c.execute(q.ACTIVE_BY_STATE, self._study):
            counts[TrialState(state)] = int(n)
        return self.study_state(), counts

    def look(self, claimable: tuple[TrialState, ...]) -> Look:
        """What an idle worker needs to know (see `Look`), in one statement."""
        row = self._c.execute(q.look(tuple(s.value for s in claimable)), self._study).one()
        return Look(StudyState(row[0]), bool(row[1]), bool(row[2]))

    def any_complete(self) -> bool:
        """Whether any trial of the study is COMPLETE (the first one found answers)."""
        return bool(self._c.execute(q.ANY_COMPLETE, self._study).scalar_one())

    def first_failure(self, *, reported: bool = False) -> FrozenTrial | None:
        """The earliest FAILED or LOST trial; with ``reported``, the earliest FAILED one
        that its own worker reported (not one failed on behalf of a killed worker, whose
        claim was revoked)."""
        query = select(trials).where(
            trials.c.study_id == self.study_id,
            trials.c.state.in_((TrialState.FAILED.value, TrialState.LOST.value)),
        )
        if reported:
            query = query.where(trials.c.state == TrialState.FAILED.value,
                                trials.c.claim.is_not(None))
        query = query.order_by(trials.c.finished_at, trials.c.number).limit(1)
        row = self._c.execute(query).mappings().first()
        return row_to_trial(row) if row is not None else None

    def latest_failure(self, member: int) -> FrozenTrial | None:
        """The member's FAILED or LOST trial with the highest number, if any."""
        query = select(trials).where(
            trials.c.study_id == self.study_id,
            trials.c.member == member,
            trials.c.state.in_((TrialState.FAILED.value, TrialState.LOST.value)),
        ).order_by(trials.c.number.desc()).limit(1)
        row = self._c.execute(query).mappings().first()
        return row_to_trial(row) if row is not None else None

    def members_with_reported_failures(self) -> set[int]:
        """Members with a FAILED trial that its own worker reported (the training code
        failed), as opposed to one failed as lost on behalf of a dead or silent worker."""
        query = select(trials.c.member).distinct().where(
            trials.c.study_id == self.study_id,
            trials.c.state == TrialState.FAILED.value,
            trials.c.claim.is_not(None),
        )
        return {int(member) for member in self._c.execute(query).scalars()}

    # -- the study ---------------------------------------------------------------------------
    def set_study_state(self, state: StudyState, error: str | None = None) -> None:
        self._c.execute(
            update(studies)
            .where(studies.c.id == self.study_id)
            .values(state=StudyState(state).value, error=error, stop_reason=None)
        )
        self._row = None

    def study_state(self) -> StudyState:
        return self._study_row().state

    def stop_reason(self) -> str | None:
        """Why the study ended before its budget (None if it did not)."""
        return self._c.execute(
            select(studies.c.stop_reason).where(studies.c.id == self.study_id)).scalar()

    def stop_rules(self) -> list[dict[str, Any]]:
        """The study's stored stop rules (their `to_dict` forms; empty without rules),
        read with its state and budget: rules changed by another process hold from the
        next result on."""
        return list(self._study_row().stop or ())

    def stop_study(self, reason: str) -> None:
        """End the study before its budget (COMPLETE), saying why: a stop rule fired, or a
        user stopped it. Trials still queued stay queued: a study whose rules change (or
        whose budget grows) can run them later."""
        self._c.execute(
            update(studies)
            .where(studies.c.id == self.study_id)
            .values(state=StudyState.COMPLETE.value, error=None, stop_reason=reason)
        )
        self._row = None

    def stop_state(self) -> dict[str, Any]:
        """What the study's stop rules keep between results (empty at first), read with
        its state (`_study_row`)."""
        return dict(self._study_row().stop_state)

    def set_stop_state(self, state: dict[str, Any]) -> None:
        self._c.execute(update(studies).where(studies.c.id == self.study_id)
                        .values(stop_state=state))
        self._row = None

    def max_steps(self) -> int:
        """The study's stored budget (a decision reads it every time, so a budget raised
        by another process holds from the next decision on)."""
        budget = self._study_row().max_steps
        assert budget is not None, "a study made by create_study has a max_steps"
        return budget

    def _study_row(self) -> StudyRow:
        """The study's state, budget, stop rules and their state, read once per
        transaction (again after this transaction changes them)."""
        if self._row is None:
            self._row = _study_row(self._c.execute(q.STUDY_ROW, self._study).one())
        return self._row


class Look(NamedTuple):
    """An idle worker's look at a study: its state, whether a trial waits in a state the
    worker claims from, and whether any trial is still active (none: the study is done)."""

    state: StudyState
    claimable: bool
    active: bool


class StudyRow(NamedTuple):
    """What a decision reads of its study in one statement."""

    state: StudyState
    max_steps: int | None
    stop: list[dict[str, Any]] | None
    stop_state: dict[str, Any]


def _study_row(row: Any) -> StudyRow:
    return StudyRow(StudyState(row[0]), None if row[1] is None else int(row[1]),
                    list(row[2]) if row[2] else None, dict(row[3]) if row[3] else {})
