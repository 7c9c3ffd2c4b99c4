"""Explore: choose the params of a member that copied another."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pbtune._errors import ConfigError
from pbtune.space import Choice, SearchSpace
from pbtune.strategies._exploit import Mode
from pbtune.strategies._history import History
from pbtune.trial import FrozenTrial


class ExploreStrategy(abc.ABC):
    """Base class of explore strategies; one abstract method.

    A strategy that learns from recent results (PB2) sets ``history_size`` to the number of
    recent results it reads and overrides `explore_from`; the controller then hands it a
    `History` read in the decision's transaction. With the default 0 nothing is read.
    """

    history_size: int = 0

    @abc.abstractmethod
    def explore(
        self, params: Mapping[str, Any], space: SearchSpace, rng: np.random.Generator
    ) -> dict[str, Any]:
        """New params near ``params``; every value stays inside its bounds and
        ``mutable=False`` params never change."""

    def explore_from(
        self,
        parent: FrozenTrial,
        space: SearchSpace,
        rng: np.random.Generator,
        *,
        history: History,
        mode: Mode,
    ) -> dict[str, Any]:
        """The params of a member that goes on from ``parent``'s checkpoint (a copy, or
        its own trial on a plateau). By default `explore` of the parent's params."""
        return self.explore(parent.params, space, rng)

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON form, stored with the study."""


@dataclass(frozen=True)
class Perturb(ExploreStrategy):
    """Jaderberg et al.'s perturb-or-resample explore.

    Each mutable param is resampled from its prior with ``resample_probability``; otherwise
    a `Float` or `Int` is multiplied by one of ``factors`` (drawn uniformly) and clipped to
    its bounds, an ordered `Choice` steps to a neighbour and an unordered one is resampled.
    """

    factors: Sequence[float] = (0.8, 1.25)
    resample_probability: float = 0.25

    def __post_init__(self) -> None:
        factors = tuple(self.factors) if isinstance(self.factors, Sequence) else ()
        if not factors or not all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in factors
        ):
            raise ConfigError(
                f"Perturb(factors=...) must be a non-empty list of positive numbers, "
                f"got {self.factors!r}"
            )
        object.__setattr__(self, "factors", tuple(float(f) for f in factors))
        p = self.resample_probability
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise ConfigError(
                f"Perturb(resample_probability=...) must be in [0, 1], got {p!r}"
            )

    def explore(
        self, params: Mapping[str, Any], space: SearchSpace, rng: np.random.Generator
    ) -> dict[str, Any]:
        new = dict(params)
        for name, param in space.items():
            if not param.mutable:
                continue
            if rng.random() < self.resample_probability:
                new[name] = param.sample(rng)
            elif isinstance(param, Choice):
                new[name] = param.neighbour(params[name], rng) if param.ordered else (
                    param.sample(rng)
                )
            else:
                factor = self.factors[int(rng.integers(len(self.factors)))]
                new[name] = param.perturb(params[name], factor)
        return new

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "perturb",
            "factors": list(self.factors),
            "resample_probability": self.resample_probability,
        }


@dataclass(frozen=True)
class Resample(ExploreStrategy):
    """Draw every mutable param afresh from its prior (random search on exploit)."""

    def explore(
        self, params: Mapping[str, Any], space: SearchSpace, rng: np.random.Generator
    ) -> dict[str, Any]:
        return {
            name: param.sample(rng) if param.mutable else params[name]
            for name, param in space.items()
        }

    def to_dict(self) -> dict[str, Any]:
        return {"type": "resample"}


def _check_keys(kind: str, data: Mapping[str, Any], allowed: set[str]) -> dict[str, Any]:
    extra = set(data) - allowed - {"type"}
    if extra:
        raise ConfigError(f"{kind}: unknown settings {sorted(extra)}; allowed: {sorted(allowed)}")
    return {k: v for k, v in data.items() if k != "type"}
