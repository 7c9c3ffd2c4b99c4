"""Checking what a training or evaluate function returned, and its fitness."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from pbtune._errors import TrialFailedError
from pbtune.controller._config import StudyConfig


def check_metrics(result: Any, config: StudyConfig) -> tuple[dict[str, float], float | None]:
    """The metrics a training function returned, and their fitness; or TrialFailedError."""
    return fitness_of(clean_metrics(result, config), config)


def clean_metrics(result: Any, config: StudyConfig, source: str = "the training function"
                  ) -> dict[str, float]:
    """``result`` checked to be a dict of finite numbers by name; or TrialFailedError."""
    if not isinstance(result, Mapping):
        raise TrialFailedError(
            f"{source} returned {result!r}; it must return a dict of metrics, "
            f"e.g. {{{config.metric or 'accuracy'!r}: 0.93}}"
        )
    metrics: dict[str, float] = {}
    for name, value in result.items():
        if not isinstance(name, str):  # 1 and "1" would be one metric once stored as JSON
            raise TrialFailedError(
                f"metric names must be strings, got {name!r} ({type(name).__name__})"
            )
        number = _as_number(value)
        if number is None:
            raise TrialFailedError(
                f"metric {name!r} is {value!r}; metrics must be numbers"
            )
        if not math.isfinite(number):
            raise TrialFailedError(f"metric {name!r} is {number!r}; metrics must be finite")
        metrics[name] = number
    return metrics


def fitness_of(metrics: dict[str, float], config: StudyConfig
               ) -> tuple[dict[str, float], float | None]:
    """The fitness of checked metrics (the study's metric, or its fitness function); None
    for a study of several objectives, whose trials compare by their metrics."""
    for name, need in config.required_metrics.items():
        if name not in metrics:
            raise TrialFailedError(_missing(metrics, name, need, config))
    if config.objectives is not None:
        return metrics, None
    try:
        fitness = config.fitness_of(metrics)
    except Exception as error:
        raise TrialFailedError(f"the fitness function raised {error!r}") from error
    if not math.isfinite(fitness):
        raise TrialFailedError(f"fitness is {fitness!r}; it must be a finite number")
    return metrics, fitness


def _missing(metrics: dict[str, float], name: str, need: str, config: StudyConfig) -> str:
    text = f"the returned metrics {sorted(metrics)} lack the study's {need} {name!r}"
    if need == "objective":
        return f"{text} (objectives: {', '.join(config.objectives or ())})"
    if need == "constrained metric":
        bounds = " and ".join(str(b) for b in config.criteria.constraints)
        return f"{text} (constraints: {bounds}); return it from every trial"
    return text


def _as_number(value: Any) -> float | None:
    """``value`` as a float; None for what is not one number (a bool, a string, an array)."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or getattr(value, "ndim", 0) != 0:
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf  # an int too large for a float
    except (TypeError, ValueError):
        return None
