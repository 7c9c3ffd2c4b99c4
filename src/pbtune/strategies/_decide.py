"""The pure decision step: finished trial + population snapshot + seeded rng -> Decision."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pbtune._errors import ConfigError
from pbtune._imports import import_object
from pbtune.space import SearchSpace
from pbtune.strategies._decision import Continue, Decision, Exploit, Explore, Restart, Stop
from pbtune.strategies._early import EarlyStop, Lagging
from pbtune.strategies._exploit import (
    ExploitStrategy,
    Mode,
    MultiRate,
    Tournament,
    Truncation,
    score,
)
from pbtune.strategies._explore import ExploreStrategy, Perturb, Resample, _check_keys
from pbtune.strategies._history import NO_HISTORY, History
from pbtune.strategies._pareto import Criteria
from pbtune.strategies._pb2 import PB2
from pbtune.trial import FrozenTrial


def decide(
    finished: FrozenTrial,
    population: Sequence[FrozenTrial],
    *,
    space: SearchSpace,
    exploit: ExploitStrategy,
    explore: ExploreStrategy,
    mode: Mode,
    max_steps: int,
    rng: np.random.Generator,
    history: History | Callable[[], History] = NO_HISTORY,
    criteria: Criteria | None = None,
    early_stop: EarlyStop | None = None,
    lagging: int = 0,
) -> Decision:
    """What the member of ``finished`` does next.

    `Continue`, or `Exploit`: copy the parent that ``exploit`` chose and explore its
    params; on a plateau (every member's fitness equal) `Explore`: new params in place.
    ``population`` holds each member's latest COMPLETE trial (``finished`` among them);
    ``history`` the recent results, for strategies with a ``history_size``: a `History`,
    or a function that reads it, called only when a strategy that asked for one is about
    to use it (most decisions are a plain continue and need none).

    ``criteria`` (several objectives, constraints) turns each trial into one number that
    the strategies compare (see `Criteria.scores`); without, they compare fitness in
    ``mode``. With ``early_stop``, a member whose count (``lagging`` until now) makes
    the rule stop it gets `Restart`: a copy of a top member (`decide_next` also gives
    the new count). The result depends only on the arguments, so a restarted
    controller decides the same.
    """
    return decide_next(finished, population, space=space, exploit=exploit, explore=explore,
                       mode=mode, max_steps=max_steps, rng=rng, history=history,
                       criteria=criteria, early_stop=early_stop, lagging=lagging).decision


@dataclass(frozen=True)
class Next:
    """A decision, and the member's early-stop count after it (0 after a `Restart`, and
    without an early stop; as it was when the member is done)."""

    decision: Decision
    lagging: int


def decide_next(
    finished: FrozenTrial,
    population: Sequence[FrozenTrial],
    *,
    space: SearchSpace,
    exploit: ExploitStrategy,
    explore: ExploreStrategy,
    mode: Mode,
    max_steps: int,
    rng: np.random.Generator,
    history: History | Callable[[], History] = NO_HISTORY,
    criteria: Criteria | None = None,
    early_stop: EarlyStop | None = None,
    lagging: int = 0,
) -> Next:
    """`decide`, with the member's new early-stop count: the population is ranked once
    for both."""
    if finished.end_step >= max_steps:
        return Next(Stop("reached max_steps"), lagging)
    real = {t.id: t for t in population} | {finished.id: finished}
    finished, candidates, compare = _view(finished, population, mode, max_steps, criteria)
    count = 0
    if early_stop is not None:
        scores = _scores(finished, candidates, compare)
        count = early_stop.count(finished, candidates, scores, lagging)
        tops = [t for t in early_stop.top(candidates, scores) if t.member != finished.member]
        if early_stop.stops(count) and tops:
            parent = real[tops[int(rng.integers(len(tops)))].id]
            return Next(Restart(parent_id=parent.id, params=_explored(
                parent, space, explore, rng, history, mode)), 0)
    if callable(history) and exploit.history_size > 0:
        history = history()
    seen = history if isinstance(history, History) else NO_HISTORY
    chosen = exploit.select_from(finished, candidates, compare, rng, history=seen)
    if chosen.id == finished.id and not (exploit.explore_on_plateau
                                          and _flat(real[finished.id], candidates, real,
                                                    criteria)):
        return Next(Continue(), count)
    # Copy the chosen parent and explore its params. When every member scores the same
    # (a plateau, e.g. every member at accuracy 0 while its lr is far too high), selection
    # has nothing to go on and nobody would ever copy: standing still would never leave
    # the plateau, so the member explores in place, from its own checkpoint.
    parent = real[chosen.id]
    params = _explored(parent, space, explore, rng, history, mode)
    if parent.id == finished.id:
        return Next(Explore(params=params), count)
    return Next(Exploit(parent_id=parent.id, params=params), count)


def _view(finished: FrozenTrial, population: Sequence[FrozenTrial], mode: Mode,
          max_steps: int, criteria: Criteria | None
          ) -> tuple[FrozenTrial, list[FrozenTrial], Mode]:
    """What the strategies compare: the members that can still be copied (one that reached
    max_steps would give a trial of zero steps, one whose checkpoint is gone nothing to
    start from), and how to compare them. With
    ``criteria`` that are not one plain objective, each trial's fitness is replaced by
    the criteria's score (higher is better), so that strategies written for one number
    compare the trials as the criteria do."""
    candidates = [t for t in population if t.id == finished.id
                  or (t.end_step < max_steps and t.checkpoint_gone is None)]
    if criteria is None or criteria.plain:
        return finished, candidates, mode
    trials = [t for t in candidates if t.id != finished.id] + [finished]
    scores = criteria.scores(trials)
    view = {t.id: replace(t, fitness=scores[t.id]) for t in trials}
    return view[finished.id], [view[t.id] for t in candidates], "max"


def _scores(finished: FrozenTrial, candidates: Sequence[FrozenTrial], compare: Mode
            ) -> dict[int, float]:
    return {t.id: score(t, compare) for t in candidates} | {finished.id: score(finished,
                                                                              compare)}


def _flat(finished: FrozenTrial, population: Sequence[FrozenTrial],
          real: Mapping[int, FrozenTrial], criteria: Criteria | None) -> bool:
    """Whether at least two members have results and they are all exactly the same: the
    same fitness, or under ``criteria`` the same objectives and violation (two trials
    that merely tie on a front, neither dominating, are not a plateau)."""
    if len(population) < 2:
        return False
    if criteria is None or criteria.plain:
        return all(real[t.id].fitness == finished.fitness for t in population)

    def where(trial: FrozenTrial) -> tuple[float, tuple[float, ...]]:
        return criteria.violation(trial.metrics), criteria.values(trial)

    return all(where(real[t.id]) == where(finished) for t in population)


def _explored(parent: FrozenTrial, space: SearchSpace, explore: ExploreStrategy,
              rng: np.random.Generator, history: History | Callable[[], History],
              mode: Mode) -> dict[str, Any]:
    """New params explored from ``parent``'s (the real trial, with its own fitness)."""
    seen = history() if callable(history) and explore.history_size > 0 else history
    seen = seen if isinstance(seen, History) else NO_HISTORY
    return space.validate(explore.explore_from(parent, space, rng, history=seen, mode=mode))


