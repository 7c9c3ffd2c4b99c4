"""The checkpoints a study's trials hold, inside one transaction: which are still needed,
and forgetting those that are not. `Transaction` has these methods too (this is its mixin);
the files themselves are deleted by the caller, after the commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

from sqlalchemy import Connection, update

from pbtune.checkpoints import Location, as_location
from pbtune.storages import _statements as q
from pbtune.storages._schema import trials


class Holder(NamedTuple):
    """A trial that holds a checkpoint: what garbage collection needs of it."""

    id: int
    fitness: float | None
    checkpoint: Location
    metrics: dict[str, float] | None = None


class CheckpointHolders:
    """The study's checkpoint holders, what keeps them, and their collection."""

    _c: Connection
    study_id: int
    _study: dict[str, int]

    def checkpoint_holders(self) -> list[Holder]:
        """COMPLETE trials whose checkpoint is still on disk (only what GC needs)."""
        return [
            Holder(id=r.number, fitness=r.fitness, checkpoint=as_location(r.checkpoint),
                   metrics=r.metrics)
            for r in self._c.execute(q.CHECKPOINT_HOLDERS, self._study)
        ]

    def pending_parent_ids(self) -> set[int]:
        """Parents of trials not finished yet (their checkpoints are still needed)."""
        return {int(pid) for pid in self._c.execute(q.PENDING_PARENTS, self._study).scalars()}

    def awaiting_evaluation(self) -> set[int]:
        """TRAINED and EVALUATING trials: their checkpoints wait for an evaluator."""
        return {int(i) for i in self._c.execute(q.AWAITING_EVALUATION, self._study).scalars()}

    def collect_garbage(self, keep_best: int, mode: Literal["max", "min"]) -> list[Holder]:
        """Forget the checkpoints nobody needs, for a study that compares one fitness in
        ``mode``, and return them: those of no member's latest result, no unfinished
        trial's parent, no trial awaiting its evaluation, and not among the ``keep_best``
        best. The database picks them (`GARBAGE`), so the holders and what keeps them
        are not read row by row: usually one checkpoint per result comes back, and is
        forgotten by its number. (One UPDATE that joins the garbage would save a round
        trip, but PostgreSQL planned it as a hash join over the study's every trial.)"""
        garbage = _holders(self._c.execute(q.GARBAGE[mode], {"b_keep": keep_best,
                                                            **self._study}))
        self.forget_checkpoints(h.id for h in garbage)
        return garbage

    def forget_checkpoints(self, trial_ids: Iterable[int]) -> None:
        ids = list(trial_ids)
        if ids:
            self._c.execute(q.FORGET_CHECKPOINTS, {"b_ids": ids, **self._study})

    def checkpoint_gone(self, trial_id: int, checkpoint: Location) -> bool:
        """Record that trial ``trial_id``'s ``checkpoint`` was found missing or damaged:
        it keeps the location in ``checkpoint_gone``, and has no checkpoint from now on
        (nothing warm-starts from it, and garbage collection and ``keep_best`` do not
        count it). True only for the first finder: a second one changes nothing."""
        return bool(self._c.execute(
            update(trials)
            .where(trials.c.study_id == self.study_id, trials.c.number == trial_id,
                   trials.c.checkpoint == str(checkpoint))
            .values(checkpoint=None, checkpoint_gone=str(checkpoint))
        ).rowcount)


def _holders(rows: Iterable[Any]) -> list[Holder]:
    return [Holder(id=r.number, fitness=r.fitness, checkpoint=as_location(r.checkpoint))
            for r in rows]
