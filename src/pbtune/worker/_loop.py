"""The worker loop: ask -> train -> tell, the same wherever it runs.

It runs in a local process, a thread (in-memory studies), or a process that a cluster
scheduler started on another machine.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from pbtune._errors import PbtuneError, StorageError, TrialFailedError
from pbtune.checkpoints import Location
from pbtune.controller import (
    Claimed,
    Controller,
    Done,
    Role,
    StudyConfig,
    Wait,
    check_metrics,
    clean_metrics,
    fitness_of,
)
from pbtune.storages import Storage
from pbtune.trial import Trial, TrialState

_log = logging.getLogger("pbtune.worker")

TrainFn = Callable[[Trial], Mapping[str, float]]


class Wake(Protocol):
    """A `threading.Event` or a `multiprocessing.Event`."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...

POLL_INTERVAL_S = 0.05
POLL_INTERVAL_MAX_S = 0.25
# A trial that trained at least this many times as long as a tell takes is told in the
# background while the worker's next trial trains (see `_Teller`).
PIPELINE_RATIO = 20.0
NEXT_TRIAL_START_WAIT_S = 0.5


def new_worker_id() -> str:
    """``host:pid:random``; the host and pid let a local controller spot dead workers."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_worker(
    storage: Storage,
    study_name: str,
    train: TrainFn,
    *,
    worker_id: str | None = None,
    max_trials: int | None = None,
    fitness: Callable[[Mapping[str, float]], float] | None = None,
    stop: threading.Event | None = None,
    wake: Wake | None = None,
    role: Role = "both",
    evaluate: Callable[[Trial], Mapping[str, float]] | None = None,
) -> int:
    """Run trials of ``study_name`` until it is done (or ``max_trials``); return the count.

    A completed trial's tell also claims the worker's next trial in the same transaction,
    so a busy worker costs the storage one transaction per trial. When training takes much
    longer than a tell, the worker claims its next trial as soon as the checkpoint is
    committed and tells the result in the background while that trial trains, so the
    accelerator does not wait for the database (see `_Teller`). A worker with nothing to
    claim polls with backoff; ``wake``, an event shared by the workers of one run, cuts
    the wait short when another worker tells a result (which may have queued a trial or
    ended the study). ``role``: what this worker claims in a study with an evaluate
    function (see `pbtune.controller.Role`); "evaluate" makes a dedicated evaluator.
    ``fitness`` and ``evaluate``: the study's functions where this process cannot import
    them by their recorded names (threads of the process that created the study).
    """
    worker_id = worker_id or new_worker_id()
    study = storage.get_study(study_name)
    config = StudyConfig.from_dict(study.config, fitness=fitness, evaluate=evaluate)
    controller = Controller(storage, study, config)
    try:
        done, following = _loop(controller, train, worker_id, max_trials, stop, wake, role)
    finally:
        controller.store.close()  # a remote store's download cache
    if following is not None:  # stopped between claiming a trial and starting it
        controller.release(following)
    return done


def _loop(controller: Controller, train: TrainFn, worker_id: str, max_trials: int | None,
          stop: threading.Event | None, wake: Wake | None, role: Role
          ) -> tuple[int, Claimed | None]:
    done = 0
    idle = POLL_INTERVAL_S
    following: Claimed | None = None
    with Heartbeat(controller) as beat, _Discarder(controller), \
            _Teller(controller, beat, wake) as teller:
        while max_trials is None or done < max_trials:
            teller.check()  # a storage outage in a background tell stops this worker
            if stop is not None and stop.is_set():
                break
            claimed = following
            if claimed is None:
                asked = controller.ask(worker_id, role)
                if isinstance(asked, Done):
                    break
                if not isinstance(asked, Claimed):
                    if wake is None:
                        time.sleep(idle)
                    else:
                        wake.wait(idle)
                        wake.clear()
                    idle = min(idle * 2, POLL_INTERVAL_MAX_S)
                    continue
                claimed, idle = asked, POLL_INTERVAL_S
            done += 1
            go_on = (max_trials is None or done < max_trials) and not (stop and stop.is_set())
            following = _run(controller, claimed, train, beat, worker_id if go_on else None,
                             role, teller)[1]
            if wake is not None:
                wake.set()
        teller.wait()
    return done, following


def run_trial(controller: Controller, claimed: Claimed, train: TrainFn) -> bool:
    """Train (or evaluate) one claimed trial and tell the result; True if it was told."""
    with Heartbeat(controller) as beat:
        return _run(controller, claimed, train, beat, None)[0]


def _run(controller: Controller, claimed: Claimed, train: TrainFn, beat: Heartbeat,
         worker: str | None, role: Role = "both", teller: _Teller | None = None
         ) -> tuple[bool, Claimed | None]:
    """Train or evaluate one claimed trial and tell the result: (told, the next work
    claimed for ``worker``, if any). A result handed to ``teller`` counts as told.

    The heartbeat runs until the result is told, so a slow checkpoint commit on a network
    file system does not make a live trial look lost.
    """
    beat.hold(claimed)
    handed = False
    try:
        if claimed.trial.state == TrialState.EVALUATING:
            return _evaluate_and_tell(controller, claimed, worker, role)
        told, following, handed = _train_and_tell(controller, claimed, train, worker, role,
                                                   teller)
        return told, following
    finally:
        if not handed:  # the teller lets go of it once the result is told
            beat.release(claimed)


def _train_and_tell(controller: Controller, claimed: Claimed, train: TrainFn,
                    worker: str | None, role: Role, teller: _Teller | None
                    ) -> tuple[bool, Claimed | None, bool]:
    """(told, the next claimed trial, whether the tell was handed to ``teller``)."""
    trial = claimed.trial
    store = controller.store
    staging = None
    try:
        staging = store.stage(trial.number, claimed.claim)
        handle = Trial(
            id=trial.id,
            number=trial.number,
            member=trial.member,
            generation=trial.generation,
            params=trial.params,
            start_step=trial.start_step,
            end_step=trial.end_step,
            parent_checkpoint=controller.parent_checkpoint(claimed),
            checkpoint_dir=staging,
            study_name=controller.study.name,
            seed=controller.config.seed,
            report_sink=_report_sink(controller.storage, trial.id),
        )
        if teller is not None:
            teller.started()  # a tell waiting in the background may go now
        began = time.perf_counter()
        result = train(handle)
        trained_s = time.perf_counter() - began
        if controller.config.evaluated:  # the fitness comes from the evaluation
            metrics, fitness = clean_metrics(result, controller.config), math.nan
        else:
            metrics, fitness = check_metrics(result, controller.config)
    except (Exception, SystemExit) as error:  # sys.exit() in training code fails the trial
        if teller is not None:
            teller.started()  # the set-up is over either way
        store.discard(staging)
        _fail(controller, claimed, error)
        return False, None, False
    final = store.final(trial.number)
    # Training dominates: claim the next trial while the checkpoint is committed, start it,
    # and tell this result in the background (see `_Teller`).
    asking = None
    if (worker is not None and teller is not None and not controller.config.evaluated
            and teller.worth_it(trained_s)):
        # The last tell is done by now (a whole trial ago); a storage outage it met stops
        # this worker here, before it claims anything more.
        teller.wait()
        asking = teller.claim(worker, role)
    try:
        # A remote store uploads the files, then the manifest; the tell that records the
        # reference is the commit point either way.
        final = store.commit(staging, trial.number)
        if asking is not None:
            asked, asking = asking.result(), None
            if isinstance(asked, Claimed):
                assert teller is not None
                teller.submit(claimed, metrics, fitness, final)
                return True, asked, True
        if controller.config.evaluated:
            told, following = controller.tell_trained(claimed, metrics, final, worker, role)
        else:
            began = time.perf_counter()
            told, following = controller.tell_and_ask(claimed, metrics, fitness, final,
                                                      worker, role)
            if teller is not None:
                teller.observe(time.perf_counter() - began)
    except StorageError:
        raise  # the storage stayed down past its retries: this worker stops; the trial is
        # failed as lost and retried, and the directory is swept at the end of the run
    except Exception as error:  # e.g. a user's strategy that explores out of bounds
        store.discard(staging)
        store.remove(final)
        _fail(controller, claimed, error)
        # A trial claimed meanwhile is this worker's next one.
        late = asking.result() if asking is not None else None
        return False, late if isinstance(late, Claimed) else None, False
    if not told:
        store.remove(final)
    return told, following, False


def _evaluate_and_tell(controller: Controller, claimed: Claimed, worker: str | None,
                       role: Role) -> tuple[bool, Claimed | None]:
    """Run the study's evaluate function on a trained trial's committed checkpoint.

    Its metrics are merged over training's (evaluation wins on a clash) and give the
    fitness; the tell then decides the member's next trial.
    """
    trial = claimed.trial
    config = controller.config
    try:
        if trial.checkpoint is None:
            raise TrialFailedError(f"trial {trial.id} to evaluate has no checkpoint")
        local = controller.store.open(trial.checkpoint, trial.id)  # verified, read-only
        handle = Trial(
            id=trial.id, number=trial.number, member=trial.member,
            generation=trial.generation, params=trial.params, start_step=trial.start_step,
            end_step=trial.end_step, parent_checkpoint=None,
            checkpoint_dir=local,  # the committed checkpoint: read-only
            study_name=controller.study.name, seed=config.seed,
            report_sink=_report_sink(controller.storage, trial.id),
        )
        try:
            result = config.evaluate_fn()(handle)
        except (TrialFailedError, PbtuneError):
            raise
        except (Exception, SystemExit) as error:
            raise TrialFailedError(f"the evaluate function raised {error!r}") from error
        scored = clean_metrics(result, config, "the evaluate function")
        metrics, fitness = fitness_of({**(trial.metrics or {}), **scored}, config)
    except (Exception, SystemExit) as error:
        _fail(controller, claimed, error)
        return False, None
    try:
        return controller.tell_and_ask(claimed, metrics, fitness, trial.checkpoint, worker, role)
    except StorageError:
        raise
    except Exception as error:  # e.g. a user's strategy that explores out of bounds
        _fail(controller, claimed, error)
        return False, None


def _fail(controller: Controller, claimed: Claimed, error: BaseException) -> bool:
    text = error_text(error)
    _log.warning("trial %s failed: %s", claimed.trial.id, text.strip().splitlines()[-1])
    controller.tell_failure(claimed, text)
    return False


def _report_sink(storage: Storage, trial_id: int) -> Callable[[int, dict[str, float]], None]:
    """Intermediate metrics go to the storage; they are optional, so a value JSON cannot
    hold becomes null and a storage hiccup costs the report, never the trial."""

    def sink(step: int, values: dict[str, float]) -> None:
        clean = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
        try:
            storage.add_report(trial_id, step, clean)  # type: ignore[arg-type]
        except StorageError as error:
            _log.warning("report of trial %s at step %s was not stored: %s", trial_id, step,
                         error)

    return sink


def error_text(error: BaseException) -> str:
    """What is stored for a failed trial: a pbtune message, or the user's traceback."""
    if isinstance(error, PbtuneError):
        cause = error.__cause__
        detail = "".join(traceback.format_exception(cause)) if cause is not None else ""
        return f"{type(error).__name__}: {error}\n{detail}".rstrip() + "\n"
    return "".join(traceback.format_exception(error))


