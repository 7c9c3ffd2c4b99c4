"""Trials: the live `Trial` handle, the stored `FrozenTrial`, `TrialState` and `Segment`."""

from pbtune.trial._frozen import FrozenTrial, Segment
from pbtune.trial._state import TrialState
from pbtune.trial._trial import Trial

__all__ = ["FrozenTrial", "Segment", "Trial", "TrialState"]
