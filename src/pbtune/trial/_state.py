from __future__ import annotations

import enum


class TrialState(str, enum.Enum):
    """Where a trial is in its life: QUEUED -> RUNNING -> COMPLETE | FAILED."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
