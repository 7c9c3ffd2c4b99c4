"""Local execution backends: N worker processes (durable storage) or threads (in memory)."""

from __future__ import annotations

import atexit
import gc
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from pbtune._errors import ConfigError
from pbtune._imports import UNGUARDED_EXIT, unguarded_script
from pbtune._logging import DropTrialFailures
from pbtune.controller import Controller, Role, import_object
from pbtune.storages import Storage
from pbtune.trial import TrainFn
from pbtune.worker._deadline import Deadline
from pbtune.worker._devices import Devices, visible_devices
from pbtune.worker._loop import WORKER_APPLICATION, Wake, new_worker_id, run_worker
from pbtune.worker._restarts import Restarts, TrialTimeout, roles_can_finish, watch_study
from pbtune.worker._sendable import check_sendable
from pbtune.worker._signals import children_ignore_sigint, interrupts_deferred, interrupts_once
from pbtune.worker._start import apply_environment, start_server, worker_context

_log = logging.getLogger("pbtune.worker")

MONITOR_INTERVAL_S = 0.2
IDLE_THREAD_EXIT_S = 30.0  # a bound: a thread between trials ends in milliseconds
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
    max_trials: int | None = None,
    role: Role = "both",
    run: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """A worker process: ``run`` is the process id of the run that started it (the
    parent of a spawned worker; a forked one's parent is the forkserver), ``environ`` the
    run's environment for a forked worker (None: a spawned one; see `_start`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    if hasattr(signal, "pthread_sigmask"):  # see children_ignore_sigint
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    apply_environment(environ)
    _exit_with_parent(run)
    logging.basicConfig(level=logging.WARNING, format="pbtune worker %(process)d: %(message)s")
    # The run that started this process logs a line for every finished trial.
    logging.getLogger("pbtune.worker").addFilter(DropTrialFailures())
    storage = Storage(url, application_name=WORKER_APPLICATION)
    try:
        fn = train.load() if isinstance(train, Entry) else train
        run_worker(storage, study_name, fn, worker_id=worker_id_for(os.getpid(), tag),
                   fitness=fitness, wake=wake, max_trials=max_trials, role=role)
        storage.dispose()
    finally:
        # A forked worker ends in os._exit: the atexit handlers of the user's code (a
        # logger that flushes at exit) would not run, as they do in a spawned one.
        if environ is not None:
            atexit._run_exitfuncs()
    # The run waits for its workers to exit. The interpreter's last garbage collection
    # over numpy's and SQLAlchemy's objects takes about 0.1 s, and frees nothing that
    # exit would not: skip it (a spawned worker's atexit handlers and module teardown
    # still run).
    gc.freeze()


def _exit_with_parent(run: int | None = None) -> None:
    """End this worker when the process that started it, or the run ``run``, dies (even
    by SIGKILL). A forked worker's parent is the forkserver, which outlives the run.

    The trial it was running is then retried by whoever runs the study next; without this,
    orphaned workers would go on training after the user killed the run.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent and (run is None or pid_alive(run)):
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
    """Fail held trials of workers on this host whose process is gone (after a crash),
    without waiting for their heartbeat to go stale."""
    host = socket.gethostname()
    lost = 0
    for held in controller.held_trials():
        worker = held.trial.worker or ""
        parts = worker.split(":")
        local = len(parts) >= 3 and parts[0] == host and parts[1].isdigit()
        if local and not pid_alive(int(parts[1])):
            lost += controller.fail_lost(
                held, f"lost: worker {worker} is no longer running", counts=False
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
    max_trials: int | None = None,
    evaluators: int = 0,
    role: Role | None = None,
    deadline: Deadline | None = None,
    devices: Sequence[Devices] | None = None,
) -> None:
    """Run ``workers`` worker processes until the study is done; replace dead ones.

    With ``max_trials``, each process stops after that many trials (`pbtune worker`).
    With ``evaluators``, that many more processes only evaluate and the others only train;
    ``role`` gives every process one role instead (`pbtune worker --role`). At the
    ``deadline`` the processes are stopped and their trials put back in the queue.
    ``devices``: the ``CUDA_VISIBLE_DEVICES`` of each process slot (trainers, then
    evaluators; see `plan_devices`); a replacement starts with the devices of the
    process it replaces.
    """
    assert storage.url is not None
    _check_picklable(train, fitness)
    context = worker_context(devices, storage.url)
    forked = context.get_start_method() != "spawn"
    start_server(devices, storage.url)  # if `optimize` did not: with the run's import path
    restarts = Restarts(controller, workers + evaluators, max_restarts)
    live: dict[str, BaseProcess] = {}
    roles: dict[str, Role] = {}
    slots: dict[str, int] = {}  # worker id -> its slot, which a replacement takes over
    storage.dispose()
    wake = context.Event()
    every = [role] * workers if role is not None else worker_roles(workers, evaluators)
    assert devices is None or len(devices) == len(every)

    def spawn(role: Role, slot: int) -> None:
        tag = uuid.uuid4().hex[:8]
        process = context.Process(
            target=_worker_main,
            args=(storage.url, controller.study.name, train, fitness, tag, wake, max_trials,
                  role, os.getpid(), dict(os.environ) if forked else None),
            name=f"pbtune-worker-{tag}",
            daemon=True,
        )
        with children_ignore_sigint(), visible_devices(devices[slot] if devices else None):
            process.start()
        assert process.pid is not None
        worker = worker_id_for(process.pid, tag)
        live[worker], roles[worker], slots[worker] = process, role, slot

    def kill(worker: str) -> None:
        live[worker].kill()
        live[worker].join()

    enforce_timeout = TrialTimeout(controller, live, kill)

    with interrupts_once():  # a second Ctrl-C must not cut the clean-up short
        for slot, each in enumerate(every):
            spawn(each, slot)
        try:
            while live and not (deadline is not None and deadline.passed()):
                # Wakes as soon as a worker exits, so the end of a run is not a poll away.
                wait([process.sentinel for process in live.values()], timeout=MONITOR_INTERVAL_S)
                for worker, process in list(live.items()):
                    if process.is_alive():
                        continue
                    del live[worker]
                    if process.exitcode == UNGUARDED_EXIT:
                        raise ConfigError(unguarded_script(_main_script()))
                    reason = (f"lost: worker process {process.pid} died "
                              f"(exit code {process.exitcode})")
                    if restarts.exited(worker, reason, crashed=process.exitcode != 0):
                        spawn(roles[worker], slots[worker])
                if role is None and restarts.deaths and not roles_can_finish(
                    (roles[w] for w in live), controller.config.evaluated
                ):
                    break  # the run's trainers or evaluators are all gone for good
                watch_study(controller, enforce_timeout, tick)
        finally:
            with interrupts_deferred():
                for process in live.values():
                    if process.is_alive():
                        process.terminate()
                for worker, process in live.items():
                    process.join(timeout=5)
                    if process.is_alive():
                        process.kill()
                        process.join()
                    restarts.stopped(worker, deadline)
    restarts.check(deadline)


