"""The controller: ask, tell and heartbeat over the storage, and checkpoint handling."""

from pbtune._imports import import_object, object_ref
from pbtune.controller._config import StudyConfig
from pbtune.controller._controller import (
    DONE,
    WAIT,
    Claimed,
    Controller,
    Done,
    Role,
    Wait,
    check_metrics,
    clean_metrics,
    fitness_of,
    initial_trials,
)

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
