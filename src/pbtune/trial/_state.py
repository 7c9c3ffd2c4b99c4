from __future__ import annotations

import enum


class TrialState(str, enum.Enum):
    """Where a trial is in its life.

    QUEUED -> RUNNING -> COMPLETE | FAILED; in a study with an ``evaluate`` function,
    RUNNING -> TRAINED (checkpoint written, waiting for an evaluator) -> EVALUATING ->
    COMPLETE | FAILED.
    """

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    TRAINED = "TRAINED"
    EVALUATING = "EVALUATING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"

    @property
    def is_active(self) -> bool:
        """Not finished: the study is not done while a trial is in this state."""
        return self not in (TrialState.COMPLETE, TrialState.FAILED)

    @property
    def is_held(self) -> bool:
        """Held by a worker under a claim (training or evaluating), with a heartbeat."""
        return self in (TrialState.RUNNING, TrialState.EVALUATING)
