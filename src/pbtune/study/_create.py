"""The user's entry points: `create_study` and `load_study`, which return a `Study`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pbtune import checkpoints
from pbtune._errors import ConfigError, DuplicatedStudyError
from pbtune._imports import refuse_study_while_imported
from pbtune.controller import StudyConfig, initial_trials
from pbtune.space import Param, SearchSpace
from pbtune.strategies import (
    EarlyStop,
    ExploitStrategy,
    ExploreStrategy,
    Mode,
    Perturb,
    StopRule,
    Tournament,
    stop_rules,
)
from pbtune.study._lifecycle import storage_argument
from pbtune.study._open import DEFAULT_STORAGE, StorageLike, open_storage
from pbtune.study._study import Study
from pbtune.trial import Trial

MAX_STUDY_NAME_LENGTH = 512  # the storage's study name column


def create_study(
    name: str,
    *,
    space: Mapping[str, Param] | SearchSpace,
    storage: StorageLike = DEFAULT_STORAGE,
    metric: str | None = None,
    mode: Mode = "max",
    fitness: Callable[[Mapping[str, float]], float] | None = None,
    evaluate: Callable[[Trial], Mapping[str, float]] | str | None = None,
    population_size: int = 8,
    steps_per_trial: int = 100,
    max_steps: int = 1000,
    exploit: ExploitStrategy | None = None,
    explore: ExploreStrategy | None = None,
    checkpoint_root: str | Path = "pbtune_checkpoints",
    seed: int = 0,
    load_if_exists: bool = False,
    max_retries: int = 3,
    retry_delay: float = 1.0,
    keep_best: int = 3,
    heartbeat_timeout: float = 60.0,
    trial_timeout: float | None = None,
    objectives: Mapping[str, Mode] | None = None,
    constraints: Mapping[str, Mapping[str, float]] | None = None,
    early_stop: EarlyStop | None = None,
    stop: StopRule | Sequence[StopRule] | None = None,
) -> Study:
    """Create a PBT study (or load it, with ``load_if_exists=True``).

    An existing study loaded with ``load_if_exists`` takes a changed ``max_steps`` (raised:
    every member trains on from its latest checkpoint, as `Study.extend`; lowered: no
    lower than its trials reach) and changed ``max_retries``, ``retry_delay``,
    ``keep_best``, ``heartbeat_timeout``, ``trial_timeout`` and ``stop``; any other
    difference raises
    `pbtune.SettingsConflictError`, which lists each as ``name: stored -> given``.

    ``stop`` is a stop rule or a list of them (`pbtune.Target`, `pbtune.NoImprovement`,
    `pbtune.TotalSteps`, or a `pbtune.StopRule` of your own): checked at each COMPLETE
    trial, the first that fires ends the study (COMPLETE, with the reason in its
    summary and `pbtune status`) before its budget. Changed rules judge the study's past
    as if they had always been its rules: a study a rule had stopped runs again if the
    new ones would not have stopped it.

    Every member trains to ``max_steps`` in segments of ``steps_per_trial``: the
    progress the summary counts is ``population_size * max_steps`` steps. Compute is
    somewhat more: a member that copies one behind it trains those steps again.
    ``storage`` is a URL (``sqlite:///file.db``, ``postgresql://...``), a `Storage`, or
    None for an in-memory study.

    ``evaluate`` (a module-level function or ``"file.py:name"``) scores each trial after
    its training, as Li et al.'s and FIRE-PBT's separate evaluators do: a trained trial
    waits (TRAINED) until a worker runs ``evaluate(trial)`` on its committed checkpoint
    (``trial.checkpoint_dir``, read-only); those metrics, merged over training's, give
    the fitness, so it can be a score training never computes (BLEU, an external
    program's verdict). Any worker evaluates, or dedicated ones
    (``optimize(..., evaluators=K)``); an evaluator that dies costs only the evaluation.

    ``objectives`` ({"accuracy": "max", "latency_ms": "min"}, instead of ``metric`` and
    ``mode``) makes a study of several objectives: exploit compares trials by Pareto
    dominance, ties broken by crowding distance on the front (see
    `pbtune.strategies.Criteria`), and `Study.best_trials` is the front of the final
    population. ``constraints`` ({"memory_mb": {"max": 2048}}) bound metrics: a feasible
    trial beats any infeasible one, and of two infeasible ones the smaller violation wins.
    A weighted sum of metrics stays possible as one ``fitness`` function.

    A failed trial is retried up to ``max_retries`` times in a row per member, each retry
    after a backoff: ``retry_delay`` seconds after the first failure, doubled after each
    further one (at most 300 s; 0: at once), so a passing outage (a full disk, a lost
    mount) does not use up every retry in a second. A study that failed that way runs
    again once the cause is fixed: ``optimize`` gives the members that gave up
    ``max_retries`` fresh tries from their last good checkpoint.

    ``early_stop`` (e.g. ``pbtune.Lagging(generations=3)``) stops a member that keeps
    ranking at the bottom: its slot restarts from a copy of a top member with explored
    params (a ``restart`` decision), keeping its budget.

    Example::

        study = pbtune.create_study(
            name="digits", space={"lr": pbtune.Float(1e-4, 1e-1, log=True)},
            metric="accuracy", mode="max", population_size=8,
            steps_per_trial=100, max_steps=3000, stop=pbtune.Target(accuracy=0.99),
        )
        tradeoff = pbtune.create_study(
            name="tradeoff", space={"lr": pbtune.Float(1e-4, 1e-1, log=True)},
            objectives={"accuracy": "max", "latency_ms": "min"},
            constraints={"memory_mb": {"max": 2048}},
            early_stop=pbtune.Lagging(generations=3),
        )
    """
    refuse_study_while_imported("creates a study")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"study name must be a non-empty string, got {name!r}")
    if len(name) > MAX_STUDY_NAME_LENGTH:
        raise ConfigError(
            f"study name is {len(name)} characters long; at most {MAX_STUDY_NAME_LENGTH} fit "
            "in the storage"
        )
    config = StudyConfig(
        space=SearchSpace(space),
        metric=metric,
        mode=mode,
        fitness=fitness,
        evaluate=evaluate,
        population_size=population_size,
        steps_per_trial=steps_per_trial,
        max_steps=max_steps,
        exploit=exploit if exploit is not None else Tournament(),
        explore=explore if explore is not None else Perturb(),
        checkpoint_root=checkpoints.resolve_root(checkpoint_root),
        seed=seed,
        max_retries=max_retries,
        retry_delay=retry_delay,
        keep_best=keep_best,
        heartbeat_timeout=heartbeat_timeout,
        trial_timeout=trial_timeout,
        objectives=objectives,
        constraints=constraints,
        early_stop=early_stop,
        stop=stop_rules(stop),
    )
    checkpoints.check_root(config.checkpoint_root)
    store = open_storage(storage)
    directory = checkpoints.study_dir_name(name, uuid.uuid4().hex)
    try:
        record = store.create_study(
            name, config.to_dict(), directory, initial_trials(config), store.clock.time()
        )
    except DuplicatedStudyError:
        if not load_if_exists:
            raise DuplicatedStudyError(
                f"a study named {name!r} exists in {store!r}; pass load_if_exists=True to "
                "continue it, or choose another name"
            ) from None
        study = load_study(name, storage=store, fitness=fitness,
                           evaluate=evaluate if callable(evaluate) else None)
        # Safe settings and a changed budget are taken; anything else is refused.
        study._revise(config.to_dict(), storage=storage_argument(storage, store))
        return study
    return Study(store, record, config)


def load_study(
    name: str,
    *,
    storage: StorageLike = DEFAULT_STORAGE,
    fitness: Callable[[Mapping[str, float]], float] | None = None,
    evaluate: Callable[[Trial], Mapping[str, float]] | None = None,
) -> Study:
    """Open an existing study, e.g. to read its results or continue it after a crash.

    ``fitness`` and ``evaluate``: the functions the study was created with, where they
    cannot be imported by their recorded names (e.g. defined in a notebook)."""
    store = open_storage(storage)
    record = store.get_study(name)
    config = StudyConfig.from_dict(record.config, fitness=fitness, evaluate=evaluate)
    return Study(store, record, config)



