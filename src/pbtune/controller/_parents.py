"""Which parent a member's retry warm-starts from.

A failed trial is retried as it was: the same parent, params and steps. Unless the
parent's checkpoint is gone (found missing or damaged, deleted from outside pbtune: see
`Controller.parent_checkpoint`): retrying from it would fail for ever, and the member
would be lost for a checkpoint that is not its fault. The member then re-decides from
what still exists, as PBT would have decided had that checkpoint never been there:

- it wanted to copy another member's checkpoint (an exploit): the decision is made again
  from its own latest result, among the members whose checkpoints exist (it may copy
  another one, explore, or go on from its own);
- its own latest checkpoint is gone (or it was restarting on a copy): it restarts from a
  copy of a top member whose checkpoint exists, with explored params, as an early stop's
  `Restart` does. A member with nothing to go on from would be far behind the population,
  and the next exploit would copy a better member anyway: copying now keeps its budget
  for training that counts;
- no member has a checkpoint left (the whole folder was deleted): it trains again from
  step 0 with the failed trial's params, a new lineage with no parent.

Everything is decided in the failure's transaction from the study's seeded generator, so
a restarted controller decides the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pbtune.controller._config import StudyConfig
from pbtune.storages import NewTrial, Transaction
from pbtune.strategies import EarlyStop, Restart, Stop, decide_next
from pbtune.trial import FrozenTrial


def retry_of(tx: Transaction, config: StudyConfig, failed: FrozenTrial) -> NewTrial | None:
    """The member's retry of ``failed``: the same trial again, or, when its parent's
    checkpoint is gone, a re-decided one (see the module's docstring). None when the
    re-decision finds the member at the budget (it is then done)."""
    if failed.parent_id is not None:
        parent = tx.trial(failed.parent_id)
        if parent is None or parent.checkpoint is None:
            return _redecided(tx, config, failed)
    return NewTrial(
        member=failed.member,
        generation=failed.generation,
        parent_id=failed.parent_id,
        params=failed.params,
        start_step=failed.start_step,
        end_step=failed.end_step,
        decision="retry",
    )


def _redecided(tx: Transaction, config: StudyConfig, failed: FrozenTrial) -> NewTrial | None:
    # Imported here: `after_failure` in _members asks this module for its retries.
    from pbtune.controller._members import next_segment, read_history, with_stored_budget

    config = with_stored_budget(tx, config)
    population = tx.population()
    own = next((t for t in population if t.member == failed.member), None)
    if own is None:  # a trial with a parent follows a result of its member; defensive
        return _from_scratch(config, failed)
    copy = own.checkpoint is None or failed.decision == "restart"
    following = decide_next(
        own, population, space=config.space, exploit=config.exploit,
        explore=config.explore, mode=config.mode, max_steps=config.max_steps,
        rng=np.random.default_rng([config.seed, own.number, 1, failed.number]),
        history=lambda: read_history(tx, config), criteria=config.criteria,
        early_stop=_CopyTop(own.member, config.early_stop) if copy else None,
    )
    decision = following.decision
    if isinstance(decision, Stop):
        return None
    if isinstance(decision, Restart) and config.early_stop is not None:
        tx.member_lagging(own.member, 0)  # a new lineage, as after an early stop
    parent, params, kind = next_segment(tx, own, population, decision, [])
    if parent.checkpoint is None:
        return _from_scratch(config, failed)
    start = parent.end_step
    return NewTrial(member=failed.member, generation=parent.generation + 1,
                    parent_id=parent.id, params=params, start_step=start,
                    end_step=min(start + config.steps_per_trial, config.max_steps),
                    decision=kind)


def _from_scratch(config: StudyConfig, failed: FrozenTrial) -> NewTrial:
    """No checkpoint to go on from: the member trains again from step 0."""
    return NewTrial(member=failed.member, generation=0, parent_id=None,
                    params=failed.params, start_step=0,
                    end_step=min(config.steps_per_trial, config.max_steps),
                    decision="initial")


@dataclass(frozen=True)
class _CopyTop(EarlyStop):
    """An early stop that stops the member at once, so that `decide_next` restarts it on
    a copy of a top member: those the study's own rule names (the top quarter without
    one), among the other members whose checkpoints exist."""

    member: int
    rule: EarlyStop | None

    def count(self, finished: FrozenTrial, population: Sequence[FrozenTrial],
              scores: Mapping[int, float], before: int) -> int:
        return 1

    def stops(self, count: int) -> bool:
        return True

    def top(self, population: Sequence[FrozenTrial], scores: Mapping[int, float]
            ) -> list[FrozenTrial]:
        others = [t for t in population if t.member != self.member]
        if self.rule is not None:
            return self.rule.top(others, scores)
        return super().top(others, scores)

    def to_dict(self) -> dict[str, Any]:
        raise AssertionError("never stored: it lives for one re-decision")