def run_threads(
    storage: Storage,
    controller: Controller,
    train: TrainFn | Entry,
    workers: int,
    *,
    fitness: Callable[[Mapping[str, float]], float] | None = None,
    tick: Tick | None = None,
    evaluators: int = 0,
    deadline: Deadline | None = None,
) -> None:
    """Run the worker loop in ``workers`` threads (for in-memory storage), plus
    ``evaluators`` threads that only evaluate.

    Ctrl-C does not wait for the trials that are running (a thread cannot be stopped
    mid-function): they are recorded as LOST at once, and a thread that finishes its
    trial later has its result refused (its claim was revoked) and ends. At the
    ``deadline`` likewise, except that the trials go back in the queue unchanged."""
    fn = train.load() if isinstance(train, Entry) else train
    given = controller.config.evaluate
    evaluate = given if callable(given) else None  # the threads share this process
    stop, wake = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    roles = worker_roles(workers, evaluators)
    ids = [new_worker_id() for _ in roles]

    def target(role: Role, worker_id: str) -> None:
        try:
            run_worker(storage, controller.study.name, fn, worker_id=worker_id,
                       fitness=fitness, stop=stop, wake=wake, role=role,
                       evaluate=evaluate)
        except BaseException as error:
            errors.append(error)
            stop.set()

    threads = [threading.Thread(target=target, args=(role, worker_id),
                                name=f"pbtune-worker-{i}", daemon=True)
               for i, (role, worker_id) in enumerate(zip(roles, ids, strict=True))]
    with interrupts_once():
        for thread in threads:
            thread.start()
        try:
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(timeout=MONITOR_INTERVAL_S)
                if tick is not None:
                    tick()
                if deadline is not None and deadline.passed():
                    with interrupts_deferred():
                        deadline.put_back += _requeue_threads(controller, stop, threads, ids)
                    break
        except KeyboardInterrupt:
            stop.set()
            with interrupts_deferred():
                for worker_id in ids:
                    controller.fail_worker(worker_id, "lost: the run was interrupted",
                                           counts=False)
            raise
        finally:
            stop.set()
        if deadline is None or not deadline.reached:  # else they may train for long yet
            for thread in threads:
                thread.join()
    if errors:
        raise errors[0]


def _requeue_threads(controller: Controller, stop: threading.Event,
                     threads: list[threading.Thread], ids: list[str]) -> int:
    """At a run's deadline: stop the worker threads and put their trials back in the
    queue; return how many. A thread in the training function cannot be stopped: it is
    left to end, and its result is refused. One that held nothing is not in it (after
    ``stop``, a worker gives back what it claims without starting it): it ends at once,
    and is waited for, so that no claim of its outlives the run."""
    stop.set()
    back = 0
    for thread, worker_id in zip(threads, ids, strict=True):
        held = controller.requeue_worker(worker_id)
        if not held:
            thread.join(timeout=IDLE_THREAD_EXIT_S)
        back += held
    return back


def worker_roles(workers: int, evaluators: int) -> list[Role]:
    """Dedicated evaluators make the other workers trainers; else every worker does both."""
    both: list[Role] = ["both"]
    if not evaluators:
        return both * workers
    trainer: list[Role] = ["train"]
    evaluator: list[Role] = ["evaluate"]
    return trainer * workers + evaluator * evaluators


def _main_script() -> str | None:
    """The file of the script being run (``python script.py``), if any."""
    return getattr(sys.modules.get("__main__"), "__file__", None)


def _check_picklable(*objects: Any) -> None:
    for obj in objects:
        if obj is not None and not isinstance(obj, Entry):
            check_sendable(obj, "the training function" if obj is objects[0] else
                           "the fitness function")
