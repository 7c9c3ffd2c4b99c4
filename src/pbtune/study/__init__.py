"""The study API: create, load, optimize, read results, replay a schedule (and read or
write it as a file)."""

from pbtune.study._best import best_on
from pbtune.study._create import create_study, load_study
from pbtune.study._lifecycle import DeletedStudy, StudyInUseError, delete_study
from pbtune.study._open import DEFAULT_STORAGE, open_storage
from pbtune.study._progress import (
    ProgressDisplay,
    StudyProgress,
    best_trial,
    default_trial,
    front,
    measure,
)
from pbtune.study._replay import ReplayResult, replay
from pbtune.study._schedule import load_schedule, schedule_csv, schedule_json
from pbtune.study._scores import Scores, criteria_of, front_text
from pbtune.study._study import Study
from pbtune.study._summary import StudySummary, summarize
from pbtune.study._text import counts_text, fitness_label, next_commands, storage_text

__all__ = [
    "DEFAULT_STORAGE",
    "DeletedStudy",
    "ProgressDisplay",
    "ReplayResult",
    "Scores",
    "Study",
    "StudyInUseError",
    "StudyProgress",
    "StudySummary",
    "best_on",
    "best_trial",
    "counts_text",
    "create_study",
    "criteria_of",
    "default_trial",
    "delete_study",
    "fitness_label",
    "front",
    "front_text",
    "load_schedule",
    "load_study",
    "measure",
    "next_commands",
    "open_storage",
    "replay",
    "schedule_csv",
    "schedule_json",
    "storage_text",
    "summarize",
]
