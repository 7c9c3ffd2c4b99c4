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

from typing import Any

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
from pbtune.controller import SettingsConflictError
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
]


def __getattr__(name: str) -> Any:
    """``pbtune.simulate`` (`pbtune.simulation.simulate`), imported when first used, so
    that ``import pbtune`` does not load the simulator."""
    if name == "simulate":
        from pbtune.simulation import simulate

        return simulate
    raise AttributeError(f"module 'pbtune' has no attribute {name!r}")
