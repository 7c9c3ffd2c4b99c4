"""`Study.best_trial_by`: the best of the final trials on one objective, or a weighting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from pbtune._errors import ConfigError
from pbtune.controller import StudyConfig
from pbtune.strategies import Criteria
from pbtune.trial import FrozenTrial


def pick_best(trials: Sequence[FrozenTrial], config: StudyConfig, objective: str | None,
              weights: Mapping[str, float] | None, *, study: str) -> FrozenTrial:
    """The best of ``trials`` on ``objective`` or on the weighted sum ``weights`` (higher is
    better), feasible ones first; ties go to the later step, then the earlier trial."""
    if (objective is None) == (weights is None):
        raise ConfigError("give one of objective='name' or weights={'metric': weight, ...}")
    names = list(config.objectives or {config.metric or "fitness": config.mode})
    if objective is not None:
        if objective not in names:
            raise ConfigError(f"study {study!r} has no objective {objective!r}; its "
                              f"objectives are {', '.join(names)}")
        mode = (config.objectives or {objective: config.mode})[objective]
        score = {t.id: _value(t, objective, config) for t in trials}
    else:
        assert weights is not None
        _check_weights(weights)
        mode = "max"
        score = {t.id: sum(w * _metric(t, name) for name, w in weights.items())
                 for t in trials}
    criteria = Criteria(((objective or "weighted", mode),), config.criteria.constraints)
    scored = [replace(t, fitness=score[t.id])
              for t in sorted(trials, key=lambda t: (-t.end_step, t.id))]
    ranked = criteria.ranked(scored)
    if not ranked:
        raise ConfigError(f"study {study!r} has no COMPLETE trial yet")
    return next(t for t in trials if t.id == ranked[0].id)


def _value(trial: FrozenTrial, objective: str, config: StudyConfig) -> float:
    if config.objectives is None:  # the one objective is the fitness
        assert trial.fitness is not None, "a COMPLETE trial has a fitness"
        return trial.fitness
    return _metric(trial, objective)


def _metric(trial: FrozenTrial, name: str) -> float:
    metrics = trial.metrics or {}
    if name not in metrics:
        raise ConfigError(f"trial {trial.id} has no metric {name!r}; its metrics are "
                          f"{sorted(metrics)}")
    return float(metrics[name])


def _check_weights(weights: Mapping[str, float]) -> None:
    if not isinstance(weights, Mapping) or not weights or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights.values()):
        raise ConfigError(f"weights must be a non-empty dict of metric name to number, e.g. "
                          f"{{'accuracy': 1.0, 'latency_ms': -0.001}}; got {weights!r}")
