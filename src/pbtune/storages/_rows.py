"""Rows of the trials table as the records the storage hands out."""

from __future__ import annotations

from sqlalchemy import RowMapping

from pbtune.checkpoints import as_location
from pbtune.storages._records import HeldTrial
from pbtune.trial import FrozenTrial, TrialState


def row_to_trial(row: RowMapping) -> FrozenTrial:
    return FrozenTrial(
        id=row["number"],
        member=row["member"],
        generation=row["generation"],
        parent_id=row["parent_id"],
        params=dict(row["params"]),
        start_step=row["start_step"],
        end_step=row["end_step"],
        state=TrialState(row["state"]),
        metrics=dict(row["metrics"]) if row["metrics"] is not None else None,
        fitness=row["fitness"],
        checkpoint=as_location(row["checkpoint"]) if row["checkpoint"] else None,
        checkpoint_gone=as_location(row["checkpoint_gone"]) if row["checkpoint_gone"] else None,
        error=row["error"],
        decision=row["decision"],
        worker=row["worker"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        study_id=row["study_id"],
    )


def row_to_held(row: RowMapping) -> HeldTrial:
    return HeldTrial(row_to_trial(row), row["claim"], row["heartbeat_at"], row.get("silence"))
