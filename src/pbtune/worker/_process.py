"""Local execution backends: N worker processes (durable storage) or threads (in memory)."""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import pickle
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from pbtune._errors import ConfigError, StorageError, StudyFailedError
from pbtune.controller import Controller, Role, import_object
from pbtune.storages import Storage, StudyState
from pbtune.trial import TrialState
from pbtune.worker._loop import TrainFn, Wake, new_worker_id, run_worker

_log = logging.getLogger("pbtune.worker")

MONITOR_INTERVAL_S = 0.2
Tick = Callable[[], None]


@dataclass(frozen=True)
class Entry:
    """A training function named by ``module:name`` or ``path/to/file.py:name``.

    Workers import it themselves, so it works for scripts that are not importable modules.
    """

    ref: str

    def load(self) -> TrainFn:
        fn = import_object(self.ref, "training function")
        if not callable(fn):
            raise ConfigError(f"{self.ref!r} is not callable")
        return fn  # type: ignore[no-any-return]


def _worker_main(
    url: str,
    study_name: str,
    train: TrainFn | Entry,
    fitness: Callable[[Mapping[str, float]], float] | None,
    tag: str,
    wake: Wake | None = None,
    role: Role = "both",
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _exit_with_parent()
    logging.basicConfig(level=logging.WARNING, format="pbtune worker %(process)d: %(message)s")
    storage = Storage(url)
    fn = train.load() if isinstance(train, Entry) else train
    run_worker(storage, study_name, fn, worker_id=worker_id_for(os.getpid(), tag),
               fitness=fitness, wake=wake, role=role)
    storage.dispose()
    # The run waits for its workers to exit. The interpreter's last garbage collection
    # over numpy's and SQLAlchemy's objects takes about 0.1 s, and frees nothing that
    # exit would not: skip it (atexit handlers and module teardown still run).
    gc.freeze()


def _exit_with_parent() -> None:
    """End this worker when the process that started it dies (even by SIGKILL).

    The trial it was running is then retried by whoever runs the study next; without this,
    orphaned workers would go on training after the user killed the run.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="pbtune-parent-watch", daemon=True).start()


def worker_id_for(pid: int, tag: str) -> str:
    return f"{socket.gethostname()}:{pid}:{tag}"


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` runs here (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def fail_dead_local_workers(controller: Controller) -> int:
    """Fail RUNNING trials of workers on this host whose process is gone (after a crash),
    without waiting for their heartbeat to go stale."""
    host = socket.gethostname()
    lost = 0
    held = controller.storage.get_trials(controller.study.id,
                                         [TrialState.RUNNING, TrialState.EVALUATING])
    for trial in held:
        parts = (trial.worker or "").split(":")
        local = len(parts) >= 3 and parts[0] == host and parts[1].isdigit()
        if local and not pid_alive(int(parts[1])):
            lost += controller.fail_lost(
                trial, f"lost: worker {trial.worker} is no longer running", counts=False
            )
    return lost


def run_processes(
    storage: Storage,
    controller: Controller,
    train: TrainFn | Entry,
    workers: int,
    *,
    fitness: Callable[[Mapping[str, float]], float] | None = None,
    tick: Tick | None = None,
    max_restarts: int | None = None,
    evaluators: int = 0,
) -> None:
    """Run ``workers`` worker processes until the study is done; replace dead ones.

    With ``evaluators``, that many more processes only evaluate and the others only train.
    """
    assert storage.url is not None
    _check_picklable(train, fitness)
    context = mp.get_context("spawn")
    # Replacements are bounded by deaths in a row without a trial completing in between,
    # so a run that loses workers now and then goes on, and a crash loop ends.
    budget = max_restarts if max_restarts is not None else 2 * workers + 2
    restarts_left = budget
    completed_at_last_death = -1
    live: dict[str, BaseProcess] = {}
    roles: dict[str, Role] = {}
    deaths: list[str] = []
    storage.dispose()
    wake = context.Event()

    def spawn(role: Role) -> None:
        tag = uuid.uuid4().hex[:8]
        process = context.Process(
            target=_worker_main,
            args=(storage.url, controller.study.name, train, fitness, tag, wake, role),
            name=f"pbtune-worker-{tag}",
            daemon=True,
        )
        process.start()
        assert process.pid is not None
        live[worker_id_for(process.pid, tag)] = process
        roles[worker_id_for(process.pid, tag)] = role

    for role in _roles(workers, evaluators):
        spawn(role)
    try:
        while live:
            # Wakes as soon as a worker exits, so the end of a run is not a poll away.
            wait([process.sentinel for process in live.values()], timeout=MONITOR_INTERVAL_S)
            for worker, process in list(live.items()):
                if process.is_alive():
                    continue
                del live[worker]
                reason = f"lost: worker process {process.pid} died (exit code {process.exitcode})"
                running = _record_lost_worker(controller, worker, reason)
                if process.exitcode == 0:
                    continue
                _log.warning(reason)
                deaths.append(reason)
                completed = _count_complete(controller)
                if completed != completed_at_last_death:
                    completed_at_last_death, restarts_left = completed, budget
                if running and restarts_left > 0:
                    restarts_left -= 1
                    spawn(roles[worker])
            try:
                controller.maybe_reap()
                _enforce_trial_timeout(controller, live)
                if tick is not None:
                    tick()
            except StorageError as error:
                # The workers ride out a storage outage with their own retries; so does
                # this loop, which only watches.
                _log.warning("cannot read the study: %s", error)
    finally:
        for process in live.values():
            if process.is_alive():
                process.terminate()
        for worker, process in live.items():
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
            controller.fail_worker(worker, "lost: the run was interrupted", counts=False)
    if deaths and storage.get_study_state(controller.study.id) == StudyState.RUNNING:
        raise StudyFailedError(
            f"worker processes kept dying ({len(deaths)} times; the last: "
            f"{deaths[-1].removeprefix('lost: ')}); see their output above. The study is "
            "unfinished: fix the cause and run again to continue it."
        )


def _count_complete(controller: Controller) -> int:
    try:
        return controller.storage.count_states(controller.study.id)[TrialState.COMPLETE]
    except StorageError:
        return -1


def _record_lost_worker(controller: Controller, worker: str, reason: str) -> bool:
    """Fail a dead worker's trial; True if the study still runs (so replace the worker)."""
    try:
        controller.fail_worker(worker, reason)
        state = controller.storage.get_study_by_id(controller.study.id).state
    except StorageError as error:
        # Its trial goes stale and is retried by the heartbeat check instead.
        _log.warning("cannot record the lost worker %s yet: %s", worker, error)
        return True
    return state == StudyState.RUNNING


def _enforce_trial_timeout(controller: Controller, live: dict[str, BaseProcess]) -> None:
    limit = controller.config.trial_timeout
    if limit is None:
        return
    now = time.time()
    for trial in controller.storage.get_trials(controller.study.id, [TrialState.RUNNING]):
        process = live.get(trial.worker or "")
        if process is None or trial.started_at is None or now - trial.started_at <= limit:
            continue
        # Fail first: only if that still finds the trial running is its worker killed, so
        # a worker that just moved on to another trial is left alone.
        if controller.fail_lost(trial, f"timed out: ran longer than trial_timeout={limit}s"):
            process.kill()
            process.join()


def run_threads(
    storage: Storage,
    controller: Controller,
    train: TrainFn | Entry,
    workers: int,
    *,
    fitness: Callable[[Mapping[str, float]], float] | None = None,
    tick: Tick | None = None,
    evaluators: int = 0,
) -> None:
    """Run the worker loop in ``workers`` threads (for in-memory storage), plus
    ``evaluators`` threads that only evaluate."""
    fn = train.load() if isinstance(train, Entry) else train
    stop, wake = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def target(role: Role) -> None:
        try:
            run_worker(storage, controller.study.name, fn, worker_id=new_worker_id(),
                       fitness=fitness, stop=stop, wake=wake, role=role)
        except BaseException as error:
            errors.append(error)
            stop.set()

    threads = [threading.Thread(target=target, args=(role,), name=f"pbtune-worker-{i}",
                                daemon=True)
               for i, role in enumerate(_roles(workers, evaluators))]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=MONITOR_INTERVAL_S)
            if tick is not None:
                tick()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]


def _roles(workers: int, evaluators: int) -> list[Role]:
    """Dedicated evaluators make the other workers trainers; else every worker does both."""
    both: list[Role] = ["both"]
    if not evaluators:
        return both * workers
    trainer: list[Role] = ["train"]
    evaluator: list[Role] = ["evaluate"]
    return trainer * workers + evaluator * evaluators


def _check_picklable(*objects: Any) -> None:
    # Worker processes are started fresh ("spawn"), so the function travels by reference.
    for obj in objects:
        if obj is None or isinstance(obj, Entry):
            continue
        try:
            pickle.dumps(obj)
        except Exception as error:
            raise ConfigError(
                f"{getattr(obj, '__qualname__', obj)!r} cannot be sent to worker processes "
                f"({error}). Define it at the top level of a module (not a lambda or a "
                "nested function), and start the study under `if __name__ == '__main__':`"
            ) from None
