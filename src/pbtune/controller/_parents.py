"""Which parent a member's next segment warm-starts from: after a decision, or for a retry.

`next_segment` turns a decision into the trial to start from (what the decision reads of
the study, `read_history` and `with_stored_budget`, is here too).

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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pbtune.controller._config import StudyConfig
from pbtune.storages import NewTrial, Transaction
from pbtune.strategies import (
    NO_HISTORY,
    Continue,
    Decision,
    EarlyStop,
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


def retry_of(tx: Transaction, config: StudyConfig, failed: FrozenTrial, *,
             not_before: float | None = None) -> NewTrial | None:
    """The member's retry of ``failed``, claimable from ``not_before`` (its backoff): the
    same trial again, or, when its parent's checkpoint is gone (deleted from outside, or
    collected while the member had given up), a re-decided one (see the module's
    docstring). None when the re-decision finds the member at the budget (it is then
    done). The one place that chooses a retry's parent."""
    if failed.parent_id is not None:
        parent = tx.trial(failed.parent_id)
        if parent is None or parent.checkpoint is None:
            redecided = _redecided(tx, config, failed)
            return None if redecided is None else replace(redecided, not_before=not_before)
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


def _redecided(tx: Transaction, config: StudyConfig, failed: FrozenTrial) -> NewTrial | None:
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


def next_segment(
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