def exploit_from_dict(data: Mapping[str, Any] | str) -> ExploitStrategy:
    """Rebuild an exploit strategy from its stored (or YAML) form."""
    fields = dict(data) if isinstance(data, Mapping) else {"type": data}
    kind = fields.get("type")
    if kind == "tournament":
        return Tournament(**_check_keys("tournament", fields, {"window"}))
    if kind == "truncation":
        return Truncation(**_check_keys("truncation", fields, {"fraction"}))
    if kind == "multirate":
        return MultiRate(**_check_keys("multirate", fields, {"intervals", "window"}))
    strategy: ExploitStrategy = _import_strategy(
        fields, ExploitStrategy, "exploit", "tournament, truncation, multirate"
    )
    return strategy


def explore_from_dict(data: Mapping[str, Any] | str) -> ExploreStrategy:
    """Rebuild an explore strategy from its stored (or YAML) form."""
    fields = dict(data) if isinstance(data, Mapping) else {"type": data}
    kind = fields.get("type")
    if kind == "perturb":
        return Perturb(**_check_keys("perturb", fields, {"factors", "resample_probability"}))
    if kind == "resample":
        return Resample(**_check_keys("resample", fields, set()))
    if kind == "pb2":
        settings = _check_keys("pb2", fields, {"history_size", "kappa", "min_observations",
                                                "fallback"})
        if "fallback" in settings:
            settings["fallback"] = explore_from_dict(settings["fallback"])
        return PB2(**settings)
    strategy: ExploreStrategy = _import_strategy(
        fields, ExploreStrategy, "explore", "perturb, resample, pb2"
    )
    return strategy


def _import_strategy(fields: dict[str, Any], base: type[Any], what: str, known: str) -> Any:
    # A user's own strategy class is stored as "module:QualName" with its settings.
    kind = fields.pop("type", None)
    if not isinstance(kind, str) or ":" not in kind:
        raise ConfigError(
            f"{what} type must be one of {known}, or 'module:Class' for your own, got {kind!r}"
        )
    target = import_object(kind, f"{what} strategy")
    if not (isinstance(target, type) and issubclass(target, base)):
        raise ConfigError(f"{kind!r} is not a subclass of {base.__name__}")
    try:
        return target(**fields)
    except TypeError as error:
        raise ConfigError(f"{what} strategy {kind!r}: {error}") from None


def early_stop_from_dict(data: Mapping[str, Any] | str | None) -> EarlyStop | None:
    """Rebuild an early-stop rule from its stored (or YAML) form; None: no early stop."""
    if data is None:
        return None
    fields = dict(data) if isinstance(data, Mapping) else {"type": data}
    if fields.get("type") == "lagging":
        return Lagging(**_check_keys("lagging", fields, {"generations", "fraction"}))
    rule: EarlyStop = _import_strategy(fields, EarlyStop, "early_stop", "lagging")
    return rule


__all__ = ["Continue", "Decision", "Exploit", "Explore", "Restart", "Stop", "decide"]
