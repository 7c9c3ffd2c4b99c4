"""How a study's workers run: the backend and the arguments `Study.optimize` and
`Study.join` are given (checked before anything starts), one worker loop in this process
for `Study.join`, and SIGTERM taken as Ctrl-C."""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, get_args

from pbtune._errors import ConfigError
from pbtune._logging import ensure_default_handler
from pbtune.controller import Controller, Role
from pbtune.storages import Storage
from pbtune.trial import Trial
from pbtune.worker import (
    Deadline,
    DevicePlan,
    DeviceSpec,
    Entry,
    RayBackend,
    TimedOut,
    TrainFn,
    check_takes_trial,
    new_worker_id,
    plan_devices,
    raising_at,
    run_processes,
    run_ray,
    run_threads,
    run_worker,
)

Backend = Callable[..., None]


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's preemption) stops a run as Ctrl-C does: workers are stopped
    and their trials retried on the next run without using up ``max_retries``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def pick_backend(storage: Storage, backend: str | RayBackend | None) -> Backend:
    """The function that runs the workers for ``backend``, checked up front."""
    if backend is None:
        backend = "thread" if storage.url is None else "process"
    if backend == "ray":
        backend = RayBackend()
    if isinstance(backend, RayBackend):
        if storage.url is None:
            raise ConfigError(
                "backend='ray' needs a storage the Ray workers can reach "
                "(postgresql://... or sqlite:///a/shared/file.db); an in-memory study "
                "lives in this process only"
            )
        return functools.partial(run_ray, backend=backend)
    if backend == "process":
        if storage.url is None:
            raise ConfigError(
                "backend='process' needs a database storage (sqlite:///file.db or "
                "postgresql://...); an in-memory study runs in threads (backend='thread')"
            )
        return run_processes
    if backend == "thread":
        return run_threads
    raise ConfigError(
        f"backend must be 'process', 'thread', 'ray' or a pbtune.RayBackend, got {backend!r}"
    )


def plan_workers(storage: Storage, backend: str | RayBackend | None, devices: DeviceSpec,
                 gpus_per_worker: int | None, workers: int | None,
                 evaluators: int = 0) -> DevicePlan:
    """How many workers run and the GPUs of each (see `plan_devices`), checked before
    anything starts: only local worker processes can be given devices."""
    if devices is not None:
        if backend is None:
            backend = "thread" if storage.url is None else "process"
        if backend == "ray" or isinstance(backend, RayBackend):
            raise ConfigError(
                "devices= is for local worker processes; Ray places its workers on GPUs "
                "itself: pass backend=pbtune.RayBackend(resources_per_trial={'GPU': 1}) "
                "(and resources_per_evaluator for evaluators) instead of devices=")
        if backend == "thread":
            instead = (
                "leave backend out (a database study's default is 'process') or pass "
                "backend='process'" if storage.url is not None else
                "use a database storage (storage='sqlite:///pbtune.db') so the workers run "
                "as processes, or set CUDA_VISIBLE_DEVICES before Python starts")
            raise ConfigError(
                "devices= gives each worker process its own GPUs, but the thread backend "
                f"runs every worker in this process, where they share its GPUs: {instead}")
        ensure_default_handler()  # the plan says at INFO which worker sees which GPUs
    return plan_devices(devices, gpus_per_worker, workers, evaluators)


def check_count(name: str, value: object) -> None:
    """``workers`` (None: one, or one per group of devices) or ``max_trials``: an int >= 1."""
    if value is None and name == "workers":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {value!r}")


def check_evaluators(evaluators: object, evaluated: bool) -> None:
    """``optimize(evaluators=K)``: an int >= 0, and K > 0 only for a study that evaluates."""
    if isinstance(evaluators, bool) or not isinstance(evaluators, int) or evaluators < 0:
        raise ConfigError(f"evaluators must be an int >= 0, got {evaluators!r}")
    if evaluators and not evaluated:
        raise ConfigError(
            "evaluators= needs a study with an evaluate function: "
            "create_study(..., evaluate=score)"
        )


def check_join(storage: Storage, train: TrainFn | str | None, *, workers: int | None,
               max_trials: int | None, role: Role, devices: DeviceSpec,
               evaluated: bool, name: str) -> None:
    """`Study.join`'s arguments, checked before anything starts (``evaluated``: the study
    named ``name`` has an evaluate function): worker processes (more than one worker, or
    devices) need a database storage."""
    check_count("workers", workers)
    if max_trials is not None:
        check_count("max_trials", max_trials)
    if role not in get_args(Role):
        raise ConfigError(f"role must be one of {', '.join(get_args(Role))}, got {role!r}")
    if role == "evaluate" and not evaluated:
        raise ConfigError(f"study {name!r} has no evaluate function to run")
    if train is None and role != "evaluate":
        raise ConfigError("join needs the training function; only role='evaluate' "
                          "runs without one")
    if ((workers or 1) > 1 or devices is not None) and storage.url is None:
        raise ConfigError(
            f"join({'devices=' if devices is not None else 'workers > 1'}) starts worker "
            "processes, which need a database storage: create the study with "
            "storage='sqlite:///pbtune.db' (or postgresql://...)" + (
                "" if devices is not None else
                ", or run an in-memory study's workers as threads: optimize(train, "
                "workers=N)")
        )


def run_here(
    storage: Storage,
    controller: Controller,
    train: TrainFn | Entry,
    *,
    max_trials: int | None,
    role: Role,
    fitness: Callable[[Mapping[str, float]], float] | None = None,
    evaluate: Callable[[Trial], Mapping[str, float]] | None = None,
    deadline: Deadline | None = None,
) -> int:
    """One worker loop in this process (so its worker id carries this process's pid);
    how many trials it ran. The ``deadline`` stops it as Ctrl-C does, in the middle of
    a trial, which goes back in the queue unchanged (off the main thread, where no
    signal reaches, it stops after its running trial instead)."""
    fn = train.load() if isinstance(train, Entry) else train
    worker_id = new_worker_id()
    try:
        with raising_at(deadline) as stop:
            return run_worker(storage, controller.study.name, fn, worker_id=worker_id,
                              fitness=fitness, max_trials=max_trials, role=role,
                              evaluate=evaluate, stop=stop)
    except TimedOut:
        assert deadline is not None
        deadline.put_back += controller.requeue_worker(worker_id)
        return sum(t.worker == worker_id for t in storage.get_trials(controller.study.id))
    except KeyboardInterrupt:
        # Another worker retries the trial; a stopped worker is not the trial's fault.
        controller.fail_worker(worker_id, "lost: the worker was interrupted", counts=False)
        raise


def training_function(train: TrainFn | str | None, *, evaluator: bool = False
                      ) -> TrainFn | Entry:
    """``train`` as the workers take it: a function (checked to take a trial), or an
    `Entry` for ``"file.py:name"``; ``evaluator``: None stands for a dedicated
    evaluator's, which never trains."""
    fn: TrainFn | Entry | None = (
        no_training if train is None and evaluator
        else Entry(train) if isinstance(train, str) else train)
    if not isinstance(fn, Entry) and not callable(fn):
        raise ConfigError(f"train must be a function of a pbtune.Trial, got {train!r}")
    if not isinstance(fn, Entry):
        check_takes_trial(fn)
    return fn


def no_training(trial: Trial) -> dict[str, float]:
    """The training function of a dedicated evaluator, which never trains."""
    raise AssertionError(f"an evaluator was given trial {trial.id} to train")
