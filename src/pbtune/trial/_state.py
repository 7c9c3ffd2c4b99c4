"""`TrialState` and the legal moves between states, in one table."""

from __future__ import annotations

import enum
from collections.abc import Mapping


class TrialState(str, enum.Enum):
    """Where a trial is in its life.

    QUEUED -> RUNNING -> COMPLETE | FAILED; in a study with an ``evaluate`` function,
    RUNNING -> TRAINED (checkpoint written, waiting for an evaluator) -> EVALUATING ->
    COMPLETE | FAILED. A claim given back goes back: RUNNING -> QUEUED, EVALUATING ->
    TRAINED. FAILED means the user's code failed (it raised, returned no usable metrics,
    wrote no checkpoint or ran past ``trial_timeout``); LOST means the trial's work was lost
    through no fault of the code (the run was interrupted, its worker died or went silent).
    Both are retried. `TRANSITIONS` lists every legal move; a finished trial never changes.
    """

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    TRAINED = "TRAINED"
    EVALUATING = "EVALUATING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    LOST = "LOST"

    @property
    def is_active(self) -> bool:
        """Not finished: the study is not done while a trial is in this state."""
        return self not in (TrialState.COMPLETE, TrialState.FAILED, TrialState.LOST)

    @property
    def is_failure(self) -> bool:
        """Ended without a result: FAILED (the code's fault) or LOST (not the code's)."""
        return self in (TrialState.FAILED, TrialState.LOST)

    @property
    def is_held(self) -> bool:
        """Held by a worker under a claim (training or evaluating), with a heartbeat."""
        return self in (TrialState.RUNNING, TrialState.EVALUATING)

    def can_become(self, other: TrialState) -> bool:
        """Whether a trial in this state may move to ``other`` (see `TRANSITIONS`)."""
        return other in TRANSITIONS[self]


TRANSITIONS: Mapping[TrialState, frozenset[TrialState]] = {
    # claimed by a worker (start)
    TrialState.QUEUED: frozenset({TrialState.RUNNING}),
    # trained: complete, or mark_trained for an evaluator (EVALUATING when the worker that
    # trained it evaluates it at once); fail; requeue when given back before it started
    TrialState.RUNNING: frozenset({TrialState.COMPLETE, TrialState.TRAINED,
                                   TrialState.EVALUATING, TrialState.FAILED,
                                   TrialState.LOST, TrialState.QUEUED}),
    # claimed by an evaluator (start_evaluation)
    TrialState.TRAINED: frozenset({TrialState.EVALUATING}),
    # evaluated: complete; fail; requeue (back to TRAINED) when the evaluator is gone
    TrialState.EVALUATING: frozenset({TrialState.COMPLETE, TrialState.FAILED,
                                      TrialState.LOST, TrialState.TRAINED}),
    TrialState.COMPLETE: frozenset(),
    TrialState.FAILED: frozenset(),
    TrialState.LOST: frozenset(),
}
"""Every legal change of a trial's state; the storage's transitions check against it."""
