"""Queries inside one write transaction on one study (used by the controller)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, func, select, update

from pbtune.storages._records import MemberRecord, MemberState, NewTrial, StudyState
from pbtune.storages._schema import members, studies, trials
from pbtune.trial import FrozenTrial, TrialState

_ACTIVE = (TrialState.QUEUED.value, TrialState.RUNNING.value)


def row_to_trial(row: RowMapping) -> FrozenTrial:
    return FrozenTrial(
        id=row["id"],
        number=row["number"],
        member=row["member"],
        generation=row["generation"],
        parent_id=row["parent_id"],
        params=dict(row["params"]),
        start_step=row["start_step"],
        end_step=row["end_step"],
        state=TrialState(row["state"]),
        metrics=dict(row["metrics"]) if row["metrics"] is not None else None,
        fitness=row["fitness"],
        checkpoint=Path(row["checkpoint"]) if row["checkpoint"] else None,
        error=row["error"],
        decision=row["decision"],
        worker=row["worker"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        heartbeat_at=row["heartbeat_at"],
        claim=row["claim"],
        study_id=row["study_id"],
    )


class Transaction:
    """One write transaction scoped to one study.

    On PostgreSQL the study row is locked first, so the decisions of one study are
    serialized (as SQLite's BEGIN IMMEDIATE serializes every write); claims lock single
    trial rows with SKIP LOCKED and do not wait for decisions.
    """

    def __init__(self, connection: Connection, study_id: int, *, lock_study: bool) -> None:
        self._c = connection
        self.study_id = study_id
        self._postgres = connection.dialect.name == "postgresql"
        if lock_study and self._postgres:
            self._c.execute(select(studies.c.id).where(studies.c.id == study_id).with_for_update())

    # -- trials ---------------------------------------------------------------------------
    def trial(self, trial_id: int, *, lock: bool = False) -> FrozenTrial | None:
        query = select(trials).where(trials.c.id == trial_id, trials.c.study_id == self.study_id)
        if lock and self._postgres:
            query = query.with_for_update()
        row = self._c.execute(query).mappings().first()
        return row_to_trial(row) if row is not None else None

    def next_queued(self) -> FrozenTrial | None:
        """The QUEUED trial with the smallest end_step (the member furthest behind)."""
        query = (
            select(trials)
            .where(trials.c.study_id == self.study_id, trials.c.state == TrialState.QUEUED.value)
            .order_by(trials.c.end_step, trials.c.number)
            .limit(1)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        row = self._c.execute(query).mappings().first()
        return row_to_trial(row) if row is not None else None

    def update_trial(
        self,
        trial_id: int,
        *,
        expect_state: TrialState,
        expect_claim: str | None = None,
        **values: Any,
    ) -> bool:
        """Compare-and-set: update only if the trial is still in ``expect_state`` (and held
        by ``expect_claim``). Returns False when someone else got there first."""
        conditions = [trials.c.id == trial_id, trials.c.state == expect_state.value]
        if expect_claim is not None:
            conditions.append(trials.c.claim == expect_claim)
        if "state" in values:
            values["state"] = TrialState(values["state"]).value
        if "checkpoint" in values and values["checkpoint"] is not None:
            values["checkpoint"] = str(values["checkpoint"])
        result = self._c.execute(update(trials).where(and_(*conditions)).values(**values))
        return result.rowcount == 1

    def add_trial(self, new: NewTrial, now: float) -> FrozenTrial:
        number = self._c.execute(
            select(func.coalesce(func.max(trials.c.number), -1) + 1).where(
                trials.c.study_id == self.study_id
            )
        ).scalar_one()
        values: dict[str, Any] = {
            "study_id": self.study_id,
            "number": number,
            "member": new.member,
            "generation": new.generation,
            "parent_id": new.parent_id,
            "params": dict(new.params),
            "start_step": new.start_step,
            "end_step": new.end_step,
            "state": TrialState.QUEUED.value,
            "decision": new.decision,
            "created_at": now,
        }
        key = self._c.execute(trials.insert().values(**values)).inserted_primary_key
        assert key is not None
        return FrozenTrial(
            id=int(key[0]),
            number=number,
            member=new.member,
            generation=new.generation,
            parent_id=new.parent_id,
            params=dict(new.params),
            start_step=new.start_step,
            end_step=new.end_step,
            state=TrialState.QUEUED,
            decision=new.decision,
            created_at=now,
            study_id=self.study_id,
        )

    def running(self, *, heartbeat_before: float | None = None) -> list[FrozenTrial]:
        query = select(trials).where(
            trials.c.study_id == self.study_id, trials.c.state == TrialState.RUNNING.value
        )
        if heartbeat_before is not None:
            query = query.where(trials.c.heartbeat_at < heartbeat_before)
        return [row_to_trial(r) for r in self._c.execute(query).mappings()]

    def count_active(self) -> int:
        return int(
            self._c.execute(
                select(func.count()).where(
                    trials.c.study_id == self.study_id, trials.c.state.in_(_ACTIVE)
                )
            ).scalar_one()
        )

    def count_complete(self) -> int:
        return int(
            self._c.execute(
                select(func.count()).where(
                    trials.c.study_id == self.study_id,
                    trials.c.state == TrialState.COMPLETE.value,
                )
            ).scalar_one()
        )

    def first_failure(self, *, reported: bool = False) -> FrozenTrial | None:
        """The earliest FAILED trial; with ``reported``, the earliest that its own worker
        reported (not one failed as lost, whose claim was revoked)."""
        query = select(trials).where(
            trials.c.study_id == self.study_id, trials.c.state == TrialState.FAILED.value
        )
        if reported:
            query = query.where(trials.c.claim.is_not(None))
        query = query.order_by(trials.c.finished_at, trials.c.number).limit(1)
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

    # -- members and the population ---------------------------------------------------------
    def member(self, member: int) -> MemberRecord:
        row = (
            self._c.execute(
                select(members).where(
                    members.c.study_id == self.study_id, members.c.member == member
                )
            )
            .mappings()
            .one()
        )
        return _member(row)

    def all_members(self) -> list[MemberRecord]:
        rows = self._c.execute(
            select(members).where(members.c.study_id == self.study_id).order_by(members.c.member)
        ).mappings()
        return [_member(r) for r in rows]

    def set_member(self, member: int, **values: Any) -> None:
        if "state" in values:
            values["state"] = MemberState(values["state"]).value
        self._c.execute(
            update(members)
            .where(members.c.study_id == self.study_id, members.c.member == member)
            .values(**values)
        )

    def population(self) -> list[FrozenTrial]:
        """Each member's latest COMPLETE trial."""
        query = (
            select(trials)
            .join(members, trials.c.id == members.c.latest_complete_id)
            .where(members.c.study_id == self.study_id)
            .order_by(trials.c.member)
        )
        return [row_to_trial(r) for r in self._c.execute(query).mappings()]

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_holders(self) -> list[FrozenTrial]:
        """COMPLETE trials whose checkpoint is still on disk."""
        query = select(trials).where(
            trials.c.study_id == self.study_id, trials.c.checkpoint.is_not(None)
        )
        return [row_to_trial(r) for r in self._c.execute(query).mappings()]

    def pending_parent_ids(self) -> set[int]:
        query = select(trials.c.parent_id).where(
            trials.c.study_id == self.study_id,
            trials.c.state.in_(_ACTIVE),
            trials.c.parent_id.is_not(None),
        )
        return {int(pid) for pid in self._c.execute(query).scalars()}

    def forget_checkpoints(self, trial_ids: Iterable[int]) -> None:
        ids = list(trial_ids)
        if ids:
            self._c.execute(update(trials).where(trials.c.id.in_(ids)).values(checkpoint=None))

    # -- the study ---------------------------------------------------------------------------
    def set_study_state(self, state: StudyState, error: str | None = None) -> None:
        self._c.execute(
            update(studies)
            .where(studies.c.id == self.study_id)
            .values(state=StudyState(state).value, error=error)
        )

    def study_state(self) -> StudyState:
        value = self._c.execute(
            select(studies.c.state).where(studies.c.id == self.study_id)
        ).scalar_one()
        return StudyState(value)


def _member(row: RowMapping) -> MemberRecord:
    return MemberRecord(
        member=row["member"],
        latest_complete_id=row["latest_complete_id"],
        failures=row["failures"],
        state=MemberState(row["state"]),
    )
