"""Stop rules: when a study has learned enough, before its budget is spent.

A rule is pure, as a strategy is: `StopRule.check` sees the trial that just finished, the
JSON state the rule kept from earlier results, and a `StopContext` of plain data about the
study, and returns the reason to stop (None: go on) with its new state. The controller
checks a study's rules in the transaction that records each COMPLETE trial and stores
each rule's state under its position in the list, so a restarted controller, or a worker
on another machine, goes on from the same state.

Example::

    pbtune.create_study(..., metric="accuracy", mode="max",
                        stop=[pbtune.Target(accuracy=0.99), pbtune.TotalSteps(200_000)])
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pbtune._errors import ConfigError
from pbtune._imports import import_object
from pbtune.strategies._exploit import Mode
from pbtune.strategies._explore import _check_keys
from pbtune.strategies._pareto import Bound
from pbtune.trial import FrozenTrial

FITNESS = "fitness"  # the objective's name in a study with a fitness function


@dataclass(frozen=True)
class StopContext:
    """What a rule may know of its study, as plain data.

    ``directions``: each objective and which way is better (``{"accuracy": "max"}``; a
    study with a fitness function has ``{"fitness": mode}``); ``max_steps`` (the stored
    budget), ``population_size`` and ``steps_per_trial``; ``constraints``: the bounds a
    trial must keep for its values to count.
    """

    directions: Mapping[str, Mode]
    max_steps: int
    population_size: int
    steps_per_trial: int
    fitness_function: bool = field(default=False, repr=False)
    constraints: tuple[Bound, ...] = ()

    def value(self, trial: FrozenTrial, name: str) -> float | None:
        """The trial's value of the objective ``name`` (its fitness, for ``"fitness"`` in
        a study with a fitness function); None where it has none, and for a trial that
        breaks a constraint (an infeasible trial reaches no target and sets no best)."""
        metrics = trial.metrics or {}
        if any(b.violation(metrics[b.metric]) > 0 for b in self.constraints
               if b.metric in metrics):
            return None
        if name == FITNESS and self.fitness_function:
            return trial.fitness
        found = (trial.metrics or {}).get(name)
        if isinstance(found, bool) or not isinstance(found, (int, float)):
            return None
        return float(found)

    def objectives_text(self) -> str:
        return ", ".join(f"{name} ({mode})" for name, mode in self.directions.items())


class StopRule(abc.ABC):
    """Base class of stop rules; one abstract method (and `to_dict`, for the record).

    `check` must be pure: its answer depends only on its arguments (no I/O, no clock, no
    global random), and the state it returns must be JSON (dicts, lists, strings,
    numbers), since it is stored with the study. A rule of your own is passed as an
    instance, and in a study file as ``{type: "module:Class", ...}`` (its ``to_dict``
    returns the same), as exploit and explore strategies are.
    """

    @abc.abstractmethod
    def check(self, finished: FrozenTrial, state: dict[str, Any], study: StopContext
              ) -> tuple[str | None, dict[str, Any]]:
        """(the reason to stop now, or None to go on; the rule's new state) after the
        COMPLETE trial ``finished``. ``state`` is what the last call returned ({} at
        first)."""

    def check_study(self, study: StopContext) -> None:
        """Raise `ConfigError` if this rule cannot judge ``study`` (an objective it names
        is not one of the study's). Called when the study is created or its rules change,
        before anything is recorded. By default any study will do."""
        return

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON form with a ``type``, stored with the study (see `stop_from_dict`)."""


class Target(StopRule):
    """Stop once one trial reaches every threshold: ``>=`` for an objective to maximize,
    ``<=`` for one to minimize. Names are the study's objectives: its metric, or
    ``fitness`` for a study with a fitness function.

    Example: ``pbtune.Target(accuracy=0.99)``; in a study file ``{type: target,
    accuracy: 0.99}``.
    """

    def __init__(self, **thresholds: float) -> None:
        if not thresholds:
            raise ConfigError("Target needs a threshold per objective, e.g. "
                              "pbtune.Target(accuracy=0.99)")
        for name, value in thresholds.items():
            if name == "type":
                raise ConfigError("Target: 'type' names the rule in a study file; it cannot "
                                  "be a metric's name")
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value)):
                raise ConfigError(f"Target({name}=...) must be a finite number, got {value!r}")
        self.thresholds = {name: float(value) for name, value in thresholds.items()}

    def check_study(self, study: StopContext) -> None:
        for name in self.thresholds:
            _check_objective(self, name, study)

    def check(self, finished: FrozenTrial, state: dict[str, Any], study: StopContext
              ) -> tuple[str | None, dict[str, Any]]:
        reached: list[str] = []
        for name, threshold in self.thresholds.items():
            value = study.value(finished, name)
            better = study.directions.get(name, "max") == "max"
            if value is None or (value < threshold if better else value > threshold):
                return None, state
            reached.append(f"{name} {value:.6g}")
        return f"trial {finished.number} reached {' and '.join(reached)}", state

    def to_dict(self) -> dict[str, Any]:
        return {"type": "target", **self.thresholds}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and other.thresholds == self.thresholds

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.thresholds.items())))

    def __repr__(self) -> str:
        return f"Target({', '.join(f'{k}={v:g}' for k, v in self.thresholds.items())})"


