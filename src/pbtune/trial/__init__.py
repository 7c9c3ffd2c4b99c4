"""Trials: the live `Trial` handle, the stored `FrozenTrial`, `TrialState` and `Segment`."""

from pbtune.trial._frozen import FrozenTrial, Segment
from pbtune.trial._state import TRANSITIONS, TrialState
from pbtune.trial._trial import TrainFn, Trial

__all__ = ["TRANSITIONS", "FrozenTrial", "Segment", "TrainFn", "Trial", "TrialState"]
