"""PB2: explore by a time-varying GP bandit over the population's recent results.

Parker-Holder et al., "Provably Efficient Online Hyperparameter Optimization with
Population-Based Bandits" (NeurIPS 2020), with the categories of PB2-Mix ("Tuning Mixed Input
Hyperparameters on the Fly for Efficient Population Based AutoRL", NeurIPS 2021).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np

from pbtune._errors import ConfigError
from pbtune.space import Choice, Float, Int, Param, SearchSpace
from pbtune.strategies._exploit import Mode
from pbtune.strategies._explore import ExploreStrategy, Perturb
from pbtune.strategies._gp import TimeVaryingGP
from pbtune.strategies._history import History, Observation
from pbtune.trial import FrozenTrial

MAX_HISTORY = 512  # the GP's cost grows with the cube of the window, inside a transaction
_TEMPERATURE = 0.1  # of the softmax over the categories' mean rewards (in [0, 1])
_CANDIDATES = 256
_REFINE = ((0.1, 32), (0.03, 32))  # (radius, samples per point) of the local search rounds
_TOP = 4


@dataclass(frozen=True)
class PB2(ExploreStrategy):
    """Population-Based Bandits: new params by a GP upper confidence bound.

    From the ``history_size`` newest results of the population it models the change of
    fitness per step over a segment as a function of when the segment started, the fitness
    it started from and its params, with a kernel that lets old results fade (see
    ``_gp.py``). The member's new params maximise the upper confidence bound
    ``mean + kappa * std`` at its own start (the parent's end step and fitness), inside
    the bounds:

    - `Float` and `Int` on their scale (log where ``log=True``); an `Int` is rounded to the
      nearest integer, never truncated, so nothing drifts toward a bound;
    - an ordered `Choice` by its position, rounded to the nearest value;
    - an unordered `Choice` by a bandit over its values, as in PB2-Mix: each value's mean
      reward over the window (the standardized change, faded like the GP's data, with a
      prior of one neutral result) gives softmax weights, mixed with uniform exploration
      at EXP3's rate ``sqrt(K ln K / ((e - 1) n))``; the GP then fits the rest given it;
    - ``mutable=False`` params keep the parent's values.

    Trials still running count as seen for the confidence bound (their points lower the
    variance where they are), so parallel members spread out instead of all picking the
    same point. ``kappa=None`` uses ``sqrt(0.2 + ln(max(1, 0.4 n)))`` for ``n`` results,
    the schedule of PB2's reference code. With fewer than ``min_observations`` usable
    results (those that warm-started from a trial with a fitness: none in the first
    generation), ``fallback`` explores instead (by default `Perturb`).

    The decision is a pure function of the history and the seeded generator. Example::

        pbtune.create_study(..., explore=pbtune.PB2())   # YAML: explore: {type: pb2}
    """

    history_size: int = 64
    kappa: float | None = None
    min_observations: int = 4
    fallback: ExploreStrategy = field(default_factory=Perturb)

    def __post_init__(self) -> None:
        size = self.history_size
        if not _is_int(size) or not 2 <= size <= MAX_HISTORY:
            raise ConfigError(
                f"PB2(history_size=...) must be an int in [2, {MAX_HISTORY}], got {size!r}")
        if self.kappa is not None and not (
            isinstance(self.kappa, (int, float)) and not isinstance(self.kappa, bool)
            and math.isfinite(self.kappa) and self.kappa >= 0
        ):
            raise ConfigError(
                f"PB2(kappa=...) must be None or a finite number >= 0, got {self.kappa!r}")
        if not _is_int(self.min_observations) or self.min_observations < 1:
            raise ConfigError(f"PB2(min_observations=...) must be an int >= 1, "
                              f"got {self.min_observations!r}")
        if not isinstance(self.fallback, ExploreStrategy):
            raise ConfigError(f"PB2(fallback=...) must be an explore strategy such as "
                              f"pbtune.Perturb(), got {self.fallback!r}")

    def explore(self, params: Any, space: SearchSpace, rng: np.random.Generator
                ) -> dict[str, Any]:
        """Without a history (a direct call), the fallback's explore."""
        return self.fallback.explore(params, space, rng)

    def explore_from(
        self,
        parent: FrozenTrial,
        space: SearchSpace,
        rng: np.random.Generator,
        *,
        history: History,
        mode: Mode,
    ) -> dict[str, Any]:
        seen = [o for o in history.observations
                if o.start_fitness is not None and o.end_step > o.start_step]
        if len(seen) < self.min_observations or parent.fitness is None:
            return self.fallback.explore_from(parent, space, rng, history=history, mode=mode)
        return _Model(space, seen, parent, mode, self.kappa).propose(history, rng)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "pb2", "history_size": self.history_size, "kappa": self.kappa,
                "min_observations": self.min_observations,
                "fallback": self.fallback.to_dict()}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Encoding:
    """Params <-> points of the unit cube: one column per number or ordered choice, one
    per value of an unordered choice (scaled so that two values are 1 apart)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.columns: dict[str, slice] = {}
        width = 0
        for name, param in space.items():
            n = len(param.choices) if _is_categorical(param) else 1
            self.columns[name] = slice(width, width + n)
            width += n
        self.width = width

    def encode(self, many: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The points of several params dicts, one row each."""
        points = np.zeros((len(many), self.width))
        for name, param in self.space.items():
            points[:, self.columns[name]] = _encode(param, [p[name] for p in many])
        return points

    def decode(self, name: str, u: float) -> Any:
        param = self.space[name]
        u = min(max(float(u), 0.0), 1.0)
        if isinstance(param, Choice):  # ordered
            return param.choices[round(u * (len(param.choices) - 1))]
        low, high = _scale(param)
        value = low + u * (high - low)
        if param.log:
            value = math.exp(value)
        return param.clip(round(value) if isinstance(param, Int) else value)


