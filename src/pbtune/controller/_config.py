"""`StudyConfig`: every setting of a study, validated, stored as JSON with the study."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pbtune._errors import ConfigError
from pbtune._imports import import_object, object_ref
from pbtune.controller._changes import compare_settings
from pbtune.space import SearchSpace
from pbtune.strategies import (
    FITNESS,
    PB2,
    Criteria,
    EarlyStop,
    ExploitStrategy,
    ExploreStrategy,
    Mode,
    Perturb,
    StopContext,
    StopRule,
    Tournament,
    criteria_from,
    describe,
    early_stop_from_dict,
    exploit_from_dict,
    explore_from_dict,
    stop_from_dict,
    stop_rules,
)

FitnessFn = Callable[[Mapping[str, float]], float]
EvaluateFn = Callable[[Any], Mapping[str, Any]]  # (pbtune.Trial) -> metrics

# Steps, members and failure counts are 32-bit integer columns in the database; a seed is
# stored as JSON, which other readers hold in 64 bits.
_INT32_MAX, _INT64_MAX = 2**31 - 1, 2**63 - 1
# The heartbeat thread waits this long at most between beats, however long the timeout.
_MAX_HEARTBEAT_INTERVAL_S = 3600.0
# A retry waits ``retry_delay`` after a member's first failure in a row, twice as long
# after each further one, and at most this long (see `retry_backoff`).
DEFAULT_RETRY_DELAY_S = 1.0
MAX_RETRY_DELAY_S = 300.0


@dataclass(frozen=True)
class StudyConfig:
    space: SearchSpace
    metric: str | None
    mode: Mode
    population_size: int
    steps_per_trial: int
    max_steps: int
    exploit: ExploitStrategy = field(default_factory=Tournament)
    explore: ExploreStrategy = field(default_factory=Perturb)
    checkpoint_root: str = "pbtune_checkpoints"
    seed: int = 0
    max_retries: int = 3
    retry_delay: float = DEFAULT_RETRY_DELAY_S
    keep_best: int = 3
    heartbeat_timeout: float = 60.0
    trial_timeout: float | None = None
    fitness: FitnessFn | None = field(default=None, compare=False)
    fitness_ref: str | None = None
    evaluate: EvaluateFn | str | None = field(default=None, compare=False)
    evaluate_ref: str | None = None
    objectives: Mapping[str, Mode] | None = None
    constraints: Mapping[str, Mapping[str, float]] | None = None
    early_stop: EarlyStop | None = None
    stop: tuple[StopRule, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.space, SearchSpace):
            object.__setattr__(self, "space", SearchSpace(self.space))
        if self.mode not in ("max", "min"):
            raise ConfigError(f"mode must be 'max' or 'min', got {self.mode!r}")
        self._check_criteria()
        if self.early_stop is not None and not isinstance(self.early_stop, EarlyStop):
            raise ConfigError(f"early_stop must be a rule such as pbtune.Lagging(generations=3)"
                              f", or None; got {self.early_stop!r}")
        if self.metric is not None and (not isinstance(self.metric, str) or not self.metric):
            raise ConfigError(f"metric must be a non-empty string, got {self.metric!r}")
        if self.fitness is not None and not callable(self.fitness):
            raise ConfigError(f"fitness must be callable(metrics) -> float, got {self.fitness!r}")
        if self.fitness is not None and self.fitness_ref is None:
            object.__setattr__(self, "fitness_ref", object_ref(self.fitness))
        if isinstance(self.evaluate, str):
            object.__setattr__(self, "evaluate_ref", self.evaluate)
            object.__setattr__(self, "evaluate", None)
        if self.evaluate is not None and not callable(self.evaluate):
            raise ConfigError(
                f"evaluate must be a function of a pbtune.Trial (or 'file.py:name'), "
                f"got {self.evaluate!r}"
            )
        if self.evaluate is not None and self.evaluate_ref is None:
            object.__setattr__(self, "evaluate_ref", object_ref(self.evaluate))
        if self.evaluate_ref is not None and ":" not in str(self.evaluate_ref):
            raise ConfigError(
                f"evaluate must be a function or 'module:name' / 'file.py:name', "
                f"got {self.evaluate_ref!r}"
            )
        for name in ("population_size", "steps_per_trial", "max_steps"):
            _positive_int(name, getattr(self, name), high=_INT32_MAX)
        if self.steps_per_trial > self.max_steps:
            raise ConfigError(
                f"steps_per_trial ({self.steps_per_trial}) must not exceed max_steps "
                f"({self.max_steps})"
            )
        _positive_int("max_retries", self.max_retries, allow_zero=True, high=_INT32_MAX - 1)
        _check_retry_delay(self.retry_delay)
        _positive_int("keep_best", self.keep_best, allow_zero=True, high=_INT32_MAX)
        _positive_int("seed", self.seed, allow_zero=True, high=_INT64_MAX)
        if not isinstance(self.exploit, ExploitStrategy):
            raise ConfigError(
                f"exploit must be pbtune.Tournament() or pbtune.Truncation(), got {self.exploit!r}"
            )
        if not isinstance(self.explore, ExploreStrategy):
            raise ConfigError(f"explore must be pbtune.Perturb() or similar, got {self.explore!r}")
        _positive_float("heartbeat_timeout", self.heartbeat_timeout)
        if self.trial_timeout is not None:
            _positive_float("trial_timeout", self.trial_timeout)
        object.__setattr__(self, "stop", stop_rules(self.stop))
        _check_stop_rules(self)

    def _check_criteria(self) -> None:
        """Exactly one of metric, fitness and objectives; objectives and constraints
        checked and stored in their plain form (one objective is a metric)."""
        has_fitness = self.fitness is not None or self.fitness_ref is not None
        given = [name for name, present in (("metric", self.metric is not None),
                                            ("fitness", has_fitness),
                                            ("objectives", self.objectives is not None))
                 if present]
        if len(given) != 1:
            conflict = f" (got {' and '.join(given)})" if given else ""
            raise ConfigError(
                "give exactly one of metric='name' (a key of the metrics your function "
                "returns), fitness=callable(metrics) -> float, or objectives={'name': 'max', "
                f"'other': 'min'}} for several{conflict}"
            )
        if self.objectives is not None:
            pairs = criteria_from(self.objectives, None).objectives
            if len(pairs) == 1:  # one objective is the study's metric
                object.__setattr__(self, "metric", pairs[0][0])
                object.__setattr__(self, "mode", pairs[0][1])
                object.__setattr__(self, "objectives", None)
            else:
                object.__setattr__(self, "objectives", dict(pairs))
        constraints = criteria_from(self.objectives, self.constraints,
                                    single=("-", self.mode)).constraints
        object.__setattr__(self, "constraints",
                           {b.metric: b.to_dict() for b in constraints} or None)
        if self.objectives is not None and isinstance(self.explore, PB2):
            raise ConfigError(
                "PB2 models one number; with several objectives explore with "
                "pbtune.Perturb() or pbtune.Resample(), or give one fitness=callable(metrics) "
                "that weighs them"
            )

    @property
    def criteria(self) -> Criteria:
        """How trials compare: the objectives (one: the fitness) and the constraints."""
        return criteria_from(self.objectives, self.constraints,
                             single=(self.metric or "fitness", self.mode))

    @property
    def required_metrics(self) -> dict[str, str]:
        """The metrics every result must hold, each with what needs it."""
        needed = {name: "objective" for name in self.objectives or ()}
        if self.metric is not None:
            needed[self.metric] = "metric"
        for name in self.constraints or ():
            needed.setdefault(name, "constrained metric")
        return needed

    @property
    def heartbeat_interval(self) -> float:
        return min(max(0.05, self.heartbeat_timeout / 6.0), _MAX_HEARTBEAT_INTERVAL_S)

    def fitness_of(self, metrics: Mapping[str, float]) -> float:
        if self.fitness is None and self.fitness_ref is not None:
            # Imported when first needed, so reading a study never needs the user's code.
            object.__setattr__(self, "fitness", import_object(self.fitness_ref, "fitness"))
        if self.fitness is not None:
            return float(self.fitness(metrics))
        assert self.metric is not None, "a study of several objectives has no one fitness"
        return float(metrics[self.metric])

    @property
    def evaluated(self) -> bool:
        """True if trials are scored by an evaluate function after training."""
        return self.evaluate is not None or self.evaluate_ref is not None

    def evaluate_fn(self) -> EvaluateFn:
        """The evaluate function, imported from its reference where this process lacks it."""
        if self.evaluate is None:
            assert self.evaluate_ref is not None, "only for evaluated studies"
            fn = import_object(self.evaluate_ref, "evaluate function")
            if not callable(fn):
                raise ConfigError(f"evaluate {self.evaluate_ref!r} is not callable")
            object.__setattr__(self, "evaluate", fn)
        assert callable(self.evaluate)
        return self.evaluate

    def to_dict(self) -> dict[str, Any]:
        # Settings added since the first release are stored only when set, so a study
        # made before them compares equal to the same settings given again.
        extra: dict[str, Any] = {key: value for key, value in (
            ("evaluate", self.evaluate_ref),
            ("objectives", dict(self.objectives) if self.objectives else None),
            ("constraints", {k: dict(v) for k, v in (self.constraints or {}).items()} or None),
            ("early_stop", self.early_stop.to_dict() if self.early_stop else None),
        ) if value is not None}
        if self.retry_delay != DEFAULT_RETRY_DELAY_S:
            extra["retry_delay"] = self.retry_delay
        if self.stop:  # absent without rules: studies stored before rules compare equal
            extra["stop"] = [rule.to_dict() for rule in self.stop]
        return {
            "space": self.space.to_dict(),
            "metric": self.metric,
            "fitness": self.fitness_ref,
            "mode": self.mode,
            "population_size": self.population_size,
            "steps_per_trial": self.steps_per_trial,
            "max_steps": self.max_steps,
            "exploit": self.exploit.to_dict(),
            "explore": self.explore.to_dict(),
            "checkpoint_root": self.checkpoint_root,
            "seed": self.seed,
            "max_retries": self.max_retries,
            "keep_best": self.keep_best,
            "heartbeat_timeout": self.heartbeat_timeout,
            "trial_timeout": self.trial_timeout,
            **extra,
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        fitness: FitnessFn | None = None,
        evaluate: EvaluateFn | None = None,
    ) -> StudyConfig:
        fields = dict(data)
        fields["space"] = SearchSpace.from_dict(fields["space"])
        fields["exploit"] = exploit_from_dict(fields.get("exploit", "tournament"))
        fields["explore"] = explore_from_dict(fields.get("explore", "perturb"))
        fields["early_stop"] = early_stop_from_dict(fields.get("early_stop"))
        fields["stop"] = stop_from_dict(fields.get("stop"))
        fields["fitness_ref"] = fields.pop("fitness", None)
        if fitness is not None:
            fields["fitness"] = fitness
        fields["evaluate_ref"] = fields.pop("evaluate", None)
        if evaluate is not None:
            fields["evaluate"] = evaluate
        return cls(**fields)

    def differences(self, other: StudyConfig) -> list[str]:
        """Names of the settings in which ``other`` differs (for load_if_exists)."""
        return sorted({change.name.split(".")[0]
                       for change in compare_settings(self.to_dict(), other.to_dict())})


def directions(config: StudyConfig) -> dict[str, Mode]:
    """The study's objectives and which way each is better: ``{metric: mode}``, or
    ``{"fitness": mode}`` for a fitness function. The one place that says what a study
    optimizes, for whatever judges its results by name (stop rules)."""
    if config.objectives is not None:
        return dict(config.objectives)
    return {config.metric if config.metric is not None else FITNESS: config.mode}


def stop_context(config: StudyConfig, max_steps: int | None = None) -> StopContext:
    """What the study's stop rules may know of it (``max_steps``: the stored budget,
    which another process may have changed; the config's by default)."""
    return StopContext(
        directions=directions(config),
        max_steps=config.max_steps if max_steps is None else max_steps,
        population_size=config.population_size,
        steps_per_trial=config.steps_per_trial,
        fitness_function=config.metric is None and config.objectives is None,
        constraints=config.criteria.constraints,
    )


