"""The pure decision step: finished trial + population snapshot + seeded rng -> Decision."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pbtune._errors import ConfigError
from pbtune._imports import import_object
from pbtune.space import SearchSpace
from pbtune.strategies._decision import Continue, Decision, Exploit, Explore, Stop
from pbtune.strategies._exploit import ExploitStrategy, Mode, Tournament, Truncation
from pbtune.strategies._explore import ExploreStrategy, Perturb, Resample, _check_keys
from pbtune.strategies._history import NO_HISTORY, History
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
) -> Decision:
    """What the member of ``finished`` does next.

    `Continue`, or `Exploit`: copy the parent that ``exploit`` chose and explore its
    params; on a plateau (every member's fitness equal) `Explore`: new params in place.
    ``population`` holds each member's latest COMPLETE trial (``finished`` among them);
    ``history`` the recent results, for strategies with a ``history_size``: a `History`,
    or a function that reads it, called only when a strategy that asked for one is about
    to use it (most decisions are a plain continue and need none).
    The result depends only on the arguments, so a restarted controller decides the same.
    """
    if finished.end_step >= max_steps:
        return Stop("reached max_steps")
    # A member that reached max_steps has nothing left to train: copying it would give a
    # trial of zero steps.
    candidates = [t for t in population if t.end_step < max_steps or t.id == finished.id]
    if callable(history) and exploit.history_size > 0:
        history = history()
    seen = history if isinstance(history, History) else NO_HISTORY
    parent = exploit.select_from(finished, candidates, mode, rng, history=seen)
    if parent.id == finished.id and not (exploit.explore_on_plateau
                                          and _flat(finished, candidates)):
        return Continue()
    # Copy the chosen parent and explore its params. When every member scores the same
    # (a plateau, e.g. every member at accuracy 0 while its lr is far too high), selection
    # has nothing to go on and nobody would ever copy: standing still would never leave
    # the plateau, so the member explores in place, from its own checkpoint.
    if callable(history) and explore.history_size > 0:
        seen = history()
    params = space.validate(
        explore.explore_from(parent, space, rng, history=seen, mode=mode))
    if parent.id == finished.id:
        return Explore(params=params)
    return Exploit(parent_id=parent.id, params=params)


def _flat(finished: FrozenTrial, population: Sequence[FrozenTrial]) -> bool:
    """Whether at least two members have results and they all score exactly the same."""
    return len(population) >= 2 and all(t.fitness == finished.fitness for t in population)


def exploit_from_dict(data: Mapping[str, Any] | str) -> ExploitStrategy:
    """Rebuild an exploit strategy from its stored (or YAML) form."""
    fields = dict(data) if isinstance(data, Mapping) else {"type": data}
    kind = fields.get("type")
    if kind == "tournament":
        return Tournament(**_check_keys("tournament", fields, {"window"}))
    if kind == "truncation":
        return Truncation(**_check_keys("truncation", fields, {"fraction"}))
    strategy: ExploitStrategy = _import_strategy(
        fields, ExploitStrategy, "exploit", "tournament, truncation"
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


__all__ = ["Continue", "Decision", "Exploit", "Explore", "Stop", "decide"]
