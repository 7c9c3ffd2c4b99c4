"""One claimed trial from its start to its tell: the protocol every worker follows.

`Controller.start` hands a worker a `TrialRun`. The worker calls the user's function
through it (`call`), then makes the checkpoint durable (`commit`) and tells the result
(`tell`), or gives up (`fail`); it keeps only the threads (heartbeats, the background
tell). The handle, staging, the parent's checkpoint, the metrics checks, the evaluation
and the text stored for a failure are all decided here, whichever backend runs the loop.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from pbtune._errors import CheckpointGoneError, PbtuneError, StorageError, TrialFailedError
from pbtune.checkpoints import CheckpointExistsError, CheckpointStore, Location
from pbtune.controller._claims import Claimed, Result, Role
from pbtune.controller._config import StudyConfig
from pbtune.storages import StudyRecord
from pbtune.trial import TrainFn, Trial, TrialState

_log = logging.getLogger("pbtune.worker")  # what a user sees of a worker's trials

class RunsTrials(Protocol):
    """What a run needs of the `pbtune.controller.Controller` that started it."""

    study: StudyRecord
    config: StudyConfig

    def parent_checkpoint(self, trial: Claimed) -> Path | None: ...
    def report(self, trial_id: int, step: int, values: Mapping[str, float | None]) -> None: ...
    def check(self, claimed: Claimed, metrics: Any) -> Result: ...
    def tell_and_ask(self, claimed: Claimed, metrics: Mapping[str, float] | Result,
                     checkpoint: Location | None, worker: str | None, role: Role = "both"
                     ) -> tuple[bool, Claimed | None]: ...
    def tell_failure(self, claimed: Claimed, error: BaseException | str, *,
                     counts: bool = True, lost: bool = False) -> bool: ...


class TrialRun:
    """A claimed trial being trained (or evaluated) by one worker.

    For a trial to train, ``call`` stages an empty checkpoint directory, opens the
    parent's checkpoint and runs ``train``; ``commit`` makes the directory the trial's
    checkpoint. For a trained trial of a study with an ``evaluate`` function, ``call``
    runs that function on the committed checkpoint (read-only), and ``commit`` has
    nothing to do. ``tell`` and ``fail`` then record the outcome; a result the study
    refuses (the claim was lost meanwhile) leaves no checkpoint behind.

    Example::

        run = controller.start(claimed)
        try:
            run.call(train)
            run.commit()
            following = run.tell(worker, role)
        except Exception as error:
            run.fail(error)
    """

    def __init__(self, controller: RunsTrials, store: CheckpointStore,
                 claimed: Claimed) -> None:
        self.claimed = claimed
        self._controller = controller
        self._store = store
        self.evaluation = claimed.trial.state == TrialState.EVALUATING
        self._staging: Path | None = None
        self._checkpoint: Location | None = None
        self._result: Result | None = None
        self.call_s = 0.0  # how long the user's function ran

    @property
    def may_tell_in_background(self) -> bool:
        """Whether its result may be told while the worker's next trial trains: only a
        training result that is final (one waiting for an evaluation is told at once,
        so the evaluation can start)."""
        return not self.evaluation and not self._controller.config.evaluated

    def call(self, train: TrainFn, started: Callable[[], None] | None = None) -> None:
        """Run the user's function on this trial's handle and check what it returned:
        ``train`` for a trial to train, the study's evaluate function for one to evaluate.
        ``started`` is called once the set-up is done, as the function starts.

        Raises what the function raised, or `TrialFailedError` for a result that is
        not a dict of finite metrics (the caller then calls `fail`).
        """
        handle = self._open()
        fn = self._controller.config.evaluate_fn() if self.evaluation else train
        if started is not None:
            started()
        began = time.perf_counter()
        try:
            returned = fn(handle)
        except (TrialFailedError, PbtuneError):
            raise
        except (Exception, SystemExit) as error:
            if not self.evaluation:
                raise  # the user's own traceback is what is stored
            raise TrialFailedError(f"the evaluate function raised {error!r}") from error
        finally:
            self.call_s = time.perf_counter() - began
        # Checked now, in this thread: a metric that is a live object (a tensor the next
        # trial reuses) is read before anything else can change it. What the function
        # returned is checked first: a NaN loss says more than the checkpoint it skipped.
        self._result = self._controller.check(self.claimed, returned)
        if self._staging is not None:
            _check_wrote_checkpoint(handle)

    def commit(self) -> None:
        """Make the trained checkpoint durable under its final name (a remote store
        uploads the files, then its manifest); the tell that records it is the commit
        point. An evaluation has nothing to commit."""
        if self._staging is not None:
            number = self.claimed.trial.number
            # Set first: a commit that fails half-way leaves nothing under the final name.
            self._checkpoint = self._store.final(number)
            try:
                self._checkpoint = self._store.commit(self._staging, number)
            except CheckpointExistsError:
                # Another run's of this trial (it was put back in the queue while this
                # one could not be stopped): not this run's to delete.
                self._checkpoint = None
                raise
            self._staging = None

    def tell(self, worker: str | None = None, role: Role = "both") -> Claimed | None:
        """Record the result (see `Controller.tell_and_ask`); return the next work claimed
        for ``worker``, if any. A refused result's checkpoint is deleted."""
        assert self._result is not None, "call() comes before tell()"
        told, following = self._controller.tell_and_ask(
            self.claimed, self._result, self._checkpoint, worker, role
        )
        if not told:
            self._remove_checkpoint()
        return following

    def fail(self, error: BaseException) -> None:
        """Record the trial as FAILED with ``error`` (its member retries it, bounded)
        and delete what it wrote. A trial whose parent checkpoint is gone did nothing
        wrong: its retry, from another parent, uses up none of ``max_retries``."""
        text = error_text(error)
        # Bounded all the same: a retry never warm-starts from a checkpoint recorded as
        # gone, so each such failure finds one more gone (or the retry has no parent).
        counts = self.evaluation or not isinstance(error, CheckpointGoneError)
        _log.warning("trial %s failed: %s", self.claimed.trial.id,
                     text.strip().splitlines()[-1])
        if self._staging is not None:
            self._store.discard(self._staging)
            self._staging = None
        self._remove_checkpoint()
        self._controller.tell_failure(self.claimed, text, counts=counts)

    def _remove_checkpoint(self) -> None:
        if self._checkpoint is not None:
            try:
                self._store.remove(self._checkpoint)
            except OSError as error:  # the end-of-run sweep deletes it
                _log.warning("could not delete checkpoint %s: %s", self._checkpoint, error)
            self._checkpoint = None

    def _open(self) -> Trial:
        """The handle the user's function receives: a fresh staging directory and the
        parent's checkpoint to train; the committed checkpoint to evaluate."""
        trial = self.claimed.trial
        parent: Path | None = None
        if self.evaluation:
            if trial.checkpoint is None:
                raise TrialFailedError(f"trial {trial.id} to evaluate has no checkpoint")
            directory = self._store.open(trial.checkpoint, trial.id)  # verified, read-only
        else:
            directory = self._staging = self._store.stage(trial.id, self.claimed.claim)
            parent = self._controller.parent_checkpoint(self.claimed)
        return Trial(
            id=trial.id,
            member=trial.member,
            generation=trial.generation,
            params=trial.params,
            start_step=trial.start_step,
            end_step=trial.end_step,
            parent_checkpoint=parent,
            checkpoint_dir=directory,
            study_name=self._controller.study.name,
            seed=self._controller.config.seed,
            report_sink=_report_sink(self._controller, trial.id),
        )


