"""A study's members and its population, inside one transaction: each member's row (its
latest COMPLETE trial, failures in a row, state) and the trials a decision reads of them.
`Transaction` has these methods too (this is its mixin).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from sqlalchemy import Connection, RowMapping, select

from pbtune.checkpoints import Location
from pbtune.storages import _statements as q
from pbtune.storages._records import MemberRecord, MemberState
from pbtune.storages._rows import row_to_trial
from pbtune.storages._schema import members
from pbtune.trial import FrozenTrial


class Stretch(NamedTuple):
    """What a trial trained, and how fit it was at its start (its parent's fitness; None
    for a first trial) and at its end (None until it is COMPLETE)."""

    id: int
    member: int
    parent_id: int | None
    params: dict[str, Any]
    start_step: int
    end_step: int
    fitness: float | None
    start_fitness: float | None


class MembersAndPopulation:
    """The study's members, and the population and stretches a decision reads."""

    _c: Connection
    study_id: int
    _study: dict[str, int]

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

    def member_completed(self, member: int, trial_id: int) -> None:
        """The member's latest COMPLETE trial is ``trial_id``; its failures in a row end."""
        self._set_member(member, latest_complete_id=trial_id, failures=0)

    def member_failed(self, member: int, failures: int, *, gave_up: bool) -> None:
        """The member failed ``failures`` times in a row; ``gave_up``: it stops (FAILED)."""
        if gave_up:
            self._set_member(member, failures=failures, state=MemberState.FAILED.value)
        else:
            self._set_member(member, failures=failures)

    def member_given_retries(self, member: int) -> None:
        """A member that gave up trains again (ACTIVE) with no failures in a row."""
        self._set_member(member, failures=0, state=MemberState.ACTIVE.value)

    def member_done(self, member: int) -> None:
        """The member reached the budget (DONE)."""
        self._set_member(member, state=MemberState.DONE.value)

    def member_lagging(self, member: int, count: int) -> None:
        """The member's results ranked at the bottom ``count`` times in a row."""
        self._set_member(member, lagging=count)

    def _set_member(self, member: int, **values: Any) -> None:
        self._c.execute(q.UPDATE_MEMBER, {"b_member": member, **self._study, **values})

    def population(self, known: Mapping[int, FrozenTrial] | None = None
                   ) -> list[FrozenTrial]:
        """Each member's latest COMPLETE trial, by member.

        ``known``: trials by number, read before (in transactions that committed). A
        COMPLETE trial never changes but for losing its checkpoint (collected, or found
        gone), so a known trial whose stored checkpoint is still the one it has is used as
        it is: only numbers and checkpoints are read, and the trials not known in full.
        """
        known = known or {}
        latest = self._c.execute(q.POPULATION_CHECKPOINTS, self._study).all()
        missing = [n for n, checkpoint in latest if not _same(known.get(n), checkpoint)]
        read = {t.id: t for t in self._trials(q.TRIALS_BY_NUMBER,
                                              {"b_ids": missing, **self._study})
                } if missing else {}
        return [read[n] if n in read else known[n] for n, _ in latest]

    def _trials(self, query: Any, params: dict[str, Any]) -> list[FrozenTrial]:
        return [row_to_trial(r) for r in self._c.execute(query, params).mappings()]

    def recent_complete(self, limit: int) -> list[Stretch]:
        """The study's ``limit`` newest COMPLETE trials (by number), oldest first."""
        rows = self._c.execute(q.RECENT_COMPLETE, {"b_limit": limit, **self._study})
        return [Stretch(*row) for row in rows][::-1]

    def active_with_start(self) -> list[Stretch]:
        """The study's unfinished trials (their fitness None), by number."""
        return [Stretch(*row) for row in self._c.execute(q.ACTIVE_WITH_START, self._study)]


def checkpoint_text(checkpoint: Location | None) -> str | None:
    """A checkpoint location as it is stored."""
    return str(checkpoint) if checkpoint is not None else None


def _same(trial: FrozenTrial | None, checkpoint: str | None) -> bool:
    """Whether ``trial`` is known and has the checkpoint stored now (as it was written)."""
    return trial is not None and checkpoint_text(trial.checkpoint) == checkpoint


def _member(row: RowMapping) -> MemberRecord:
    return MemberRecord(
        member=row["member"],
        latest_complete_id=row["latest_complete_id"],
        failures=row["failures"],
        state=MemberState(row["state"]),
        lagging=row["lagging"],
    )
