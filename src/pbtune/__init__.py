"""pbtune: asynchronous, black-box Population Based Training with a durable controller.

Example::

    import pbtune

    def train(trial: pbtune.Trial) -> dict[str, float]:
        ...  # train from trial.start_step to trial.end_step, save to trial.checkpoint_dir
        return {"accuracy": 0.9}

    study = pbtune.create_study(
        name="demo", space={"lr": pbtune.Float(1e-4, 1e-1, log=True)},
        metric="accuracy", mode="max", population_size=8, steps_per_trial=100,
        max_steps=1000,
    )
    study.optimize(train, workers=2)
    print(study.best_trial, study.schedule())
"""

import importlib
from typing import TYPE_CHECKING, Any

from pbtune._errors import (
    CheckpointError,
    CheckpointGoneError,
    ConfigError,
    DuplicatedStudyError,
    MissingExtraError,
    PbtuneError,
    SearchSpaceError,
    StorageError,
    StudyFailedError,
    StudyNotFoundError,
    TrialFailedError,
)
from pbtune._version import __version__

if TYPE_CHECKING:
    from pbtune.controller import SettingsConflictError
    from pbtune.simulation import simulate
    from pbtune.space import Choice, Float, Int, SearchSpace
    from pbtune.storages import Storage, StudyState
    from pbtune.strategies import (
        PB2,
        EarlyStop,
        ExploitStrategy,
        ExploreStrategy,
        Lagging,
        MultiRate,
        NoImprovement,
        Perturb,
        Resample,
        StopRule,
        Target,
        TotalSteps,
        Tournament,
        Truncation,
        hypervolume,
    )
    from pbtune.study import (
        ReplayResult,
        Study,
        StudyInUseError,
        StudySummary,
        create_study,
        delete_study,
        load_schedule,
        load_study,
        replay,
    )
    from pbtune.trial import FrozenTrial, Segment, Trial, TrialState
    from pbtune.worker import Command, RayBackend

# Where each name of the API lives. `import pbtune` loads only the errors and the version:
# the rest (SQLAlchemy and NumPy with it, most of the time an import takes) loads when a
# name is first used, ``pbtune.create_study`` or ``from pbtune import Float``.
_LAZY = {
    "SettingsConflictError": "pbtune.controller",
    "Choice": "pbtune.space",
    "Float": "pbtune.space",
    "Int": "pbtune.space",
    "SearchSpace": "pbtune.space",
    "Storage": "pbtune.storages",
    "StudyState": "pbtune.storages",
    "PB2": "pbtune.strategies",
    "EarlyStop": "pbtune.strategies",
    "ExploitStrategy": "pbtune.strategies",
    "ExploreStrategy": "pbtune.strategies",
    "Lagging": "pbtune.strategies",
    "MultiRate": "pbtune.strategies",
    "NoImprovement": "pbtune.strategies",
    "Perturb": "pbtune.strategies",
    "Resample": "pbtune.strategies",
    "StopRule": "pbtune.strategies",
    "Target": "pbtune.strategies",
    "TotalSteps": "pbtune.strategies",
    "Tournament": "pbtune.strategies",
    "Truncation": "pbtune.strategies",
    "hypervolume": "pbtune.strategies",
    "ReplayResult": "pbtune.study",
    "Study": "pbtune.study",
    "StudyInUseError": "pbtune.study",
    "StudySummary": "pbtune.study",
    "create_study": "pbtune.study",
    "delete_study": "pbtune.study",
    "load_schedule": "pbtune.study",
    "load_study": "pbtune.study",
    "replay": "pbtune.study",
    "FrozenTrial": "pbtune.trial",
    "Segment": "pbtune.trial",
    "Trial": "pbtune.trial",
    "TrialState": "pbtune.trial",
    "Command": "pbtune.worker",
    "RayBackend": "pbtune.worker",
    "simulate": "pbtune.simulation",
}
# What ``import pbtune`` made reachable as attributes when it imported them all at once.
_SUBPACKAGES = ("checkpoints", "controller", "simulation", "space", "storages", "strategies",
                "study", "trial", "worker")

__all__ = [
    "PB2",
    "CheckpointError",
    "CheckpointGoneError",
    "Choice",
    "Command",
    "ConfigError",
    "DuplicatedStudyError",
    "EarlyStop",
    "ExploitStrategy",
    "ExploreStrategy",
    "Float",
    "FrozenTrial",
    "Int",
    "Lagging",
    "MissingExtraError",
    "MultiRate",
    "NoImprovement",
    "PbtuneError",
    "Perturb",
    "RayBackend",
    "ReplayResult",
    "Resample",
    "SearchSpace",
    "SearchSpaceError",
    "Segment",
    "SettingsConflictError",
    "StopRule",
    "Storage",
    "StorageError",
    "Study",
    "StudyFailedError",
    "StudyInUseError",
    "StudyNotFoundError",
    "StudyState",
    "StudySummary",
    "Target",
    "TotalSteps",
    "Tournament",
    "Trial",
    "TrialFailedError",
    "TrialState",
    "Truncation",
    "__version__",
    "create_study",
    "delete_study",
    "hypervolume",
    "load_schedule",
    "load_study",
    "replay",
    "simulate",
]


if not TYPE_CHECKING:  # type checkers read the imports above, and see no other name

    def __getattr__(name: str) -> Any:
        """Import the part of pbtune that defines ``name`` on its first use."""
        if name in _LAZY:
            value = getattr(importlib.import_module(_LAZY[name]), name)
        elif name in _SUBPACKAGES:
            value = importlib.import_module(f"{__name__}.{name}")
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value  # the next use is a plain lookup
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
