"""Read-only records handed to users: `FrozenTrial` and schedule `Segment`s."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbtune.trial._state import TrialState


@dataclass(frozen=True)
class FrozenTrial:
    """One trial as stored: a segment of training for one member.

    ``id`` is the trial's number in its study (0, 1, 2, ... in the order trials were
    made): the one name a trial has in the API, the CLI, the dashboard, the logs and its
    checkpoint folder (``trial-000042``). ``parent_id`` names the trial whose checkpoint
    it warm-started from (None for a member's first trial); ``checkpoint`` is its committed
    checkpoint: a `Path` for a local directory, a `str` URL (``s3://bucket/prefix/...``)
    for a remote one, or None when it has none (not finished, failed, or
    garbage-collected). ``checkpoint_gone`` is the checkpoint it had when that was found
    missing or damaged (deleted from outside pbtune): nothing warm-starts from it again;
    None for every other trial. ``worker`` names the worker that ran it last
    (``host:pid:tag``, or ``ray:...``).
    """

    id: int
    member: int
    generation: int
    parent_id: int | None
    params: dict[str, Any]
    start_step: int
    end_step: int
    state: TrialState
    metrics: dict[str, float] | None = None
    fitness: float | None = None
    checkpoint: Path | str | None = None
    error: str | None = None
    decision: str = "initial"
    worker: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    study_id: int | None = field(default=None, repr=False)
    checkpoint_gone: Path | str | None = None

    @property
    def number(self) -> int:
        """The same as ``id`` (the trial's number in its study), as Optuna names it."""
        return self.id

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class Segment:
    """One segment of a schedule: train from ``start_step`` to ``end_step`` with ``params``."""

    start_step: int
    end_step: int
    params: dict[str, Any]
    trial_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_step": self.start_step,
            "end_step": self.end_step,
            "params": dict(self.params),
            "trial_id": self.trial_id,
        }
