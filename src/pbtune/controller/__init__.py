"""The controller: ask, tell and heartbeat over the storage, and checkpoint handling."""

from pbtune._imports import import_object, object_ref
from pbtune.controller._claims import DONE, WAIT, Claimed, Done, Role, Wait
from pbtune.controller._config import StudyConfig
from pbtune.controller._controller import Controller
from pbtune.controller._members import initial_trials
from pbtune.controller._metrics import check_metrics, clean_metrics, fitness_of
from pbtune.controller._run import TrialRun, error_text

__all__ = [
    "DONE",
    "WAIT",
    "Claimed",
    "Controller",
    "Done",
    "Role",
    "StudyConfig",
    "TrialRun",
    "Wait",
    "check_metrics",
    "clean_metrics",
    "error_text",
    "fitness_of",
    "import_object",
    "initial_trials",
    "object_ref",
]
