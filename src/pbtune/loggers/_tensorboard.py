"""`TensorBoard`: every finished trial of a study written as TensorBoard event files.

The writer is the ``tensorboard`` package's own event-file writer
(``tensorboard.summary.writer.event_file_writer``), the one PyTorch's ``SummaryWriter``
writes through; it needs neither PyTorch nor TensorFlow, only numpy and protobuf, and
the same package is the TensorBoard that reads the files (``pip install
'pbtune[tensorboard]'`` is all it takes to write and to look).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, get_args

from pbtune._errors import ConfigError
from pbtune.loggers._trial import (
    Finished,
    number,
    optional,
    param_text,
    study_folder,
    trial_name,
)
from pbtune.trial import FrozenTrial

if TYPE_CHECKING:
    from pbtune.study import Study

Per = Literal["trial", "member"]
TRIAL_TEXT = "pbtune/trial"
LINEAGE_TEXT = "pbtune/lineage"
PARAMS = "params/"


class TensorBoard:
    """A callback that writes each finished trial to TensorBoard event files under
    ``log_dir/<study folder>/``: ``study.optimize(train, callbacks=[TensorBoard("runs")])``.
    The study's folder is named as its checkpoint folder, ``<study name>-<hash>``
    (``runs/logged-6ece33b1/``): a study deleted and made again under the same name
    writes runs of its own, not curves added to the old study's.

    ``per="trial"`` (the default): a run (a folder, ``trial-000042``) per trial, with
    its metrics at its ``end_step``, its reports at their steps, its numeric params as
    scalars ``params/<name>`` over its steps (together the runs draw the schedules),
    its params as hparams (the HParams tab compares trials) and a text ``pbtune/trial``
    of its lineage (member, generation, parent, decision), state and checkpoint.

    ``per="member"``: a run per member (``member-003``), one curve per metric over the
    member's steps, its params as a staircase ``params/<name>`` (the member's schedule),
    and a text ``pbtune/lineage`` at each trial's first step that says where it came
    from: after an exploit the curve goes on from the copied trial's checkpoint, and the
    text says which. A failed or lost trial adds only its text (its retry draws the
    curve).

    A relative ``log_dir`` is taken from the current folder now. Then run
    ``tensorboard --logdir runs``. Needs ``pip install 'pbtune[tensorboard]'``.

    Example::

        from pbtune.loggers import TensorBoard
        study.optimize(train, workers=4, callbacks=[TensorBoard("runs", per="member")])
    """

    def __init__(self, log_dir: str | os.PathLike[str] = "runs", *, per: Per = "trial") -> None:
        self._events = _Events()  # imports tensorboard: a missing one is said now
        if per not in get_args(Per):
            raise ConfigError(f"TensorBoard per= must be 'trial' or 'member', got {per!r}")
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir).strip():
            raise ConfigError(f"TensorBoard log_dir must be a folder path, got {log_dir!r}")
        self.log_dir = Path(log_dir).expanduser().resolve()
        self.per: Per = per
        self._writers: dict[Path, Any] = {}  # per member: kept open, flushed per trial
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TensorBoard({str(self.log_dir)!r}, per={self.per!r})"

    def run_dir(self, study: Study, trial: FrozenTrial) -> Path:
        """The folder of the run that ``trial`` of ``study`` goes to:
        ``log_dir/<study folder>/trial-000042`` (or ``member-003``)."""
        run = trial_name(trial.id) if self.per == "trial" else f"member-{trial.member:03d}"
        return self.log_dir / study_folder(study) / run

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        """Write ``trial`` (finished) of ``study``; `Study.optimize` calls it."""
        finished = Finished.read(study, trial)
        folder = self.run_dir(study, trial)
        with self._lock:
            if self.per == "trial":
                writer = self._events.writer(folder)
                try:
                    self._write_trial(writer, finished)
                finally:
                    writer.close()
            else:
                writer = self._writers.get(folder)
                if writer is None:
                    writer = self._writers[folder] = self._events.writer(folder)
                self._write_member(writer, finished)
                writer.flush()

    def close(self) -> None:
        """Close the event files kept open (``per="member"``); a later trial opens new
        ones. Everything is flushed after each trial anyway."""
        with self._lock:
            writers, self._writers = list(self._writers.values()), {}
        for writer in writers:
            writer.close()

    def __enter__(self) -> TensorBoard:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _write_trial(self, writer: Any, finished: Finished) -> None:
        trial, events = finished.trial, self._events
        at = trial.finished_at or time.time()
        hparams: dict[str, bool | float | str] = {
            name: value if isinstance(value, (bool, int, float, str)) else param_text(value)
            for name, value in trial.params.items()
        }
        hparams.update({"pbtune/member": trial.member, "pbtune/generation": trial.generation})
        writer.add_event(events.hparams(hparams, f"{finished.study}/{finished.name}",
                                        trial.started_at or at))
        writer.add_event(events.text(TRIAL_TEXT, finished.text(), trial.end_step, at))
        self._write_scalars(writer, finished, at)

    def _write_member(self, writer: Any, finished: Finished) -> None:
        trial = finished.trial
        at = trial.finished_at or time.time()
        writer.add_event(self._events.text(LINEAGE_TEXT, finished.text(), trial.start_step, at))
        if finished.complete:
            self._write_scalars(writer, finished, at)

    def _write_scalars(self, writer: Any, finished: Finished, at: float) -> None:
        """The params over the trial's steps, its reports, and its final metrics."""
        trial, events = finished.trial, self._events
        for name, value in trial.params.items():
            numeric = number(value)
            if numeric is not None:
                for step in (trial.start_step, trial.end_step):
                    writer.add_event(events.scalar(PARAMS + name, numeric, step, at))
        for step, values in finished.reports:
            for name, report in values.items():
                writer.add_event(events.scalar(name, report, step, at))
        for name, value in finished.final.items():
            writer.add_event(events.scalar(name, value, trial.end_step, at))


class _Events:
    """The event records of the ``tensorboard`` package, imported when a logger is made."""

    def __init__(self) -> None:
        what = "the TensorBoard logger"
        self._writer = _optional_attr(
            "tensorboard.summary.writer.event_file_writer", "EventFileWriter", what)
        self._event = _optional_attr("tensorboard.compat.proto.event_pb2", "Event", what)
        self._summary = _optional_attr("tensorboard.compat.proto.summary_pb2", "Summary", what)
        self._hparams = _optional_attr("tensorboard.plugins.hparams.summary_v2", "hparams_pb",
                                       what)
        self._text = _optional_attr("tensorboard.plugins.text.summary_v2", "text_pb", what)

    def writer(self, folder: Path) -> Any:
        return self._writer(str(folder))

    def scalar(self, tag: str, value: float, step: int, wall_time: float) -> Any:
        summary = self._summary(value=[self._summary.Value(tag=tag, simple_value=value)])
        return self._event(wall_time=wall_time, step=step, summary=summary)

    def text(self, tag: str, text: str, step: int, wall_time: float) -> Any:
        return self._event(wall_time=wall_time, step=step, summary=self._text(tag, text))

    def hparams(self, values: dict[str, bool | float | str], group: str,
                start_time: float) -> Any:
        summary = self._hparams(values, trial_id=group, start_time_secs=start_time)
        return self._event(wall_time=start_time, step=0, summary=summary)


def _optional_attr(module: str, name: str, what: str) -> Any:
    return getattr(optional(module, "tensorboard", what), name)