@dataclass(frozen=True)
class NoImprovement(StopRule):
    """Stop when the best value of ``objective`` (the study's own, where it has one) has
    not improved by more than ``min_delta`` while the population advanced ``generations``
    generations: from the generation of the trial that set the best to that of the trial
    that just finished.

    Keeps the best and its generation, so a result costs the same however long the study
    ran. Example: ``pbtune.NoImprovement(generations=5)``; in a study file
    ``{type: no_improvement, generations: 5}``.
    """

    generations: int
    objective: str | None = None
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if (isinstance(self.generations, bool) or not isinstance(self.generations, int)
                or self.generations < 1):
            raise ConfigError(f"NoImprovement(generations=...) must be an int >= 1, got "
                              f"{self.generations!r}")
        delta = self.min_delta
        if (isinstance(delta, bool) or not isinstance(delta, (int, float))
                or not math.isfinite(delta) or delta < 0):
            raise ConfigError(f"NoImprovement(min_delta=...) must be a number >= 0, got "
                              f"{delta!r}")
        if self.objective is not None and (not isinstance(self.objective, str)
                                           or not self.objective):
            raise ConfigError(f"NoImprovement(objective=...) must be an objective's name, "
                              f"got {self.objective!r}")

    def check_study(self, study: StopContext) -> None:
        if self.objective is not None:
            _check_objective(self, self.objective, study)
        elif len(study.directions) != 1:
            raise ConfigError(f"NoImprovement: name the objective to watch, e.g. "
                              f"objective={next(iter(study.directions))!r}; the study's "
                              f"objectives: {study.objectives_text()}")

    def _objective(self, study: StopContext) -> str:
        return self.objective if self.objective is not None else next(iter(study.directions))

    def check(self, finished: FrozenTrial, state: dict[str, Any], study: StopContext
              ) -> tuple[str | None, dict[str, Any]]:
        name = self._objective(study)
        value = study.value(finished, name)
        if value is None:
            return None, state
        best = state.get("best")
        sign = 1.0 if study.directions.get(name, "max") == "max" else -1.0
        if best is None or sign * (value - float(best)) > self.min_delta:
            return None, {"best": value, "generation": finished.generation,
                          "trial": finished.number}
        since = int(state["generation"])
        if finished.generation - since < self.generations:
            return None, state
        by = f" by more than {self.min_delta:g}" if self.min_delta else ""
        return (f"{name} has not improved{by} in {finished.generation - since} generations: "
                f"the best, {float(best):.6g}, is trial {state.get('trial')}'s (generation "
                f"{since}); trial {finished.number} is at generation {finished.generation}",
                state)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "no_improvement", "generations": self.generations,
                "objective": self.objective, "min_delta": self.min_delta}

    def __repr__(self) -> str:
        extra = (f", objective={self.objective!r}" if self.objective is not None else "") + (
            f", min_delta={self.min_delta:g}" if self.min_delta else "")
        return f"NoImprovement(generations={self.generations}{extra})"


@dataclass(frozen=True)
class TotalSteps(StopRule):
    """Stop once the COMPLETE trials together trained ``steps`` steps (each its
    ``end_step - start_step``): a compute budget across the population, whatever each
    member reached. Keeps the running sum. Example: ``pbtune.TotalSteps(200_000)``; in a
    study file ``{type: total_steps, steps: 200000}``.
    """

    steps: int

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"TotalSteps(steps=...) must be an int >= 1, got {self.steps!r}")

    def check(self, finished: FrozenTrial, state: dict[str, Any], study: StopContext
              ) -> tuple[str | None, dict[str, Any]]:
        total = int(state.get("steps", 0)) + finished.end_step - finished.start_step
        reason = (f"{total} steps trained in all (trial {finished.number} was the last)"
                  if total >= self.steps else None)
        return reason, {"steps": total}

    def to_dict(self) -> dict[str, Any]:
        return {"type": "total_steps", "steps": self.steps}

    def __repr__(self) -> str:
        return f"TotalSteps({self.steps})"