def _check_wrote_checkpoint(trial: Trial) -> None:
    """A trial to train must leave a checkpoint: its children warm-start from it. An empty
    directory would be committed and fail only a generation later, in the child, with
    the user's own error about a missing file; fail here instead, with what to write."""
    if any(path.is_file() for path in trial.checkpoint_dir.rglob("*")):
        return
    raise TrialFailedError(
        f"trial {trial.id} wrote no checkpoint: trial.checkpoint_dir (for a command, "
        "$PBTUNE_CHECKPOINT_DIR) was left empty. Save there what your code needs to go on "
        "training (the model's weights, the optimizer's state, the step), and load it from "
        "trial.parent_checkpoint when that is not None: every later trial warm-starts "
        "from a checkpoint, its own member's or a better member's it copies."
    )


def _report_sink(controller: RunsTrials, trial_id: int) -> Callable[[int, dict[str, float]], None]:
    """Intermediate metrics go to the storage; they are optional, so a value JSON cannot
    hold becomes null and a storage hiccup costs the report, never the trial."""

    def sink(step: int, values: dict[str, float]) -> None:
        clean: dict[str, Any] = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
        try:
            controller.report(trial_id, step, clean)
        except StorageError as error:
            _log.warning("report of trial %s at step %s was not stored: %s", trial_id, step,
                         error)

    return sink


def error_text(error: BaseException | str) -> str:
    """What is stored for a failed trial: a pbtune message, or the user's traceback."""
    if isinstance(error, str):
        return error
    if isinstance(error, PbtuneError):
        cause = error.__cause__
        detail = "".join(traceback.format_exception(cause)) if cause is not None else ""
        return f"{type(error).__name__}: {error}\n{detail}".rstrip() + "\n"
    return "".join(traceback.format_exception(error))
