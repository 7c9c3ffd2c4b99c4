"""What a strategy may see beyond the population: a bounded window of recent results.

A model-based explore (PB2) learns how the params drive progress from what recent trials
did; it also needs the params of the trials that are still running, so that parallel
members do not all pick the same point. The controller reads both inside the decision's
transaction and hands them in as plain, read-only data: the strategy stays a pure function,
and a restarted controller decides the same from the same rows. The window is bounded by
the strategy's ``history_size`` (not by the study's length), so a decision costs the same
at the hundredth trial as at the hundred-thousandth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Observation:
    """One recent COMPLETE trial: its member trained ``params`` from ``start_step`` to
    ``end_step``, warm-starting from ``parent_id`` whose fitness was ``start_fitness``
    (None for a member's first trial, which starts from scratch), and ended at
    ``end_fitness``. Fitness values are as stored (not turned by ``mode``)."""

    trial_id: int
    member: int
    parent_id: int | None
    params: Mapping[str, Any]
    start_step: int
    end_step: int
    start_fitness: float | None
    end_fitness: float


@dataclass(frozen=True)
class Pending:
    """A trial decided but not finished (queued, running or waiting for its evaluation):
    its member will train ``params`` from ``start_step``, from a checkpoint whose fitness
    was ``start_fitness``."""

    trial_id: int
    member: int
    params: Mapping[str, Any]
    start_step: int
    end_step: int
    start_fitness: float | None


@dataclass(frozen=True)
class History:
    """The recent results of the whole population, oldest first (at most the strategy's
    ``history_size``), and the trials still pending. Empty for strategies that read none."""

    observations: tuple[Observation, ...] = ()
    pending: tuple[Pending, ...] = ()


NO_HISTORY = History()
