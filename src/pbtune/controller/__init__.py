"""The controller: ask, tell and heartbeat over the storage, and checkpoint handling."""

from pbtune._imports import import_object, object_ref
from pbtune.controller._claims import DONE, WAIT, Claimed, Done, Role, Wait
from pbtune.controller._config import StudyConfig
from pbtune.controller._controller import Controller
from pbtune.controller._members import initial_trials
from pbtune.controller._metrics import check_metrics, clean_metrics, fitness_of

__all__ = [
    "DONE",
    "WAIT",
    "Claimed",
    "Controller",
    "Done",
    "Role",
    "StudyConfig",
    "Wait",
    "check_metrics",
    "clean_metrics",
    "fitness_of",
    "import_object",
    "initial_trials",
    "object_ref",
]