class Heartbeat:
    """One daemon thread per worker that keeps the trials it holds fresh in the storage:
    the one training, and the one whose result is being told in the background."""

    def __init__(self, controller: Controller) -> None:
        self._controller = controller
        self._held: dict[int, Claimed] = {}
        self._lock = threading.Lock()  # never held across a storage call
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pbtune-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join()

    def hold(self, claimed: Claimed) -> None:
        with self._lock:
            self._held[id(claimed)] = claimed

    def release(self, claimed: Claimed) -> None:
        with self._lock:
            self._held.pop(id(claimed), None)

    def _run(self) -> None:
        interval = self._controller.config.heartbeat_interval
        while not self._stopped.wait(interval):
            with self._lock:
                held = list(self._held.values())
            for claimed in held:
                try:
                    if not self._controller.heartbeat(claimed):
                        # Failed as lost, or told just now (this beat raced the tell). The
                        # tell says which: it refuses a lost trial's result with a warning.
                        _log.debug("trial %s no longer holds its claim", claimed.trial.id)
                        self.release(claimed)
                except Exception as error:  # a storage outage must not kill the trial
                    _log.warning("heartbeat for trial %s failed: %s", claimed.trial.id,
                                 error)


class _Teller:
    """Claims and tells in background threads, for trials that train much longer than a
    tell takes (at least `PIPELINE_RATIO` times as long).

    Once such a trial has trained, the worker claims its next trial while the checkpoint
    is committed (durable before anything records it), starts that trial at once and tells
    the result in the background: the time between two trials is a commit, not a commit
    and a transaction. One tell is in flight at a time. A worker killed meanwhile loses
    that result, as it would have in a synchronous tell, and the few milliseconds its new
    trial had run; both are failed as lost and retried. Shorter trials are told as before,
    in the transaction that also claims the next one (fewer transactions, nothing to hide).
    """

    def __init__(self, controller: Controller, beat: Heartbeat, wake: Wake | None) -> None:
        self._controller = controller
        self._beat = beat
        self._wake = wake
        self._pool: ThreadPoolExecutor | None = None
        self._telling: Future[None] | None = None
        self._error: StorageError | None = None
        self._tell_s: float | None = None  # a moving average of how long a tell takes
        # Set once the next trial's training has begun: until then the tell would compete
        # with the worker's own set-up of that trial for the interpreter lock.
        self._next_started = threading.Event()

    def __enter__(self) -> _Teller:
        return self

    def __exit__(self, *exc: object) -> None:
        self._next_started.set()  # leaving (Ctrl-C, say): a waiting tell goes now
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def observe(self, seconds: float) -> None:
        self._tell_s = seconds if self._tell_s is None else 0.8 * self._tell_s + 0.2 * seconds

    def worth_it(self, trained_s: float) -> bool:
        return self._tell_s is not None and trained_s >= PIPELINE_RATIO * self._tell_s

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:  # a claim and a tell may overlap
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pbtune-tell")
        return self._pool

    def claim(self, worker: str, role: Role) -> Future[Claimed | Wait | Done]:
        return self._threads().submit(self._controller.claim, worker, role)

    def submit(self, claimed: Claimed, metrics: dict[str, float], fitness: float,
               final: Location) -> None:
        self.wait()
        self._next_started.clear()
        self._telling = self._threads().submit(self._tell, claimed, metrics, fitness, final)

    def started(self) -> None:
        self._next_started.set()

    def wait(self) -> None:
        """Wait for the tell in flight; raise the StorageError it met, if any."""
        self._next_started.set()  # no trial is being set up: tell now
        if self._telling is not None:
            self._telling.result()
            self._telling = None
        self.check()

    def check(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _tell(self, claimed: Claimed, metrics: dict[str, float], fitness: float,
              final: Location) -> None:
        controller = self._controller
        # The next trial starts within milliseconds; the bound only matters if its set-up
        # failed (the worker then tells failures and asks again, without this tell).
        self._next_started.wait(NEXT_TRIAL_START_WAIT_S)
        began = time.perf_counter()
        try:
            if not controller.tell(claimed, metrics, fitness, final):
                controller.store.remove(final)
        except StorageError as error:  # the worker stops, as after a synchronous tell
            self._error = error
        except Exception as error:  # e.g. a user's strategy that explores out of bounds
            try:
                controller.store.remove(final)
                _fail(controller, claimed, error)
            except StorageError as failed:
                self._error = failed
        finally:
            self._beat.release(claimed)
            self.observe(time.perf_counter() - began)
            if self._wake is not None:
                self._wake.set()


class _Discarder:
    """Deletes collected checkpoints in a background thread, off the trial's path.

    Deleting is not urgent: the database already forgot them, and whatever a killed
    worker leaves behind is swept at the end of the run. On exit, the queue is drained.
    """

    def __init__(self, controller: Controller) -> None:
        self._controller = controller
        self._queue: queue.SimpleQueue[Location | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pbtune-discard", daemon=True)

    def __enter__(self) -> _Discarder:
        self._thread.start()
        self._controller.discard = self._queue.put
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.discard = self._controller.remove_checkpoint
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (path := self._queue.get()) is not None:
            try:
                self._controller.remove_checkpoint(path)
            except Exception as error:  # never fatal: the end-of-run sweep retries
                _log.warning("could not delete checkpoint %s: %s", path, error)
