"""`Study`: one PBT run, its settings and trials read from the storage, and running it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from pbtune._errors import ConfigError, StudyFailedError
from pbtune._imports import refuse_study_while_imported
from pbtune._logging import ensure_default_handler
from pbtune.controller import (
    USER_STOP,
    Controller,
    Role,
    StudyConfig,
    import_object,
    revive,
    stop_study,
)
from pbtune.storages import MemberState, StudyRecord, StudyState
from pbtune.strategies import StopRule, stop_rules
from pbtune.study._callbacks import Callback, Callbacks
from pbtune.study._lifecycle import check_extension, revise, storage_argument
from pbtune.study._monitor import LocalWorkers, RunMonitor
from pbtune.study._reading import StudyReading
from pbtune.study._report import WORKER_READ_EVERY_S
from pbtune.study._run import (
    check_count,
    check_evaluators,
    check_join,
    pick_backend,
    plan_workers,
    run_here,
    sigterm_as_interrupt,
    training_function,
)
from pbtune.study._summary import SUMMARY_EXTRA, StudySummary, nothing_left, summarize
from pbtune.trial import TrainFn
from pbtune.worker import (
    Deadline,
    DeviceSpec,
    RayBackend,
    check_timeout,
    fail_dead_local_workers,
    run_processes,
    start_server,
)

_log = logging.getLogger("pbtune.study")
_Ran = TypeVar("_Ran")


class Study(StudyReading):
    """One PBT run: its settings and its trials, all read from the storage (see
    `StudyReading`), and running it."""

    # -- running -----------------------------------------------------------------------------
    def optimize(
        self,
        train: TrainFn | str,
        workers: int | None = None,
        *,
        evaluators: int = 0,
        devices: DeviceSpec = None,
        gpus_per_worker: int | None = None,
        backend: str | RayBackend | None = None,
        show_progress: bool | None = None,
        timeout: float | None = None,
        stop: StopRule | Sequence[StopRule] | None = None,
        callbacks: Sequence[Callback] | None = None,
        retry_failed: bool = False,
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
        failed). A study that failures ended (FAILED) runs again when this is called
        again, once the cause is fixed: each member that gave up gets ``max_retries``
        fresh tries from its last good checkpoint. A COMPLETE study has nothing left to
        run: its summary comes back at once, also when a stop rule or `stop` ended it
        early (it says why); but with ``retry_failed=True``, members that gave up
        while the others reached ``max_steps`` (a disk that filled late) train on too.

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

        ``devices`` gives each worker process its own GPUs through its
        ``CUDA_VISIBLE_DEVICES``: a list of indices or ``GPU-``/``MIG-`` UUIDs, a string
        ``"0,1,2,3"``, or ``"auto"`` (this process's ``CUDA_VISIBLE_DEVICES``, else every
        GPU ``nvidia-smi`` lists; none: no assignment). Each worker gets
        ``gpus_per_worker`` (default 1) of them, disjoint; ``workers`` (None: one per
        group of devices, else 1) beyond the groups share them round-robin, and so do
        the evaluators after the workers. A replaced worker gets the devices of the one
        it replaces. Processes only: see the documentation's guide "GPUs on one machine".

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

        ``stop``: a stop rule or a list of them (`pbtune.Target`, `NoImprovement`,
        `TotalSteps`, your own `StopRule`), stored with the study before it runs, as
        ``create_study(stop=...)`` does: they end it for every worker, also those that
        joined from other machines, and a resumed study keeps them (``optimize`` without
        ``stop`` keeps the stored rules; ``stop=[]`` removes them). Rules that differ from
        the stored ones judge the study's past first (see `create_study`).

        Example::

            study.optimize(train, workers=2)
            study.optimize(train, workers=4, evaluators=1)  # evaluation on its own worker
            study.optimize(train, devices=[0, 1, 2, 3])  # 4 workers, one GPU each
            study.optimize(train, workers=8, backend=pbtune.RayBackend(address="auto"))
            study.optimize(train, workers=4, timeout=3600, callbacks=[on_trial],
                           stop=pbtune.Target(accuracy=0.99))
        """
        refuse_study_while_imported("runs a study")
        check_count("workers", workers)
        deadline = Deadline(check_timeout(timeout))  # counted from the start of the call
        notify = Callbacks(self, callbacks)
        run = pick_backend(self.storage, backend)
        fn = training_function(train)
        check_evaluators(evaluators, self.config.evaluated)
        plan = plan_workers(self.storage, backend, devices, gpus_per_worker, workers,
                            evaluators)
        if run is run_processes:
            start_server(plan.slots, self.storage.url)
        self._take_stop_rules(stop)
        if self.config.evaluated and self.storage.url is not None:
            self._check_evaluate_importable()
        record = self.storage.get_study_by_id(self.id)
        # The user fixed the cause and runs again: the members that gave up get their
        # retries back, and the queued retries go on.
        again = record.state == StudyState.FAILED or (
            retry_failed and record.state == StudyState.COMPLETE and record.stop_reason is None)
        if again and revive(self.storage, self.id, self.config, complete_too=retry_failed):
            record = self.storage.get_study_by_id(self.id)
        if record.state == StudyState.FAILED:
            raise StudyFailedError(
                f"study {self.name!r} failed and has nothing left to retry: {record.error}"
            )
        if record.state == StudyState.COMPLETE:
            return self._summary(0.0, nothing_left(self.name, record.stop_reason))

        def start(controller: Controller, tick: Callable[[], None]) -> None:
            given = {} if plan.slots is None else {"devices": plan.slots}  # processes only
            run(self.storage, controller, fn, plan.workers, fitness=self.config.fitness,
                tick=tick, evaluators=evaluators, deadline=deadline, **given)

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
        workers: int | None = None,
        *,
        max_trials: int | None = None,
        role: Role = "both",
        devices: DeviceSpec = None,
        gpus_per_worker: int | None = None,
        timeout: float | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> int | None:
        """Run this study's trials beside whoever else runs it, as `pbtune worker` does
        on each machine of a cluster; return how many trials ran here, where that is known.

        ``workers=1`` (the default) runs one worker loop in this process and returns its
        count of trials; more start that many worker processes (a database storage only)
        and return None. So does ``devices`` (see `optimize`; ``workers`` None is then
        one per group of ``gpus_per_worker`` devices), even for one worker: a process
        that starts with its ``CUDA_VISIBLE_DEVICES`` is the only sure way to give it.
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
            study.join("train.py:train", devices="auto")  # a worker per GPU of this node
            study.join("train.py:train", workers=2, timeout=600, callbacks=[on_trial])
        """
        refuse_study_while_imported("runs a study")
        deadline = Deadline(check_timeout(timeout))
        notify = Callbacks(self, callbacks)
        check_join(self.storage, train, workers=workers, max_trials=max_trials, role=role,
                   devices=devices, evaluated=self.config.evaluated, name=self.name)
        fn = training_function(train, evaluator=train is None)
        plan = plan_workers(self.storage, "process", devices, gpus_per_worker, workers)
        here = plan.workers == 1 and plan.slots is None
        if not here:
            start_server(plan.slots, self.storage.url)

        def start(controller: Controller, tick: Callable[[], None]) -> int | None:
            fitness, given = self.config.fitness, self.config.evaluate
            if here:  # a loop in this process can use the functions it was given
                evaluate = given if callable(given) else None
                return run_here(self.storage, controller, fn, max_trials=max_trials,
                                role=role, fitness=fitness, evaluate=evaluate,
                                deadline=deadline)
            run_processes(self.storage, controller, fn, plan.workers, fitness=fitness,
                          tick=tick, max_trials=max_trials, role=role, deadline=deadline,
                          devices=plan.slots)
            return None

        monitor = RunMonitor(self.storage, self._record, show_progress=None, bar=False,
                             mine=LocalWorkers(), background=here,
                             callbacks=notify or None, read_every_s=WORKER_READ_EVERY_S)
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
        # A checkpoint recorded as gone is kept too, should it still be there: a worker
        # that did not see it (checkpoint_root not shared as it should be) is no proof.
        keep = {c for t in self.trials() for c in (t.checkpoint, t.checkpoint_gone) if c}
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

    def _take_stop_rules(self, stop: StopRule | Sequence[StopRule] | None) -> None:
        """Make ``stop`` (given to `optimize` or `join`; None: keep them) the study's
        stored stop rules, checked against the study first."""
        if stop is None:
            return
        rules = replace(self.config, stop=stop_rules(stop)).stop  # checked as create_study does
        self._revise({"stop": [rule.to_dict() for rule in rules]}, partial=True,
                     storage=storage_argument(None, self.storage), level=logging.INFO)

    def _revise(self, given: dict[str, Any], *, storage: str, partial: bool = False,
                level: int = logging.WARNING) -> None:
        """Store changed settings (see `revise_study`) and read them back."""
        revise(self.storage, self._record, given, storage=storage, partial=partial,
               level=level)
        self._record = self.storage.get_study_by_id(self.id)
        evaluate = self.config.evaluate
        self.config = StudyConfig.from_dict(
            self._record.config, fitness=self.config.fitness,
            evaluate=evaluate if callable(evaluate) else None,
        )
