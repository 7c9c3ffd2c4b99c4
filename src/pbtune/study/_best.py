"""`Study.best_trial_by`: the best of the final trials on one objective, or a weighting."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from pbtune._errors import ConfigError
from pbtune.controller import StudyConfig
from pbtune.strategies import Bound, Criteria, Mode
from pbtune.trial import FrozenTrial


def best_by(trials: Sequence[FrozenTrial], value: Callable[[FrozenTrial], float | None],
            mode: Mode, constraints: Sequence[Bound] = ()) -> FrozenTrial | None:
    """The best of ``trials`` on one number, ``value(trial)`` (trials without one are left
    out), in ``mode``; feasible trials first (Deb's rule); ties go to the later step, then
    the earlier trial. None when no trial has a value."""
    scored = []
    for trial in sorted(trials, key=lambda t: (-t.end_step, t.id)):
        number = value(trial)
        if number is not None:
            scored.append(replace(trial, fitness=number))
    ranked = Criteria((("value", mode),), tuple(constraints)).ranked(scored)
    return next(t for t in trials if t.id == ranked[0].id) if ranked else None


def best_on(criteria: Criteria, trials: Sequence[FrozenTrial], objective: str
            ) -> FrozenTrial | None:
    """The best of ``trials`` on one ``objective`` of a study of several (feasible ones
    first); ties go to the later step, then the earlier trial."""
    mode = dict(criteria.objectives)[objective]
    return best_by(trials, lambda t: (t.metrics or {}).get(objective), mode,
                   criteria.constraints)


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
        mode: Mode = (config.objectives or {objective: config.mode})[objective]
        best = best_by(trials, lambda t: _value(t, objective, config), mode,
                       config.criteria.constraints)
    else:
        assert weights is not None
        _check_weights(weights)
        best = best_by(trials, lambda t: sum(w * _metric(t, name) for name, w in
                                             weights.items()), "max",
                       config.criteria.constraints)
    if best is None:
        raise ConfigError(f"study {study!r} has no COMPLETE trial yet")
    return best


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
