"""`Study`: one PBT run, its settings and trials read from the storage, and running it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, get_args

from pbtune import checkpoints
from pbtune._errors import ConfigError, StorageError, StudyFailedError
from pbtune._imports import refuse_study_while_imported
from pbtune._logging import ensure_default_handler
from pbtune.checkpoints import Location
from pbtune.controller import (
    USER_STOP,
    Controller,
    Role,
    StudyConfig,
    import_object,
    revive,
    stop_study,
)
from pbtune.storages import MemberState, Storage, StudyRecord, StudyState
from pbtune.study._best import pick_best
from pbtune.study._callbacks import Callback, Callbacks
from pbtune.study._frame import trials_frame
from pbtune.study._lifecycle import check_extension, revise, storage_argument
from pbtune.study._monitor import LocalWorkers, RunMonitor
from pbtune.study._progress import StudyProgress, best_trial, front, measure
from pbtune.study._run import pick_backend, run_here, sigterm_as_interrupt, training_function
from pbtune.study._summary import SUMMARY_EXTRA, StudySummary, nothing_left, summarize
from pbtune.trial import FrozenTrial, Segment, TrainFn, TrialState
from pbtune.worker import (
    Deadline,
    RayBackend,
    check_timeout,
    fail_dead_local_workers,
    run_processes,
)

_log = logging.getLogger("pbtune.study")
_Ran = TypeVar("_Ran")


class Study:
    """One PBT run: its settings and its trials, all read from the storage."""

    def __init__(self, storage: Storage, record: StudyRecord, config: StudyConfig) -> None:
        self.storage = storage
        self._record = record
        self.config = config

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def id(self) -> int:
        return self._record.id

    @property
    def state(self) -> StudyState:
        return self.storage.get_study_by_id(self.id).state

    @property
    def error(self) -> str | None:
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

    # -- running -----------------------------------------------------------------------------
    def optimize(
        self,
        train: TrainFn | str,
        workers: int = 1,
        *,
        evaluators: int = 0,
        backend: str | RayBackend | None = None,
        show_progress: bool | None = None,
        timeout: float | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> StudySummary:
        """Run the study until its budget is spent (or a stop rule or `stop` ends it
        early), with ``workers`` in parallel; return
        (and log) a `StudySummary`: the best trial, its checkpoint, the next commands.

        ``train`` is a function (module level, so worker processes can import it),
        ``"path/to/script.py:train"``, or a `pbtune.Command` that runs any program.
        ``backend`` is where the workers run: ``"process"`` (local processes; the
        default for a database), ``"thread"`` (the default, and the only choice, for an
        in-memory study), ``"ray"`` or a `RayBackend` (Ray actors). A study stopped by a
        crash or Ctrl-C continues where it was when this is called again. Raises
        `StudyFailedError` if the study cannot go on (e.g. every member's first trial
        failed). A COMPLETE study has nothing left to run: its summary comes back at once,
        also when a stop rule or `stop` ended it early (it says why).

        While it runs, the ``pbtune`` logger says at INFO what each finished trial did
        and, off a terminal, how far the study is every minute; ``show_progress`` (None:
        on a terminal) shows a live bar instead of those status lines, False neither.
        ``logging.getLogger("pbtune").setLevel(logging.WARNING)`` silences the lines.
        Ctrl-C (or SIGTERM) stops the workers, logs one line (how many running trials
        were stopped; they are retried on the next run and do not count as failures)
        and raises KeyboardInterrupt; a script it ends prints no traceback and exits as
        Ctrl-C does (a shell sees code 130).

        In a study with an ``evaluate`` function (see `create_study`), every worker
        evaluates trained trials before it trains new ones; ``evaluators=K`` instead
        starts K more workers that only evaluate, and the ``workers`` only train.

        ``timeout`` (seconds of wall clock from this call; None: no limit, and not stored
        with the study) bounds this run: at the deadline no trial starts, the running
        ones are stopped and put back in the queue unchanged (they run again from their
        start; nothing counts as a failure), one WARNING line says so, and the summary
        comes back as usual, the study RUNNING: call ``optimize`` again to continue it.
        (The thread backend cannot stop a thread in the training function: it is left
        to end, and its result is refused.)

        ``callbacks``: functions called here (never in a worker) with each trial that
        finishes while this runs (COMPLETE, FAILED or LOST), as a `FrozenTrial`, in
        order of completion, all of them before this returns (none after Ctrl-C). One of
        one argument gets the trial; one of two, ``(study, trial)`` as in Optuna. An
        exception it raises is logged (ERROR) and the study goes on; a callback that
        wants to end the study calls ``study.stop()``. They run in the monitor's loop:
        keep them short.

        Example::

            study.optimize(train, workers=2)
            study.optimize(train, workers=4, evaluators=1)  # evaluation on its own worker
            study.optimize(train, workers=8, backend=pbtune.RayBackend(address="auto"))
            study.optimize(train, workers=4, timeout=3600, callbacks=[on_trial])
        """
        refuse_study_while_imported("runs a study")
        _check_count("workers", workers)
        deadline = Deadline(check_timeout(timeout))  # counted from the start of the call
        notify = Callbacks(self, callbacks)
        run = pick_backend(self.storage, backend)
        fn = training_function(train)
        if isinstance(evaluators, bool) or not isinstance(evaluators, int) or evaluators < 0:
            raise ConfigError(f"evaluators must be an int >= 0, got {evaluators!r}")
        if evaluators and not self.config.evaluated:
            raise ConfigError(
                "evaluators= needs a study with an evaluate function: "
                "create_study(..., evaluate=score)"
            )
        if self.config.evaluated and self.storage.url is not None:
            self._check_evaluate_importable()
        record = self.storage.get_study_by_id(self.id)
        # The user fixed the cause and runs again: the queued retries go on.
        if record.state == StudyState.FAILED and not revive(self.storage, self.id,
                                                            self.config):
            record = self.storage.get_study_by_id(self.id)
            if record.state == StudyState.FAILED:
                raise StudyFailedError(
                    f"study {self.name!r} failed and has nothing left to retry: {record.error}"
                )
        if record.state == StudyState.COMPLETE:
            return self._summary(0.0, nothing_left(self.name, record.stop_reason))

        def start(controller: Controller, tick: Callable[[], None]) -> None:
            run(self.storage, controller, fn, workers, fitness=self.config.fitness, tick=tick,
                evaluators=evaluators, deadline=deadline)

        monitor = RunMonitor(self.storage, self._record, show_progress=show_progress,
                             callbacks=notify or None)
        _, record = self._run_workers(start, monitor, deadline, "optimize")
        if record.state == StudyState.FAILED:
            raise StudyFailedError(f"study {self.name!r} failed: {record.error}")
        if record.state == StudyState.RUNNING and not deadline.reached:
            raise StudyFailedError(
                f"the workers stopped before study {self.name!r} was done; run again to continue"
            )
        failed = [m.member for m in self.storage.get_members(self.id)
                  if m.state == MemberState.FAILED]
        if failed:
            _log.warning("members %s stopped after more than max_retries=%d failures in a "
                         "row; see `pbtune status --errors`", failed, self.config.max_retries)
        return self._summary(monitor.elapsed_s,
                             timeout_s=deadline.timeout if deadline.reached else None)

    def stop(self, reason: str | None = None) -> bool:
        """End the study now, before its budget, for every worker: it becomes COMPLETE
        with ``reason`` (default: that this was called), nothing new is decided, and the
        workers of every machine stop after the trial they run (recorded as usual);
        queued trials stay queued. Returns True if this call ended it; a study already
        COMPLETE or FAILED is left as it is. `extend` runs a stopped study again.

        Example::

            study.stop("good enough")  # from a callback, another thread, a notebook
        """
        if reason is not None and (not isinstance(reason, str) or not reason.strip()):
            raise ConfigError(f"reason must be a non-empty string (or None), got {reason!r}")
        text = reason.strip() if reason is not None else USER_STOP
        stopped = stop_study(self.storage, self.id, text)
        if stopped:
            ensure_default_handler()
            _log.info("study %r stopped: %s", self.name, text)
        return stopped

    def _summary(self, elapsed_s: float, note: str | None = None, *,
                 timeout_s: float | None = None) -> StudySummary:
        """The run's summary, logged (after ``note``) at INFO and returned."""
        ensure_default_handler()
        if note:
            _log.info("%s", note)
        summary = summarize(self.storage, self._record, elapsed_s, timeout_s=timeout_s)
        _log.info("%s", summary, extra=SUMMARY_EXTRA)
        return summary

    def join(
        self,
        train: TrainFn | str | None,
        workers: int = 1,
        *,
        max_trials: int | None = None,
        role: Role = "both",
        timeout: float | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> int | None:
        """Run this study's trials beside whoever else runs it, as `pbtune worker` does
        on each machine of a cluster; return how many trials ran here, where that is known.

        ``workers=1`` runs one worker loop in this process and returns its count of trials;
        more start that many worker processes (a database storage only) and return None.
        Every loop stops when the study is done, or after ``max_trials`` trials. ``role``
        is what each one does in a study with an evaluate function: ``"both"``, only
        ``"train"``, or only ``"evaluate"`` (``train`` may then be None). Unlike
        `optimize`, workers that stop before the study is done are no error, since others
        go on with it: read `state` afterwards. Once the study is COMPLETE, the
        checkpoints no trial refers to are deleted. It logs a line per trial run here
        and, every minute, a status line of the whole study (see `optimize`).

        ``timeout`` and ``callbacks`` are those of `optimize`, for the workers of this
        call only: at the deadline their running trials go back in the queue (other
        machines' workers go on), and the callbacks see the trials run here. With one
        worker, the loop runs in this thread and the callbacks are called from a
        background thread of this process (one at a time, never in parallel).

        Example::

            study = pbtune.load_study("digits", storage="postgresql://db-host/pbtune")
            study.join("train.py:train", workers=4)
            study.join("train.py:train", workers=2, timeout=600, callbacks=[on_trial])
        """
        refuse_study_while_imported("runs a study")
        _check_count("workers", workers)
        deadline = Deadline(check_timeout(timeout))
        notify = Callbacks(self, callbacks)
        if max_trials is not None:
            _check_count("max_trials", max_trials)
        if role not in get_args(Role):
            raise ConfigError(f"role must be one of {', '.join(get_args(Role))}, got {role!r}")
        if role == "evaluate" and not self.config.evaluated:
            raise ConfigError(f"study {self.name!r} has no evaluate function to run")
        if train is None and role != "evaluate":
            raise ConfigError("join needs the training function; only role='evaluate' "
                              "runs without one")
        fn = training_function(train, evaluator=train is None)
        if workers > 1 and self.storage.url is None:
            raise ConfigError(
                "join(workers > 1) starts worker processes, which need a database storage "
                "(sqlite:///file.db or postgresql://...); run an in-memory study with optimize"
            )

        def start(controller: Controller, tick: Callable[[], None]) -> int | None:
            fitness, given = self.config.fitness, self.config.evaluate
            if workers == 1:  # a loop in this process can use the functions it was given
                evaluate = given if callable(given) else None
                return run_here(self.storage, controller, fn, max_trials=max_trials,
                                role=role, fitness=fitness, evaluate=evaluate,
                                deadline=deadline)
            run_processes(self.storage, controller, fn, workers, fitness=fitness, tick=tick,
                          max_trials=max_trials, role=role, deadline=deadline)
            return None

        monitor = RunMonitor(self.storage, self._record, show_progress=None, bar=False,
                             mine=LocalWorkers(), background=workers == 1,
                             callbacks=notify or None)
        done, record = self._run_workers(start, monitor, deadline, "join")
        if record.stop_reason is not None:
            _log.info("study %r stopped: %s", self.name, record.stop_reason)
        return done

    def _run_workers(
        self,
        start: Callable[[Controller, Callable[[], None]], _Ran],
        monitor: RunMonitor,
        deadline: Deadline,
        method: str,
    ) -> tuple[_Ran, StudyRecord]:
        """The run that `optimize` and `join` (the ``method``) share: fail the trials of
        this host's dead workers, ``start(controller, tick)`` the workers (SIGTERM stops
        them as Ctrl-C does; ``tick`` is the ``monitor``'s: bar, trial lines, status
        lines), say so if they stopped at the ``deadline``, and sweep the checkpoints of
        a study that is then COMPLETE. Returns what ``start`` did and the study's record."""
        controller = Controller(self.storage, self._record, self.config)
        fail_dead_local_workers(controller)
        with sigterm_as_interrupt(), monitor:
            ran = start(controller, monitor.tick)
        record = self.storage.get_study_by_id(self.id)
        if deadline.reached and record.state == StudyState.RUNNING:
            again = (f"call {method} again" if self.storage.url is None
                     else f"run the same command (or call {method}) again")
            monitor.timed_out(deadline, again)
        if record.state == StudyState.COMPLETE:
            # Nothing of this run is running any more: delete what crashed workers and
            # failed deletes left behind (every worker that sees the end does; it is safe).
            self.sweep_checkpoints()
        return ran, record

    def _check_evaluate_importable(self) -> None:
        """Worker processes import the evaluate function by its recorded name: check
        now that it can be, rather than fail every evaluation."""
        ref = self.config.evaluate_ref
        try:
            import_object(str(ref), "evaluate function")
        except ConfigError as error:
            raise ConfigError(
                f"{error}. Worker processes import the evaluate function by name: define it "
                "at the top level of a module, or pass 'path/to/file.py:name'"
            ) from None

    def sweep_checkpoints(self) -> None:
        """Delete checkpoints and staging folders that no trial refers to (a finished
        study's leftovers from crashed workers); `optimize` does it at the end of a run.

        Not while a worker holds a trial: a study that stopped early may still have
        trials running elsewhere, whose staging folders are in use."""
        keep = {t.checkpoint for t in self.trials() if t.checkpoint}
        state, active = self.storage.queue_state(self.id)
        if state != StudyState.COMPLETE:
            return  # raised budget (`extend`) runs it again: its new trials are not in keep
        if any(count for trial_state, count in active.items() if trial_state.is_held):
            return
        store = self._checkpoint_store()
        try:
            store.sweep(keep)
        finally:
            store.close()

    # -- reading -----------------------------------------------------------------------------
    def trials(self, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        """All trials, in the order they were created; optionally only some states."""
        return self.storage.get_trials(self.id, states)

    def trial(self, trial_id: int) -> FrozenTrial:
        """One trial of this study by id."""
        try:
            return self.storage.get_trial(self.id, trial_id)
        except StorageError:
            made = sum(self.storage.count_states(self.id).values())
            numbered = f"0 to {made - 1}" if made else "none yet"
            raise ConfigError(
                f"study {self.name!r} has no trial {trial_id!r}; its trials are numbered in "
                f"the order they were made ({numbered})"
            ) from None

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

    # -- changing ----------------------------------------------------------------------------
    def extend(self, max_steps: int) -> None:
        """Raise the budget to ``max_steps``: every member that reached the old one trains
        on from its latest checkpoint, its next trial decided as any finished trial's is
        (continue, exploit or explore), so lineages go on unbroken, and a finished study
        runs again at the next `optimize` or `join`; so does a study that a stop rule or
        `stop` ended early, unless its stop rules, judging the results so far, still say
        stop. Members that gave up after ``max_retries`` failures stay stopped. Workers
        running now follow the new budget.

        Example::

            study = pbtune.load_study("digits", storage="sqlite:///pbtune.db")
            study.extend(max_steps=6000)
            study.optimize(train, workers=2)
        """
        check_extension(self.storage.get_study_by_id(self.id), max_steps)
        self._revise({"max_steps": max_steps}, partial=True,
                     storage=storage_argument(None, self.storage))

    def _revise(self, given: dict[str, Any], *, storage: str, partial: bool = False) -> None:
        """Store changed settings (see `revise_study`) and read them back."""
        revise(self.storage, self._record, given, storage=storage, partial=partial)
        self._record = self.storage.get_study_by_id(self.id)
        evaluate = self.config.evaluate
        self.config = StudyConfig.from_dict(
            self._record.config, fitness=self.config.fitness,
            evaluate=evaluate if callable(evaluate) else None,
        )


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
