"""The writes of a study's life beside its trials' protocol: its settings, a raised
budget, and its deletion. `Transaction` has these methods too (this is its mixin), so a
changed budget and the decisions it causes commit together.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, case, delete, func, select, update

from pbtune.storages._records import MemberState
from pbtune.storages._rows import row_to_trial
from pbtune.storages._schema import members, reports, studies, trials
from pbtune.trial import FrozenTrial, TrialState


class StudyLifecycle:
    """A study's settings, its budget and its deletion, inside one transaction."""

    _c: Connection
    study_id: int
    _row: Any  # the transaction's read of its study's row (`StudyRow`), None until read

    def study_config(self) -> dict[str, Any]:
        """The study's stored settings (`StudyConfig.to_dict`)."""
        query = select(studies.c.config).where(studies.c.id == self.study_id)
        return dict(self._c.execute(query).scalar_one())

    def set_study_config(self, config: dict[str, Any]) -> None:
        """Store the study's settings (changed ones: see `revise_study`)."""
        self._c.execute(
            update(studies).where(studies.c.id == self.study_id).values(config=config)
        )
        self._row = None

    def complete_trials(self) -> list[FrozenTrial]:
        """Every COMPLETE trial, in the order they finished: the past that a study's new
        stop rules judge (`pbtune.strategies.replay_rules`). It reads the whole study, so
        only a settings change calls it, never a trial's result."""
        query = (select(trials)
                 .where(trials.c.study_id == self.study_id,
                        trials.c.state == TrialState.COMPLETE.value)
                 .order_by(trials.c.finished_at, trials.c.number))
        return [row_to_trial(row) for row in self._c.execute(query).mappings()]

    def furthest_step(self) -> int:
        """The furthest step a trial trained to or will train to (COMPLETE, running or
        queued; a FAILED or LOST trial trained nothing that counts); 0 without any."""
        query = select(func.max(trials.c.end_step)).where(
            trials.c.study_id == self.study_id,
            trials.c.state.not_in((TrialState.FAILED.value, TrialState.LOST.value)),
        )
        return int(self._c.execute(query).scalar_one() or 0)

    def lengthen_queued(self, old_max: int, new_max: int, steps_per_trial: int) -> int:
        """Give QUEUED trials that the old budget cut short (ending at ``old_max`` after
        fewer than ``steps_per_trial`` steps) the length the new budget allows; return how
        many. Claimed trials keep theirs: their workers train to the end they were given."""
        longer = trials.c.start_step + steps_per_trial
        query = (
            update(trials)
            .where(
                trials.c.study_id == self.study_id,
                trials.c.state == TrialState.QUEUED.value,
                trials.c.end_step == old_max,
                longer > old_max,
            )
            .values(end_step=case((longer < new_max, longer), else_=new_max))
        )
        return int(self._c.execute(query).rowcount)

    def member_resumed(self, member: int) -> None:
        """A member that reached the old budget trains on (ACTIVE again)."""
        self._c.execute(
            update(members)
            .where(members.c.study_id == self.study_id, members.c.member == member)
            .values(state=MemberState.ACTIVE.value)
        )

    def delete_study_rows(self) -> int:
        """Delete every row of the study: its trials' reports, its trials, its members and
        the study itself, children first (PostgreSQL checks the foreign keys); return how
        many trials it had."""
        own_trials = select(trials.c.id).where(trials.c.study_id == self.study_id)
        self._c.execute(delete(reports).where(reports.c.trial_id.in_(own_trials)))
        count = self._c.execute(delete(trials).where(trials.c.study_id == self.study_id))
        self._c.execute(delete(members).where(members.c.study_id == self.study_id))
        self._c.execute(delete(studies).where(studies.c.id == self.study_id))
        return int(count.rowcount)