def _check_stop_rules(config: StudyConfig) -> None:
    """Each rule can judge this study, and its stored form is JSON with a ``type``."""
    context = stop_context(config)
    for rule in config.stop:
        rule.check_study(context)
        stored = rule.to_dict()
        try:
            json.dumps(stored, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"stop rule {describe(rule)}: to_dict() must return JSON, "
                              f"got {stored!r} ({error})") from None
        if not isinstance(stored, dict) or not isinstance(stored.get("type"), str):
            raise ConfigError(f"stop rule {describe(rule)}: to_dict() must return a dict "
                              f"with a 'type' ('module:Class' for your own), got {stored!r}")


def _positive_int(name: str, value: Any, *, high: int, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    # Python refuses to print the longest ints; their size says enough.
    shown = f"an int of {value.bit_length()} bits" if (
        isinstance(value, int) and value.bit_length() > 64) else repr(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {shown}")
    if value > high:
        raise ConfigError(f"{name} must be an int <= {high}, got {shown}")


def retry_backoff(config: StudyConfig, failures: int) -> float:
    """Seconds a member's retry waits after its ``failures``-th failure in a row:
    ``retry_delay`` doubled for each failure after the first, at most `MAX_RETRY_DELAY_S`
    (or ``retry_delay``, if larger); 0 with ``retry_delay=0``.

    Example: ``retry_delay=1`` waits 1, 2, 4, 8 ... 256, 300, 300 seconds.
    """
    if failures <= 0 or config.retry_delay == 0:
        return 0.0
    cap = max(MAX_RETRY_DELAY_S, config.retry_delay)
    doublings = min(failures - 1, 32)  # 2**32 seconds is beyond any cap
    return float(min(config.retry_delay * 2.0**doublings, cap))


def _check_retry_delay(value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(
            f"retry_delay must be a number of seconds >= 0 (0: retry at once), got {value!r}"
        )


def _positive_float(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
