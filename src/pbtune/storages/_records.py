"""Plain records the storage hands to the controller and the study API."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pbtune.trial import FrozenTrial


class StudyState(str, enum.Enum):
    """Where a study is: RUNNING while trials are left; COMPLETE when every member has
    reached ``max_steps`` (or given up after ``max_retries`` failures), or a stop rule or
    `Study.stop` ended it; FAILED when every member's first trial failed, or every member
    gave up (`optimize` then raises `StudyFailedError` with the first error)."""

    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


class MemberState(str, enum.Enum):
    ACTIVE = "ACTIVE"
    DONE = "DONE"
    FAILED = "FAILED"


@dataclass(frozen=True)
class StudyRecord:
    id: int
    name: str
    config: dict[str, Any]
    state: StudyState
    error: str | None
    checkpoint_dir: str
    created_at: float
    stop_reason: str | None = None  # why it ended before its budget, if it did


@dataclass(frozen=True)
class MemberRecord:
    member: int
    latest_complete_id: int | None
    failures: int
    state: MemberState
    lagging: int = 0  # results in a row at the bottom of the population


@dataclass(frozen=True)
class NewTrial:
    """A trial to enqueue; the storage assigns its id and number. ``not_before``: no
    worker claims it before this time (a retry's backoff); None: at once."""

    member: int
    generation: int
    parent_id: int | None
    params: dict[str, Any]
    start_step: int
    end_step: int
    decision: str
    not_before: float | None = None


@dataclass(frozen=True)
class HeldTrial:
    """A trial a worker holds (RUNNING or EVALUATING), with what fences its writes: the
    claim token and the time of its last heartbeat. These stay between the storage and
    the controller; users and strategies get the `FrozenTrial` alone.

    ``heartbeat_at`` is on the database's clock, so only the database can tell how old it
    is: ``silence``, the seconds since, is set by the reads that judge heartbeats
    (`Storage.held_trials` with ``silent_for``), None otherwise."""

    trial: FrozenTrial
    claim: str
    heartbeat_at: float | None
    silence: float | None = None
