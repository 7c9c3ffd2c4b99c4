"""The controller's early stop: a member that keeps losing is stopped, and its slot restarts.

Li et al.'s controller answers a finished trial with a new trial or with an early stop.
A rule here counts, per member, the results in a row that it holds against the member
(the count is stored with the member, so a restarted controller goes on counting); when
the rule says stop, the member's lineage ends there and its slot restarts from a copy of
a better member with explored params (a ``restart`` decision). The slot keeps its budget:
it trains on to ``max_steps`` from the copy, so the study's progress stays
``population_size * max_steps`` steps (its compute somewhat more, as for any exploit).

A rule is pure: the finished trial, the population as strategies see it (fitness turned
into one comparable number, higher is better: see `pbtune.strategies.Criteria`) and the
member's count so far give its new count.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pbtune._errors import ConfigError
from pbtune.trial import FrozenTrial


class EarlyStop(abc.ABC):
    """Base class of early-stop rules; `count` and `stops` are what the controller calls."""

    @abc.abstractmethod
    def count(self, finished: FrozenTrial, population: Sequence[FrozenTrial],
              scores: Mapping[int, float], before: int) -> int:
        """The member's count after ``finished`` (``before``: its count until now).
        ``scores`` holds a number per trial id of ``population`` (``finished`` among
        them), higher is better."""

    @abc.abstractmethod
    def stops(self, count: int) -> bool:
        """Whether a member with this count is stopped (its slot then restarts)."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON form, stored with the study."""

    def top(self, population: Sequence[FrozenTrial], scores: Mapping[int, float]
            ) -> list[FrozenTrial]:
        """The members a stopped slot may restart from (by default the top quarter)."""
        return _top(population, scores, 0.25)


@dataclass(frozen=True)
class Lagging(EarlyStop):
    """Stop a member whose results rank in the bottom ``fraction`` of the population
    ``generations`` times in a row; its slot restarts from a member of the top
    ``fraction``.

    A result is in the bottom when at least ``n - ceil(fraction * n)`` of the ``n``
    members' latest results beat it (ties do not count against it). Example::

        pbtune.create_study(..., early_stop=pbtune.Lagging(generations=3))
    """

    generations: int = 3
    fraction: float = 0.25

    def __post_init__(self) -> None:
        if (isinstance(self.generations, bool) or not isinstance(self.generations, int)
                or self.generations < 1):
            raise ConfigError(f"Lagging(generations=...) must be an int >= 1 (results in a "
                              f"row at the bottom), got {self.generations!r}")
        if (isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float))
                or not 0.0 < self.fraction <= 0.5):
            raise ConfigError(f"Lagging(fraction=...) must be in (0, 0.5], "
                              f"got {self.fraction!r}")

    def count(self, finished: FrozenTrial, population: Sequence[FrozenTrial],
              scores: Mapping[int, float], before: int) -> int:
        current = [t for t in population if t.member != finished.member] + [finished]
        size = _quantile(len(current), self.fraction)
        if size == 0:
            return 0
        own = scores[finished.id]
        better = sum(scores[t.id] > own for t in current)
        return before + 1 if better >= len(current) - size else 0

    def stops(self, count: int) -> bool:
        return count >= self.generations

    def top(self, population: Sequence[FrozenTrial], scores: Mapping[int, float]
            ) -> list[FrozenTrial]:
        return _top(population, scores, self.fraction)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "lagging", "generations": self.generations, "fraction": self.fraction}


def _quantile(n: int, fraction: float) -> int:
    """How many members a quantile of ``fraction`` holds: at most half the population."""
    return min(math.ceil(n * fraction), n // 2)


def _top(population: Sequence[FrozenTrial], scores: Mapping[int, float], fraction: float
         ) -> list[FrozenTrial]:
    ranked = sorted(population, key=lambda t: (-scores[t.id], t.id))
    size = max(_quantile(len(ranked), fraction), 1 if ranked else 0)
    return ranked[:size]
