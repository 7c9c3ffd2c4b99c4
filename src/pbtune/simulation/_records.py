"""Whether a study's records are consistent: every trial accounted for, every lineage
unbroken, no work lost without a retry. A simulation
checks its study with it; it reads any study, simulated or not."""

from __future__ import annotations

from dataclasses import dataclass, field

from pbtune.trial import FrozenTrial, TrialState


@dataclass
class Audit:
    """What `audit` found: ``lost`` trials whose work was lost and never retried,
    ``unfinished`` trials still queued or held, and each broken rule, in words."""

    trials: int = 0
    complete: int = 0
    lost: int = 0
    lost_trials: int = 0  # LOST: a worker died or went silent (each retried, or counted
    # in ``lost``)
    unfinished: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.problems and not self.lost


def audit(trials: list[FrozenTrial], *, finished: bool) -> Audit:
    """Check ``trials`` (all of one study's); ``finished``: the study ended, so nothing
    may be left queued or held."""
    found = Audit(trials=len(trials))
    by_id = {t.id: t for t in trials}
    newest: dict[int, int] = {}  # member -> its newest trial's id
    for trial in trials:
        newest[trial.member] = max(newest.get(trial.member, trial.id), trial.id)
        if trial.state == TrialState.COMPLETE:
            found.complete += 1
            _check_lineage(trial, by_id, found.problems)
        elif trial.state == TrialState.LOST:
            found.lost_trials += 1
        elif trial.state.is_active:
            found.unfinished += 1
    for trial in trials:
        # A failure is retried by the member's next trial (a retry, or, where the study
        # gave the member up or stopped, nothing: then its work is lost).
        retried = newest[trial.member] > trial.id
        if trial.state.is_failure and not retried:
            found.lost += 1
    if finished and found.unfinished:
        found.problems.append(f"{found.unfinished} trials are still queued or held in a "
                              "study that ended")
    return found


def _check_lineage(trial: FrozenTrial, by_id: dict[int, FrozenTrial],
                   problems: list[str]) -> None:
    if trial.parent_id is None:
        if trial.start_step != 0:
            problems.append(f"trial {trial.id} starts at step {trial.start_step} from "
                            "nothing")
        return
    parent = by_id.get(trial.parent_id)
    if parent is None or parent.state != TrialState.COMPLETE:
        problems.append(f"trial {trial.id}'s parent {trial.parent_id} is not a complete "
                        "trial of the study")
    elif parent.end_step != trial.start_step:
        problems.append(f"trial {trial.id} starts at step {trial.start_step}, its parent "
                        f"{parent.id} ended at {parent.end_step}")