def _is_categorical(param: Param) -> TypeGuard[Choice]:
    return isinstance(param, Choice) and not param.ordered


def _scale(param: Float | Int) -> tuple[float, float]:
    if param.log:
        return math.log(param.low), math.log(param.high)
    return float(param.low), float(param.high)


def _encode(param: Param, values: list[Any]) -> np.ndarray:
    """The column (or, for an unordered choice, the columns) of ``values``."""
    if isinstance(param, Choice):
        index = np.array([param.index(v) for v in values], dtype=int)
        if param.ordered:
            return (index / max(len(param.choices) - 1, 1))[:, None]
        one_hot = np.zeros((len(values), len(param.choices)))
        one_hot[np.arange(len(values)), index] = math.sqrt(0.5)
        return one_hot
    low, high = _scale(param)
    x = np.array(values, dtype=float)
    return ((np.log(x) if param.log else x) - low)[:, None] / (high - low)


class _Model:
    """One decision: the GP fitted on the window, then the bandit and the bound maximised."""

    def __init__(self, space: SearchSpace, seen: Sequence[Observation], parent: FrozenTrial,
                 mode: Mode, kappa: float | None) -> None:
        sign = 1.0 if mode == "max" else -1.0
        self.space, self.parent = space, parent
        self.encoding = _Encoding(space)
        # Time counts segments, so the kernel's fading does not depend on steps_per_trial.
        unit = float(np.median([o.end_step - o.start_step for o in seen]))
        self.t = np.array([o.start_step / unit for o in seen])
        self.now = parent.end_step / unit
        start = np.array([sign * o.start_fitness for o in seen])  # type: ignore[operator]
        change = np.array([sign * (o.end_fitness - o.start_fitness)  # type: ignore[operator]
                           / (o.end_step - o.start_step) for o in seen])
        assert parent.fitness is not None
        # The fitness a segment starts from is a coordinate too: how fast a model improves
        # depends on how far it already is.
        low, high = min(start.min(), sign * parent.fitness), max(start.max(),
                                                                sign * parent.fitness)
        spread = high - low

        def level(f: np.ndarray) -> np.ndarray:
            return (f - low) / spread if spread > 0 else np.full_like(f, 0.5)

        self.own_level = float(level(np.array([sign * parent.fitness]))[0])
        points = self.encoding.encode([o.params for o in seen])
        self.z = np.column_stack([level(start), points])
        std = change.std()
        self.y = np.clip((change - change.mean()) / std, -2.0, 2.0) if std > 0 else (
            np.zeros_like(change))
        self.seen = seen
        self.gp = TimeVaryingGP(self.t, self.z, self.y)
        n = len(seen)
        self.kappa = kappa if kappa is not None else math.sqrt(
            0.2 + max(0.0, math.log(0.4 * n)))

    def propose(self, history: History, rng: np.random.Generator) -> dict[str, Any]:
        new = dict(self.parent.params)
        fixed = self.encoding.encode([new])[0]
        free: list[str] = []
        for name, param in self.space.items():
            if not param.mutable or (isinstance(param, Choice) and len(param.choices) == 1):
                continue
            if _is_categorical(param):
                new[name] = self._pick_value(name, param, rng)
                fixed[self.encoding.columns[name]] = _encode(param, [new[name]])[0]
            else:
                free.append(name)
        if not free:
            return new
        columns = [self.encoding.columns[name].start for name in free]
        pending = history.pending
        # The trials still running train now, from where this member starts: their
        # points are where this member should not go.
        also_z = np.column_stack([np.full(len(pending), self.own_level),
                                  self.encoding.encode([p.params for p in pending])])
        also_t = np.full(len(pending), self.now)
        bound = self._bound(fixed, columns, also_t, also_z)
        anchors = [fixed[columns]]
        anchors += [self.z[i, 1:][columns] for i in np.argsort(-self.y, kind="stable")[:3]]
        best = _maximise(bound, np.array(anchors), len(columns), rng)
        for name, u in zip(free, best, strict=True):
            new[name] = self.encoding.decode(name, u)
        return new

    def _bound(self, fixed: np.ndarray, columns: list[int], also_t: np.ndarray,
               also_z: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """The upper confidence bound at this member's start, as a function of the free
        coordinates (rows of a matrix)."""
        gp, kappa = self.gp, self.kappa
        std = gp.std_at(also_t, also_z)

        def bound(u: np.ndarray) -> np.ndarray:
            points = np.tile(fixed, (len(u), 1))
            points[:, columns] = u
            z = np.column_stack([np.full(len(u), self.own_level), points])
            t = np.full(len(u), self.now)
            return gp.mean(t, z) + kappa * std(t, z)

        return bound

    def _pick_value(self, name: str, param: Choice, rng: np.random.Generator) -> Any:
        """PB2-Mix's bandit over the values of an unordered choice (see `PB2`)."""
        k = len(param.choices)
        chosen = np.array([param.index(o.params[name]) for o in self.seen])
        weights = self.gp.weights(self.t, self.now)
        reward = (self.y + 2.0) / 4.0
        total = np.bincount(chosen, weights=weights * reward, minlength=k)
        count = np.bincount(chosen, weights=weights, minlength=k)
        mean = (total + 0.5) / (count + 1.0)
        explore = min(1.0, math.sqrt(k * math.log(k) / ((math.e - 1) * max(count.sum(), 1.0))))
        logits = (mean - mean.max()) / _TEMPERATURE
        p = (1 - explore) * np.exp(logits) / np.exp(logits).sum() + explore / k
        return param.choices[int(rng.choice(k, p=p / p.sum()))]


def _maximise(f: Callable[[np.ndarray], np.ndarray], anchors: np.ndarray, width: int,
              rng: np.random.Generator) -> np.ndarray:
    """The best point of the unit cube found by random candidates (plus ``anchors``) and
    rounds of local search around the best few."""
    points = np.vstack([anchors, rng.random((_CANDIDATES, width))])
    values = f(points)
    for radius, samples in _REFINE:
        top = points[np.argsort(-values, kind="stable")[:_TOP]]
        near = top[:, None, :] + rng.normal(0.0, radius, (len(top), samples, width))
        points = np.vstack([top, np.clip(near, 0.0, 1.0).reshape(-1, width)])
        values = f(points)
    best: np.ndarray = points[int(np.argmax(values))]
    return best
