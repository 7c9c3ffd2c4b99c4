"""The controller: one study's protocol over its storage and checkpoints.

`Controller.ask` claims work for a worker, `Controller.start` hands it the `TrialRun` that
calls the user's function, commits the checkpoint and tells the result, and the tell decides
the member's next trial in the same transaction. Heartbeats, lost trials and releases are
the controller's too; a worker only adds the threads.
"""

from pbtune._imports import import_object, object_ref
from pbtune.controller._changes import (
    CHANGEABLE,
    SettingChange,
    SettingsConflictError,
    compare_settings,
)
from pbtune.controller._claims import DONE, WAIT, Claimed, Done, Result, Role, Wait
from pbtune.controller._config import StudyConfig, directions, stop_context
from pbtune.controller._controller import Controller
from pbtune.controller._members import initial_trials
from pbtune.controller._metrics import check_metrics
from pbtune.controller._revise import Revision, revise_study
from pbtune.controller._run import TrialRun
from pbtune.controller._stopping import USER_STOP, revive, stop_study

__all__ = [
    "CHANGEABLE",
    "DONE",
    "USER_STOP",
    "WAIT",
    "Claimed",
    "Controller",
    "Done",
    "Result",
    "Revision",
    "Role",
    "SettingChange",
    "SettingsConflictError",
    "StudyConfig",
    "TrialRun",
    "Wait",
    "check_metrics",
    "compare_settings",
    "directions",
    "import_object",
    "initial_trials",
    "object_ref",
    "revise_study",
    "revive",
    "stop_context",
    "stop_study",
]
