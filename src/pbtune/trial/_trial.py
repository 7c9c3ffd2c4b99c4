"""The live `Trial` handle that a training function receives."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ReportSink = Callable[[int, dict[str, float]], None]


class Trial:
    """What a training function sees: params, the steps to train and where checkpoints are.

    Train from ``start_step`` to ``end_step``; warm-start from ``parent_checkpoint``
    (a local, read-only directory, None for a member's first trial; with a remote
    ``checkpoint_root`` it is a verified download); write this trial's checkpoint into the
    local directory ``checkpoint_dir``; return the metrics at ``end_step``. ``seed`` is the
    study's seed, for code that must build the same initial model in every member and in a
    replay. ``id`` is the trial's number in its study (also ``number``), the name it has
    everywhere else (its checkpoint folder is ``trial-000042``).

    Example::

        def train(trial: pbtune.Trial) -> dict[str, float]:
            model = load(trial.parent_checkpoint) if trial.parent_checkpoint else new_model()
            for step in range(trial.start_step, trial.end_step):
                model.step(lr=trial.params["lr"])
            model.save(trial.checkpoint_dir / "model.npz")
            return {"accuracy": model.accuracy()}
    """

    def __init__(
        self,
        *,
        id: int,
        member: int,
        generation: int,
        params: dict[str, Any],
        start_step: int,
        end_step: int,
        parent_checkpoint: Path | None,
        checkpoint_dir: Path,
        study_name: str,
        seed: int = 0,
        report_sink: ReportSink | None = None,
    ) -> None:
        self.id = id
        self.member = member
        self.generation = generation
        self.params = dict(params)
        self.start_step = start_step
        self.end_step = end_step
        self.parent_checkpoint = parent_checkpoint
        self.checkpoint_dir = checkpoint_dir
        self.study_name = study_name
        self.seed = seed
        self._report_sink = report_sink

    @property
    def number(self) -> int:
        """The same as ``id``: the trial's number in its study."""
        return self.id

    def report(self, step: int, **metrics: float) -> None:
        """Record intermediate metrics at ``step`` (optional; shown in plots)."""
        clean = {name: float(value) for name, value in metrics.items()}
        if self._report_sink is not None:
            self._report_sink(int(step), clean)

    def __repr__(self) -> str:
        return (
            f"Trial(id={self.id}, member={self.member}, steps={self.start_step}->{self.end_step}, "
            f"params={self.params!r})"
        )


TrainFn = Callable[[Trial], Mapping[str, float]]
"""A training function: trains one `Trial` and returns its metrics (or, as a study's
``evaluate`` function, scores a trained one)."""
