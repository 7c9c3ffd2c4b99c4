"""The worker loop: ask -> train -> tell, the same wherever it runs.

It runs in a local process, a thread (in-memory studies), or a process that a cluster
scheduler started on another machine.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from pbtune._errors import StorageError
from pbtune.controller import Claimed, Controller, Done, Role, StudyConfig, TrialRun, Wait
from pbtune.storages import Storage
from pbtune.trial import TrainFn

_log = logging.getLogger("pbtune.worker")


class Wake(Protocol):
    """A `threading.Event` or a `multiprocessing.Event`."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


POLL_INTERVAL_S = 0.05
POLL_INTERVAL_MAX_S = 0.25
# A worker that no other worker wakes (`pbtune worker` on a cluster) backs off further,
# with jitter, so a thousand idle workers do not read the study 4,000 times a second:
# a told result's next trial is claimed by the worker that told it, so an idle worker's
# slower look only delays retries and spare work, which wait for a free worker anyway.
IDLE_POLL_MAX_S = 2.0
# A trial that trained at least this many times as long as a tell takes is told in the
# background while the worker's next trial trains (see `_Teller`).
PIPELINE_RATIO = 20.0
NEXT_TRIAL_START_WAIT_S = 0.5
# How a worker process's connections appear in PostgreSQL's pg_stat_activity.
WORKER_APPLICATION = "pbtune-worker"


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
    evaluate: TrainFn | None = None,
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
        controller.close()  # a remote store's download cache
    if following is not None:  # stopped between claiming a trial and starting it
        controller.release(following)
    return done


def _loop(controller: Controller, train: TrainFn, worker_id: str, max_trials: int | None,
          stop: threading.Event | None, wake: Wake | None, role: Role
          ) -> tuple[int, Claimed | None]:
    done = 0
    idle = POLL_INTERVAL_S
    following: Claimed | None = None
    with Heartbeat(controller) as beat, controller.deleting_in_background(), \
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
                        time.sleep(idle * random.uniform(0.5, 1.0))
                        idle = min(idle * 2, IDLE_POLL_MAX_S)
                    else:
                        wake.wait(idle)
                        wake.clear()
                        idle = min(idle * 2, POLL_INTERVAL_MAX_S)
                    continue
                claimed, idle = asked, POLL_INTERVAL_S
                if stop is not None and stop.is_set():  # stopped while it claimed
                    following = claimed  # given back below
                    break
            done += 1
            go_on = (max_trials is None or done < max_trials) and not (stop and stop.is_set())
            following = _run(controller, claimed, train, beat, worker_id if go_on else None,
                             role, teller)
            if wake is not None:
                wake.set()
        teller.wait()
    return done, following


def _run(controller: Controller, claimed: Claimed, train: TrainFn, beat: Heartbeat,
         worker: str | None, role: Role, teller: _Teller) -> Claimed | None:
    """Train or evaluate one claimed trial and tell the result; return the next work
    claimed for ``worker``, if any.

    The heartbeat runs until the result is told (by the teller, when it is told in the
    background), so a slow checkpoint commit on a network file system does not make a
    live trial look lost.
    """
    beat.hold(claimed)
    handed = False
    try:
        following, handed = _train_and_tell(controller.start(claimed), train, worker, role,
                                            teller)
        return following
    finally:
        if not handed:
            beat.release(claimed)


def _train_and_tell(run: TrialRun, train: TrainFn, worker: str | None, role: Role,
                    teller: _Teller) -> tuple[Claimed | None, bool]:
    """(the next claimed trial, whether the tell was handed to ``teller``)."""
    try:
        run.call(train, started=teller.started)  # a tell waiting in the background may go
    except (Exception, SystemExit) as error:  # sys.exit() in training code fails the trial
        teller.started()  # the set-up is over either way
        run.fail(error)
        return None, False
    # Training dominates: claim the next trial while the checkpoint is committed, start it,
    # and tell this result in the background (see `_Teller`).
    asking = None
    if worker is not None and run.may_tell_in_background and teller.worth_it(run.call_s):
        # The last tell is done by now (a whole trial ago); a storage outage it met stops
        # this worker here, before it claims anything more.
        teller.wait()
        asking = teller.claim(worker, role)
    try:
        run.commit()
        if asking is not None:
            asked, asking = asking.result(), None
            if isinstance(asked, Claimed):
                teller.submit(run)
                return asked, True
        began = time.perf_counter()
        following = run.tell(worker, role)
        if run.may_tell_in_background:
            teller.observe(time.perf_counter() - began)
    except StorageError:
        raise  # the storage stayed down past its retries: this worker stops; the trial is
        # failed as lost and retried, and the directory is swept at the end of the run
    except Exception as error:  # e.g. a user's strategy that explores out of bounds
        run.fail(error)
        # A trial claimed meanwhile is this worker's next one.
        late = asking.result() if asking is not None else None
        return (late if isinstance(late, Claimed) else None), False
    return following, False


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

    def submit(self, run: TrialRun) -> None:
        self.wait()
        self._next_started.clear()
        self._telling = self._threads().submit(self._tell, run)

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

    def _tell(self, run: TrialRun) -> None:
        # The next trial starts within milliseconds; the bound only matters if its set-up
        # failed (the worker then tells failures and asks again, without this tell).
        self._next_started.wait(NEXT_TRIAL_START_WAIT_S)
        began = time.perf_counter()
        try:
            run.tell()
        except StorageError as error:  # the worker stops, as after a synchronous tell
            self._error = error
        except Exception as error:  # e.g. a user's strategy that explores out of bounds
            try:
                run.fail(error)
            except StorageError as failed:
                self._error = failed
        finally:
            self._beat.release(run.claimed)
            self.observe(time.perf_counter() - began)
            if self._wake is not None:
                self._wake.set()
