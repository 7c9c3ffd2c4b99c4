"""`replay`: train one model from scratch on a schedule."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbtune._errors import ConfigError
from pbtune.controller import import_object
from pbtune.study._schedule import segment_from_dict
from pbtune.trial import Segment, TrainFn, Trial


@dataclass(frozen=True)
class ReplayResult:
    """What a replay produced: the metrics after each segment and the final checkpoint."""

    metrics: dict[str, float]
    segment_metrics: list[dict[str, float]]
    checkpoint: Path


def replay(
    train: TrainFn | str,
    schedule: Sequence[Segment | Mapping[str, Any]],
    *,
    checkpoint_root: str | Path | None = None,
    seed: int = 0,
) -> ReplayResult:
    """Train one model from step 0 along ``schedule``, each segment warm-starting from the
    previous one's checkpoint; return the final metrics. ``seed`` is what the function sees
    as ``trial.seed``: pass the study's (``study.config.seed``) to rebuild its model.
    Without ``checkpoint_root`` the checkpoints go to a new temporary folder that is
    yours to keep or delete (``result.checkpoint`` is in it); `pbtune replay` deletes it.

    Example::

        result = pbtune.replay(train, study.schedule(), checkpoint_root="replay")
        print(result.metrics["accuracy"])
    """
    fn: TrainFn = import_object(train, "training function") if isinstance(train, str) else train
    segments = [s if isinstance(s, Segment) else segment_from_dict(s) for s in schedule]
    _check_schedule(segments)
    root = Path(checkpoint_root) if checkpoint_root is not None else Path(
        tempfile.mkdtemp(prefix="pbtune-replay-")
    )
    root.mkdir(parents=True, exist_ok=True)
    parent: Path | None = None
    history: list[dict[str, float]] = []
    for index, segment in enumerate(segments):
        directory = root / f"segment-{index:04d}"
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir()
        trial = Trial(
            id=index,
            member=0,
            generation=index,
            params=dict(segment.params),
            start_step=segment.start_step,
            end_step=segment.end_step,
            parent_checkpoint=parent,
            checkpoint_dir=directory,
            study_name="replay",
            seed=seed,
        )
        result = fn(trial)
        if not isinstance(result, Mapping):
            raise ConfigError(f"replay: the training function returned {result!r}, not a dict")
        history.append({str(k): float(v) for k, v in result.items()})
        parent = directory
    assert parent is not None
    return ReplayResult(metrics=history[-1], segment_metrics=history, checkpoint=parent)


def _check_schedule(segments: Sequence[Segment]) -> None:
    if not segments:
        raise ConfigError("replay needs a schedule with at least one segment")
    if segments[0].start_step != 0:
        raise ConfigError(
            f"a schedule must start at step 0, this one starts at {segments[0].start_step}"
        )
    for before, after in itertools.pairwise(segments):
        if after.start_step != before.end_step:
            raise ConfigError(
                f"schedule has a gap: a segment ends at step {before.end_step} and the next "
                f"starts at {after.start_step}"
            )
    for segment in segments:
        if segment.end_step <= segment.start_step:
            raise ConfigError(f"segment {segment} must end after it starts")
