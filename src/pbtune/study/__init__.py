"""The study API: create, load, optimize, read results, replay a schedule."""

from pbtune.study._progress import ProgressDisplay, StudyProgress, best_trial, measure
from pbtune.study._replay import ReplayResult, load_schedule, replay
from pbtune.study._study import DEFAULT_STORAGE, Study, create_study, load_study, open_storage

__all__ = [
    "DEFAULT_STORAGE",
    "ProgressDisplay",
    "ReplayResult",
    "Study",
    "StudyProgress",
    "best_trial",
    "create_study",
    "load_schedule",
    "load_study",
    "measure",
    "open_storage",
    "replay",
]
