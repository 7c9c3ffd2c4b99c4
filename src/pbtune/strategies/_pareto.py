"""Several objectives and constraints, on plain data.

A study compares trials by `Criteria`: one objective (the stored fitness: a metric, or a
fitness function) or several metrics, each to maximize or minimize, and bounds on metrics
(constraints). The comparison, for exploit, truncation and the best trials:

1. **Deb's constraint rule.** A feasible trial beats any infeasible one; of two infeasible
   trials, the smaller total violation wins. A constraint's violation is how far the
   metric lies outside its bound, relative to the bound (absolute for a bound of 0), so
   constraints in different units add up.
2. **Pareto dominance** among feasible trials: a trial that is at least as good in every
   objective and better in one wins. Non-dominated sorting ranks a population in fronts
   (front 0: dominated by no one; front 1: by front 0 only; ...).
3. **Diversity** breaks the tie of two trials in one front: the larger crowding distance
   wins (NSGA-II, Deb et al. 2002): the trial with more room around it on the front, the
   two ends of each objective first. Selection thus spreads along the trade-off instead
   of collapsing onto one end of it.

Two trials equal on all three tie (a tournament then keeps its initiator). With one
objective and no constraints this is the plain comparison of fitness values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pbtune._errors import ConfigError
from pbtune.strategies._exploit import Mode
from pbtune.trial import FrozenTrial


class Scored(Protocol):
    """What the criteria read of a trial (a `FrozenTrial`, or a storage record of one)."""

    @property
    def id(self) -> int: ...
    @property
    def fitness(self) -> float | None: ...
    @property
    def metrics(self) -> Mapping[str, float] | None: ...


@dataclass(frozen=True)
class Bound:
    """A constraint: metric ``metric`` must lie within [``low``, ``high``] (either may be None)."""

    metric: str
    low: float | None = None
    high: float | None = None

    def violation(self, value: float) -> float:
        """How far ``value`` lies outside the bound, relative to it; 0 inside."""
        if self.high is not None and value > self.high:
            return (value - self.high) / _scale(self.high)
        if self.low is not None and value < self.low:
            return (self.low - value) / _scale(self.low)
        return 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in (("min", self.low), ("max", self.high)) if v is not None}

    def __str__(self) -> str:
        parts = ([f"{self.metric} >= {self.low:g}"] if self.low is not None else []) + (
            [f"{self.metric} <= {self.high:g}"] if self.high is not None else [])
        return " and ".join(parts)


def _scale(bound: float) -> float:
    return abs(bound) if bound != 0 else 1.0


@dataclass(frozen=True)
class Criteria:
    """How a study compares trials: ``objectives`` (name and direction, in order) and
    ``constraints``. With one objective, its value is the trial's stored fitness (the
    study's metric, or its fitness function); with several, each is read from the
    trial's metrics."""

    objectives: tuple[tuple[str, Mode], ...]
    constraints: tuple[Bound, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.objectives)

    @property
    def several(self) -> bool:
        return len(self.objectives) > 1

    @property
    def plain(self) -> bool:
        """One objective and no constraints: trials compare by fitness alone."""
        return not self.several and not self.constraints

    def values(self, trial: Scored) -> tuple[float, ...]:
        """The trial's objectives, each turned so that higher is better."""
        if not self.several:
            assert trial.fitness is not None, "only COMPLETE trials are compared"
            return (trial.fitness if self.objectives[0][1] == "max" else -trial.fitness,)
        metrics = trial.metrics or {}
        return tuple(metrics[name] if mode == "max" else -metrics[name]
                     for name, mode in self.objectives)

    def violation(self, metrics: Mapping[str, float] | None) -> float:
        """The total violation of the constraints by ``metrics`` (0: feasible)."""
        found = metrics or {}
        return sum(bound.violation(found[bound.metric]) for bound in self.constraints
                   if bound.metric in found)

    def standings(self, trials: Sequence[Scored]) -> list[tuple[float, float, float]]:
        """A key per trial (in order), lower is better: (total violation, front, -crowding).
        Feasible trials have violation 0; infeasible ones rank by violation alone."""
        violations = [self.violation(t.metrics) for t in trials]
        keys: list[tuple[float, float, float]] = [(v, 0.0, 0.0) for v in violations]
        feasible = [i for i, v in enumerate(violations) if v == 0]
        if feasible:
            points = np.array([self.values(trials[i]) for i in feasible], dtype=float)
            for front_index, front in enumerate(non_dominated_fronts(points)):
                distance = crowding_distance(points[front])
                for position, distance_of in zip(front, distance, strict=True):
                    keys[feasible[position]] = (0.0, float(front_index), -float(distance_of))
        return keys

    def scores(self, trials: Sequence[Scored]) -> dict[int, float]:
        """A number per trial id, higher is better, equal for trials that tie: what a
        strategy written for one objective compares (see `standings`)."""
        keys = self.standings(trials)
        order = {key: -float(rank) for rank, key in enumerate(sorted(set(keys)))}
        return {t.id: order[key] for t, key in zip(trials, keys, strict=True)}

    def ranked(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        """``trials`` best first; trials that tie keep their order in ``trials``."""
        keys = self.standings(trials)
        return [t for _, t in sorted(zip(keys, trials, strict=True), key=lambda p: p[0])]

    def front(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        """The feasible trials no other trial dominates (the Pareto front), by trial number;
        when no trial is feasible, those of the smallest violation. With one objective:
        the best trials (several only when they tie)."""
        if not trials:
            return []
        keys = self.standings(trials)
        least = min(v for v, _, _ in keys)
        if least > 0:
            return sorted((t for t, k in zip(trials, keys, strict=True) if k[0] == least),
                          key=lambda t: t.id)
        return sorted((t for t, k in zip(trials, keys, strict=True) if k[:2] == (0.0, 0.0)),
                      key=lambda t: t.id)

    def to_dict(self) -> dict[str, Any]:
        return {"objectives": dict(self.objectives),
                "constraints": {b.metric: b.to_dict() for b in self.constraints}}


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` dominates ``b`` (higher is better in every coordinate): at least as
    good everywhere and better somewhere."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True))


def non_dominated_fronts(points: np.ndarray) -> list[list[int]]:
    """Indices of ``points`` (rows; higher is better) by front: front 0 is dominated by
    no point, front k by points of earlier fronts only. Equal points share a front."""
    n = len(points)
    if n == 0:
        return []
    at_least = np.ones((n, n), dtype=bool)
    better = np.zeros((n, n), dtype=bool)
    for column in points.T:  # one objective at a time: no (n, n, m) array
        at_least &= column[:, None] >= column[None, :]
        better |= column[:, None] > column[None, :]
    beats = at_least & better  # beats[i, j]: i dominates j
    dominated_by = beats.sum(axis=0)
    left = np.ones(n, dtype=bool)
    fronts: list[list[int]] = []
    current = np.flatnonzero(dominated_by == 0)
    while current.size:
        fronts.append([int(i) for i in current])
        left[current] = False
        dominated_by = dominated_by - beats[current].sum(axis=0)
        current = np.flatnonzero((dominated_by == 0) & left)
    return fronts


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point of one front: the sum over objectives of
    the gap between its two neighbours, relative to the objective's range; the points at
    either end of an objective's range get infinity. An objective on which the front does
    not vary adds nothing, so a front of equal points has distance 0 throughout."""
    n, m = points.shape
    distance = np.zeros(n)
    if n == 0:
        return distance
    for k in range(m):
        order = np.argsort(points[:, k], kind="stable")
        column = points[order, k]
        spread = column[-1] - column[0]
        if spread <= 0:
            continue
        distance[order[0]] = distance[order[-1]] = math.inf
        if n > 2:
            distance[order[1:-1]] += (column[2:] - column[:-2]) / spread
    return distance


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume dominated by ``points`` (higher is better) and bounded below by
    ``reference``: the standard quality measure of a front (larger is better). Exact;
    points not above the reference in every coordinate add nothing."""
    ref = np.asarray(reference, dtype=float)
    kept = [np.asarray(p, dtype=float) for p in points]
    above = np.array([p for p in kept if (p > ref).all()], dtype=float).reshape(-1, len(ref))
    return _volume(above, ref)


def _volume(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume by slicing along the last coordinate (exact; fine for fronts of a few
    hundred points in two or three objectives)."""
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(points[:, 0].max() - ref[0])
    order = np.argsort(-points[:, -1], kind="stable")
    total = 0.0
    for position, index in enumerate(order):
        upper = points[index, -1]
        lower = points[order[position + 1], -1] if position + 1 < len(order) else ref[-1]
        if upper > lower:
            total += (upper - lower) * _volume(points[order[:position + 1], :-1], ref[:-1])
    return total


def criteria_from(objectives: Mapping[str, Any] | None, constraints: Mapping[str, Any] | None,
                  *, single: tuple[str, Mode] | None = None) -> Criteria:
    """`Criteria` from the study's settings: ``objectives`` {name: "max"|"min"} (None: the
    one objective ``single``) and ``constraints`` {metric: {"max": x} | {"min": y} |
    both}. Raises ConfigError, saying what to write, for anything else."""
    if objectives is None:
        assert single is not None
        pairs: tuple[tuple[str, Mode], ...] = (single,)
    else:
        pairs = _objectives(objectives)
    return Criteria(pairs, tuple(_bound(name, spec) for name, spec in
                                 (constraints or {}).items()))


def _objectives(objectives: Any) -> tuple[tuple[str, Mode], ...]:
    example = 'objectives={"accuracy": "max", "latency_ms": "min"}'
    if not isinstance(objectives, Mapping) or not objectives:
        raise ConfigError(f"objectives must be a non-empty dict of metric name to 'max' or "
                          f"'min', e.g. {example}; got {objectives!r}")
    pairs: list[tuple[str, Mode]] = []
    for name, mode in objectives.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"objective names must be metric names (strings), got {name!r}")
        if mode not in ("max", "min"):
            raise ConfigError(f"objective {name!r} must be 'max' or 'min', got {mode!r} "
                              f"(e.g. {example})")
        pairs.append((name, mode))
    return tuple(pairs)


def _bound(name: Any, spec: Any) -> Bound:
    example = 'constraints={"memory_mb": {"max": 2048}}'
    if not isinstance(name, str) or not name:
        raise ConfigError(f"constraint names must be metric names (strings), got {name!r}")
    if not isinstance(spec, Mapping) or not spec or set(spec) - {"min", "max"}:
        raise ConfigError(f"constraint {name!r} must be a dict with 'max' and/or 'min', "
                          f"e.g. {example}; got {spec!r}")
    values: dict[str, float] = {}
    for key, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            raise ConfigError(f"constraint {name!r}: {key} must be a finite number, "
                              f"got {value!r}")
        values[key] = float(value)
    low, high = values.get("min"), values.get("max")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"constraint {name!r}: min ({low:g}) is above max ({high:g})")
    return Bound(name, low, high)
