"""`MLflow`: every finished trial of a study as one MLflow run.

Lineage is written as tags (``pbtune.parent_trial``, ``pbtune.parent_run_id``), not as
MLflow's ``mlflow.parentRunId``: that tag nests runs, and MLflow's runs table lists only
the top of each nest. A PBT lineage is a chain as long as the study has generations,
crossing members at every exploit, so nesting would leave a table of a few first trials,
each opening into a chain dozens of levels deep. Flat runs, with the member and the
parent as tags, keep every trial one row that the table can group, sort and filter.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from pbtune._errors import ConfigError
from pbtune.loggers._trial import Finished, optional, param_text, short_error, study_folder
from pbtune.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from pbtune.study import Study

_log = logging.getLogger("pbtune.loggers")

STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.FAILED: "FAILED",
          TrialState.LOST: "KILLED"}
"""The MLflow run status of each finished trial state (LOST: interrupted, not the code's
fault)."""


class MLflow:
    """A callback that logs each finished trial of a study as one MLflow run:
    ``study.optimize(train, callbacks=[MLflow("sqlite:///mlflow.db")])``.

    The runs go to the experiment ``experiment`` (default: the study's name, made if
    missing) of ``tracking_uri`` (default: MLflow's own, ``MLFLOW_TRACKING_URI`` or
    ``sqlite:///mlflow.db``). A run is named ``trial-000042``; it holds the trial's params
    (strings as they are, other values as JSON), its metrics at its ``end_step`` and its
    reports at their steps, and tags: ``pbtune.study``, ``pbtune.trial``,
    ``pbtune.member``, ``pbtune.generation``, ``pbtune.decision``, ``pbtune.state``,
    ``pbtune.start_step``, ``pbtune.end_step``, ``pbtune.parent_trial`` and
    ``pbtune.parent_run_id`` (not for a member's first trial), ``pbtune.checkpoint``,
    ``pbtune.error`` (a failure's last line), ``pbtune.study_dir`` (the study's folder
    name, new for a study made again under the same name) and a description. Its status
    is FINISHED for a COMPLETE trial, FAILED for a FAILED one, KILLED for a LOST one.

    A trial that has a run already when it is logged (a resumed study, a second logger)
    is not logged again. Two processes that log the same study at once are not
    coordinated: a trial both see finish at the same moment can get a run from each, so
    give the logger to ``optimize`` alone or to each ``join`` (see the loggers guide).
    Needs ``pip install 'pbtune[mlflow]'``.

    Example::

        from pbtune.loggers import MLflow
        study.optimize(train, workers=4, callbacks=[MLflow("sqlite:///mlflow.db")])
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None) -> None:
        mlflow = optional("mlflow", "mlflow", "the MLflow logger")
        for name, value in (("tracking_uri", tracking_uri), ("experiment", experiment)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"MLflow {name} must be a non-empty string, got {value!r}")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        try:
            self._client = mlflow.MlflowClient(tracking_uri)
        except mlflow.exceptions.MlflowException as error:
            where = repr(tracking_uri) if tracking_uri else "(MLflow's default)"
            raise ConfigError(
                f"MLflow cannot open tracking_uri {where}: {error.message.strip().rstrip('.')}. "
                "To log to a SQLite file instead, pass MLflow(tracking_uri="
                "'sqlite:///mlflow.db') (in a study file: tracking_uri: sqlite:///mlflow.db)"
            ) from None
        self._error = mlflow.exceptions.MlflowException
        self._experiments: dict[str, str] = {}
        self._runs: dict[tuple[str, int], str] = {}  # (study_dir, trial) -> run id
        self._study_dirs: weakref.WeakKeyDictionary[Study, str] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MLflow(tracking_uri={self.tracking_uri!r}, experiment={self.experiment!r})"

    @property
    def client(self) -> Any:
        """The ``mlflow.MlflowClient`` this logs through."""
        return self._client

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        """Log ``trial`` (finished) of ``study`` as a run; `Study.optimize` calls it."""
        with self._lock:
            experiment = self.experiment_id(self.experiment or study.name)
            folder = self._study_dir(study)
            if self._run_id(experiment, folder, trial.id) is not None:
                _log.debug("trial %d has an MLflow run already", trial.id)
                return
            finished = Finished.read(study, trial)
            parent = (self._run_id(experiment, folder, trial.parent_id)
                      if trial.parent_id is not None else None)
            self._runs[(folder, trial.id)] = self._log(experiment, finished, folder, parent)

    def experiment_id(self, name: str) -> str:
        """The id of the experiment ``name``, made if there is none."""
        known = self._experiments.get(name)
        if known is not None:
            return known
        found = self._client.get_experiment_by_name(name)
        if found is None:
            try:
                self._experiments[name] = str(self._client.create_experiment(name))
                return self._experiments[name]
            except self._error:  # made meanwhile by another process
                found = self._client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            uri = f"MLFLOW_TRACKING_URI={self.tracking_uri} " if self.tracking_uri else ""
            raise ConfigError(
                f"MLflow experiment {name!r} is deleted; restore it ({uri}mlflow experiments "
                f"restore --experiment-id {found.experiment_id}) or log to another one: "
                "MLflow(experiment='NAME')"
            )
        self._experiments[name] = str(found.experiment_id)
        return self._experiments[name]

    def _run_id(self, experiment: str, study_dir: str, trial_id: int) -> str | None:
        """The id of the run of trial ``trial_id`` of the study whose folder is
        ``study_dir``, logged by this logger or found in the experiment; None if none."""
        known = self._runs.get((study_dir, trial_id))
        if known is not None:
            return known
        runs = self._client.search_runs(
            [experiment], f"tags.`pbtune.study_dir` = '{study_dir}' and "
                          f"tags.`pbtune.trial` = '{trial_id}'", max_results=1)
        if not runs:
            return None
        self._runs[(study_dir, trial_id)] = str(runs[0].info.run_id)
        return self._runs[(study_dir, trial_id)]

    def _log(self, experiment: str, finished: Finished, study_dir: str,
             parent_run: str | None) -> str:
        from mlflow.entities import Metric, Param

        trial = finished.trial
        at = _ms(trial.finished_at)
        run = self._client.create_run(
            experiment, start_time=_ms(trial.started_at or trial.finished_at),
            tags=_tags(finished, study_dir, parent_run), run_name=finished.name)
        run_id = str(run.info.run_id)
        try:
            metrics = [Metric(name, value, at, step)
                       for step, values in finished.reports for name, value in values.items()]
            metrics += [Metric(name, value, at, trial.end_step)
                        for name, value in finished.final.items()]
            params = [Param(name, param_text(value)) for name, value in trial.params.items()]
            self._client.log_batch(run_id, metrics=metrics, params=params)
        except BaseException:
            self._client.set_terminated(run_id, "FAILED")  # not left RUNNING
            raise
        self._client.set_terminated(run_id, STATUS[trial.state], end_time=at)
        return run_id

    def _study_dir(self, study: Study) -> str:
        """The name of the study's checkpoint folder: its name and a hash that a study
        made again under the same name does not share."""
        known = self._study_dirs.get(study)
        if known is None:
            known = self._study_dirs[study] = study_folder(study)
        return known


def _tags(finished: Finished, study_dir: str, parent_run: str | None) -> dict[str, str]:
    trial = finished.trial
    tags = {
        "pbtune.study": finished.study,
        "pbtune.study_dir": study_dir,
        "pbtune.trial": str(trial.id),
        "pbtune.member": str(trial.member),
        "pbtune.generation": str(trial.generation),
        "pbtune.decision": trial.decision,
        "pbtune.state": trial.state.value,
        "pbtune.start_step": str(trial.start_step),
        "pbtune.end_step": str(trial.end_step),
        "mlflow.note.content": finished.text(),
    }
    if trial.parent_id is not None:
        tags["pbtune.parent_trial"] = str(trial.parent_id)
    if parent_run is not None:
        tags["pbtune.parent_run_id"] = parent_run
    if trial.checkpoint is not None:
        tags["pbtune.checkpoint"] = str(trial.checkpoint)
    if trial.error:
        tags["pbtune.error"] = short_error(trial.error)
    if trial.worker:
        tags["pbtune.worker"] = trial.worker
    return tags


def _ms(seconds: float | None) -> int:
    return int(1000 * (seconds if seconds is not None else time.time()))