class Verdict(NamedTuple):
    """What a study's rules say: the reason to stop (None: go on), the position of the
    rule that said it, and every rule's new state (``{"0": ..., "1": ...}``)."""

    reason: str | None
    fired: int | None
    state: dict[str, Any]


def check_rules(rules: Sequence[StopRule], finished: FrozenTrial, state: Mapping[str, Any],
                study: StopContext) -> Verdict:
    """Every rule's `check` of ``finished``; the first rule (in order) that says stop
    gives the reason, followed by the rule (``... (Target(accuracy=0.99))``). A rule's
    state is kept under its position, and only when it has one."""
    reason: str | None = None
    fired: int | None = None
    new: dict[str, Any] = {}
    for position, rule in enumerate(rules):
        key = str(position)
        said, kept = rule.check(finished, dict(state.get(key) or {}), study)
        if not (said is None or isinstance(said, str)) or not isinstance(kept, dict):
            raise TypeError(f"stop rule {describe(rule)}.check must return (a reason or "
                            f"None, a dict of its state), got {(said, kept)!r}")
        if kept:
            new[key] = kept
        if said is not None and reason is None:
            reason, fired = f"{said} ({describe(rule)})", position
    return Verdict(reason, fired, new)


def replay_rules(rules: Sequence[StopRule], finished: Iterable[FrozenTrial],
                 study: StopContext) -> Verdict:
    """The rules over results already recorded (COMPLETE trials, in the order they
    finished), as if they had judged each one: where they would have stopped the study
    (the first result that fires a rule) and the state they would have kept. A study's
    new rules judge its past this way, so they mean the same whenever they are set."""
    verdict = Verdict(None, None, {})
    for trial in finished:
        verdict = check_rules(rules, trial, verdict.state, study)
        if verdict.reason is not None:
            break
    return verdict


def describe(rule: StopRule) -> str:
    """The rule as its user wrote it: its repr, or its class's name where the class has
    no repr of its own."""
    if type(rule).__repr__ is object.__repr__:
        return type(rule).__name__
    return repr(rule)


def stop_rules(value: Any) -> tuple[StopRule, ...]:
    """``stop=`` as given to `create_study`: one rule, a list of them, or None."""
    if value is None:
        return ()
    items = [value] if isinstance(value, StopRule) else value
    if isinstance(items, (list, tuple)) and all(isinstance(r, StopRule) for r in items):
        return tuple(items)
    raise ConfigError(
        "stop must be a stop rule or a list of them, e.g. stop=pbtune.Target(accuracy=0.99) "
        "or stop=[pbtune.NoImprovement(generations=5), pbtune.TotalSteps(200_000)] "
        f"(your own: a subclass of pbtune.StopRule), got {value!r}"
    )


def stop_from_dict(data: Any) -> tuple[StopRule, ...]:
    """Rebuild a study's rules from their stored (or study file) form: a list of
    mappings with a ``type``, or one mapping."""
    if data is None:
        return ()
    items = [data] if isinstance(data, Mapping) else data
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"stop must be a list of rules like [{{type: target, accuracy: "
                          f"0.99}}] or one such mapping, got {data!r}")
    return tuple(_rule_from_dict(item) for item in items)


def _rule_from_dict(data: Any) -> StopRule:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a stop rule must be a mapping with a 'type', like {{type: "
                          f"target, accuracy: 0.99}}, got {data!r}")
    fields = dict(data)
    kind = fields.get("type")
    if kind == "target":
        return Target(**{str(k): v for k, v in fields.items() if k != "type"})
    if kind == "no_improvement":
        return NoImprovement(**_check_keys("no_improvement", fields,
                                           {"generations", "objective", "min_delta"}))
    if kind == "total_steps":
        return TotalSteps(**_check_keys("total_steps", fields, {"steps"}))
    if not isinstance(kind, str) or ":" not in kind:
        raise ConfigError(f"stop rule type must be one of target, no_improvement, "
                          f"total_steps, or 'module:Class' for your own, got {kind!r}")
    target = import_object(kind, "stop rule")
    if not (isinstance(target, type) and issubclass(target, StopRule)):
        raise ConfigError(f"{kind!r} is not a subclass of pbtune.StopRule")
    fields.pop("type")
    try:
        rule: StopRule = target(**fields)
    except TypeError as error:
        raise ConfigError(f"stop rule {kind!r}: {error}") from None
    return rule


def _check_objective(rule: StopRule, name: str, study: StopContext) -> None:
    if name not in study.directions:
        raise ConfigError(
            f"{describe(rule)}: {name!r} is not an objective of this study; its objectives: "
            f"{study.objectives_text()}"
            + (" (a study with a fitness function names it 'fitness')"
               if study.fitness_function else "")
        )
