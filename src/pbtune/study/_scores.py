"""`Scores`: how every text view writes what a trial scored, in a study of one objective
or several, with or without constraints.

With one objective a trial's score is its fitness (``accuracy (max) 0.93``); with several
it is one value per objective (``accuracy (max) 0.93, latency_ms (min) 12``) and there is
no single best, only the Pareto front. A trial that breaks a constraint is marked
(``infeasible: memory_mb 2600 > 2048``), and the best one-objective trial is the best
feasible one. The log lines, the status lines, the summary and the CLI share these words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pbtune.strategies import Criteria, criteria_from
from pbtune.study._text import fitness_label, number
from pbtune.trial import FrozenTrial

SHOWN_TRIALS = 6  # trial numbers a one-line list of the front names before "+N more"


def criteria_of(config: Mapping[str, Any]) -> Criteria:
    """How the study stored as ``config`` compares trials."""
    return criteria_from(config.get("objectives"), config.get("constraints"),
                         single=(str(config.get("metric") or "fitness"), config["mode"]))


@dataclass(frozen=True)
class Scores:
    """The words of a study's scores; ``Scores.of(record.config)``."""

    criteria: Criteria
    fitness_label: str  # one objective: what the fitness is, e.g. "accuracy (max)"

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> Scores:
        return cls(criteria_of(config), fitness_label(config))

    @property
    def several(self) -> bool:
        return self.criteria.several

    @property
    def constrained(self) -> bool:
        return bool(self.criteria.constraints)

    def label(self) -> str:
        """``accuracy (max)``, or ``accuracy (max), latency_ms (min)`` for several."""
        if not self.several:
            return self.fitness_label
        return ", ".join(f"{name} ({mode})" for name, mode in self.criteria.objectives)

    def constraints_text(self) -> str:
        """``memory_mb <= 2048 and ...``; empty without constraints."""
        return ", ".join(str(bound) for bound in self.criteria.constraints)

    def objective_values(self, trial: FrozenTrial) -> dict[str, float | None]:
        """The trial's value of each objective, in order (with one: its fitness)."""
        if not self.several:
            return {self.criteria.names[0]: trial.fitness}
        metrics = trial.metrics or {}
        return {name: metrics.get(name) for name in self.criteria.names}

    def values(self, trial: FrozenTrial) -> str:
        """``accuracy (max) 0.93``, or ``accuracy (max) 0.93, latency_ms (min) 12``."""
        if not self.several:
            return f"{self.fitness_label} {number(trial.fitness)}"
        found = self.objective_values(trial)
        return ", ".join(f"{name} ({mode}) {number(found[name])}"
                         for name, mode in self.criteria.objectives)

    def violation(self, trial: FrozenTrial) -> float:
        """The trial's total constraint violation (0: feasible; see `Criteria.violation`)."""
        return self.criteria.violation(trial.metrics)

    def broken(self, trial: FrozenTrial) -> str:
        """The constraints the trial breaks, ``memory_mb 2600 > 2048``; empty if none."""
        metrics = trial.metrics or {}
        parts = []
        for bound in self.criteria.constraints:
            value = metrics.get(bound.metric)
            if value is None or bound.violation(value) == 0:
                continue
            over = bound.high is not None and value > bound.high
            limit = bound.high if over else bound.low
            parts.append(f"{bound.metric} {number(value)} {'>' if over else '<'} {limit:g}")
        return ", ".join(parts)

    def mark(self, trial: FrozenTrial) -> str:
        """``, infeasible: memory_mb 2600 > 2048`` for a trial that breaks a constraint."""
        broken = self.broken(trial)
        return f", infeasible: {broken}" if broken else ""

    def result(self, trial: FrozenTrial) -> str:
        """The trial's values and, if it breaks a constraint, which."""
        return self.values(trial) + self.mark(trial)

    def better(self, trial: FrozenTrial, than: FrozenTrial | None) -> bool:
        """One objective: whether ``trial`` beats ``than`` (feasible first, then the
        smaller violation, then the fitness; a tie keeps ``than``)."""
        if trial.fitness is None:
            return False
        if than is None or than.fitness is None:
            return True
        mine, theirs = self.violation(trial), self.violation(than)
        if mine != theirs:
            return mine < theirs
        if self.criteria.objectives[0][1] == "max":
            return trial.fitness > than.fitness
        return trial.fitness < than.fitness

    def front(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        """The Pareto front of ``trials`` (COMPLETE ones), by trial number."""
        return self.criteria.front(trials)


def trial_list(trials: Sequence[FrozenTrial], limit: int = SHOWN_TRIALS) -> str:
    """``trials 3, 5, 8`` (``trial 3`` for one; ``..., +4 more`` past ``limit``)."""
    numbers = [str(t.number) for t in trials]
    shown = numbers[:limit] + ([f"+{len(numbers) - limit} more"] if len(numbers) > limit
                               else [])
    return f"trial{'s' if len(numbers) != 1 else ''} {', '.join(shown)}"


def front_text(front: Sequence[FrozenTrial]) -> str:
    """``2 trials (trials 3, 5)``: the size of a front and its trials."""
    if not front:
        return "no trial yet"
    return f"{len(front)} trial{'s' if len(front) != 1 else ''} ({trial_list(front)})"
