"""What a `Study` reads: its settings and state, its trials, the best of them, lineages
and schedules. Everything comes from the storage, so a study opened in another process
(or while workers run elsewhere) reads the same."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from pbtune import checkpoints
from pbtune._errors import ConfigError
from pbtune.checkpoints import Location
from pbtune.controller import StudyConfig
from pbtune.storages import Storage, StudyRecord, StudyState
from pbtune.study._best import pick_best
from pbtune.study._frame import trials_frame
from pbtune.study._progress import StudyProgress, best_trial, front, measure
from pbtune.trial import FrozenTrial, Segment, TrialState


class StudyReading:
    """The reading half of `Study`: settings, state and trials, all from the storage."""

    def __init__(self, storage: Storage, record: StudyRecord, config: StudyConfig) -> None:
        self.storage = storage
        """The `Storage` the study lives in."""
        self._record = record
        self.config = config
        """The study's settings (``study.config.seed``, ``study.config.space``, ...)."""

    @property
    def name(self) -> str:
        """The study's name, unique in its storage."""
        return self._record.name

    @property
    def id(self) -> int:
        """The study's id in its storage."""
        return self._record.id

    @property
    def state(self) -> StudyState:
        """RUNNING, COMPLETE or FAILED, read from the storage now."""
        return self.storage.get_study_by_id(self.id).state

    @property
    def error(self) -> str | None:
        """Why the study FAILED (with the first error); None if it did not."""
        return self.storage.get_study_by_id(self.id).error

    @property
    def stop_reason(self) -> str | None:
        """Why the study ended before its budget (a stop rule, or `stop`); None if it
        did not."""
        return self.storage.get_study_by_id(self.id).stop_reason

    @property
    def checkpoint_dir(self) -> Location:
        """The study's checkpoint directory (a `Path`), or its URL prefix (a `str`)."""
        return self._checkpoint_store().location

    def _checkpoint_store(self) -> checkpoints.CheckpointStore:
        return checkpoints.open_store(self.config.checkpoint_root, self._record.checkpoint_dir)

    def __repr__(self) -> str:
        return f"Study(name={self.name!r}, storage={self.storage!r})"

    # -- reading -----------------------------------------------------------------------------
    def trials(self, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        """All trials, in the order they were created; optionally only some states."""
        return self.storage.get_trials(self.id, states)

    def trial(self, trial_id: int) -> FrozenTrial:
        """One trial of this study by id."""
        # A trial id of another type finds nothing; a storage that fails says so itself.
        found = (self.storage.find_trial(self.id, int(trial_id))
                 if isinstance(trial_id, numbers.Integral) else None)
        if found is None:
            made = sum(self.storage.count_states(self.id).values())
            numbered = f"0 to {made - 1}" if made else "none yet"
            raise ConfigError(
                f"study {self.name!r} has no trial {trial_id!r}; its trials are numbered in "
                f"the order they were made ({numbered})"
            )
        return found

    @property
    def best_trial(self) -> FrozenTrial:
        """The best trial of the final population: the COMPLETE trial with the best fitness
        among those that reached ``max_steps`` (before any has, the best so far). Ties go to
        the later step, then the earlier trial. With constraints, a feasible trial first.
        The ``keep_best`` best trials anywhere in the study keep their checkpoints too.

        A study of several objectives has no single best: this raises, and says to use
        `best_trials` (the Pareto front) or `best_trial_by`."""
        record = self.storage.get_study_by_id(self.id)
        if self.config.objectives is not None:
            names = list(self.config.objectives)
            raise ConfigError(
                f"study {self.name!r} has several objectives ({', '.join(names)}): no single "
                "trial is best. Use study.best_trials (the Pareto front), or pick one: "
                f"study.best_trial_by({names[0]!r}), or weigh them: "
                f"study.best_trial_by(weights={{{names[0]!r}: 1.0, {names[1]!r}: -0.5}})")
        best = best_trial(self.storage, record)
        if best is None:
            raise ConfigError(f"study {self.name!r} has no COMPLETE trial yet")
        return best

    @property
    def best_trials(self) -> list[FrozenTrial]:
        """The Pareto front of the members' final trials (their latest COMPLETE ones while
        the study runs): the feasible trials no other one beats in every objective, by
        trial number (when none is feasible, those that violate the constraints least).
        With one objective, a list of `best_trial`."""
        return front(self.storage, self.storage.get_study_by_id(self.id))

    def best_trial_by(self, objective: str | None = None, *,
                      weights: Mapping[str, float] | None = None) -> FrozenTrial:
        """The best of the members' final trials on one ``objective`` (in its direction),
        or on the weighted sum of metrics ``weights`` (higher is better: give a metric to
        minimize a negative weight). Feasible trials come first.

        Example::

            study.best_trial_by("accuracy")
            study.best_trial_by(weights={"accuracy": 1.0, "latency_ms": -0.001})
        """
        return pick_best(self.storage.get_population(self.id), self.config, objective,
                         weights, study=self.name)

    @property
    def best_params(self) -> dict[str, Any]:
        """The params of `best_trial`: those of its last segment (what PBT learned is the
        whole schedule of its lineage: `schedule`)."""
        return dict(self.best_trial.params)

    @property
    def best_value(self) -> float:
        """The fitness of `best_trial`."""
        fitness = self.best_trial.fitness
        assert fitness is not None, "a COMPLETE trial has a fitness"
        return fitness

    def trials_dataframe(self, states: Sequence[TrialState] | None = None) -> Any:
        """The trials as a pandas DataFrame (``pip install "pbtune[pandas]"``), a row per
        trial: ``number``, ``state``, ``member``, ``generation``, ``parent`` (its number),
        ``decision``, ``start_step``, ``end_step``, ``fitness``, ``params_<name>``,
        ``metrics_<name>``, the times (``datetime_start``, ...) and ``worker``. With
        several objectives, ``values_<objective>`` and ``front`` (in `best_trials`) stand
        in for ``fitness``; with constraints, ``violation`` (0: feasible) follows.

        Example::

            df = study.trials_dataframe([pbtune.TrialState.COMPLETE])
            df.groupby("member")["fitness"].max()
        """
        everyone = self.trials()  # all of them: a parent's number is read from its row
        criteria = self.config.criteria
        best = {t.id for t in self.best_trials} if criteria.several else set()
        frame = trials_frame(everyone, list(self.config.space), criteria, best)
        if states is not None:
            wanted = {TrialState(s).value for s in states}
            frame = frame[frame["state"].isin(wanted)].reset_index(drop=True)
        return frame

    def lineage(self, trial_id: int | None = None) -> list[FrozenTrial]:
        """The trials whose checkpoints led to ``trial_id`` (best by default), oldest first."""
        trial = self.best_trial if trial_id is None else self.trial(trial_id)
        chain = [trial]
        while chain[-1].parent_id is not None:
            chain.append(self.storage.get_trial(self.id, chain[-1].parent_id))
        return chain[::-1]

    def schedule(self, trial_id: int | None = None) -> list[Segment]:
        """The hyperparameter schedule of a lineage: one `Segment` per trial."""
        return [
            Segment(t.start_step, t.end_step, dict(t.params), t.id)
            for t in self.lineage(trial_id)
        ]

    def reports(self, trial_id: int) -> list[tuple[int, dict[str, float]]]:
        """Intermediate metrics the trial reported with `Trial.report`."""
        return self.storage.get_reports(self.id, trial_id)

    def progress(self) -> StudyProgress:
        return measure(self.storage, self.storage.get_study_by_id(self.id))
