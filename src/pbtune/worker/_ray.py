"""The Ray backend: the same worker loop in N Ray actors, watched from the driver.

Ray is imported here only, when a study runs with ``backend="ray"``; the rest of pbtune
works without it.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pbtune._errors import ConfigError
from pbtune.controller import Controller, Role
from pbtune.storages import Storage, absolute_sqlite_url
from pbtune.trial import TrainFn
from pbtune.worker._deadline import Deadline
from pbtune.worker._loop import WORKER_APPLICATION, run_worker
from pbtune.worker._process import MONITOR_INTERVAL_S, Entry, Tick, worker_roles
from pbtune.worker._restarts import Restarts, TrialTimeout, roles_can_finish, watch_study
from pbtune.worker._signals import interrupts_deferred

_log = logging.getLogger("pbtune.worker")
ACTOR_EXIT_S = 10.0


@dataclass(frozen=True)
class RayBackend:
    """Run a study's workers as Ray actors, one long-running worker loop each.

    ``address`` is passed to ``ray.init`` when Ray is not initialized yet (None starts a
    local Ray; ``"auto"`` joins the cluster that ``ray start --head`` started).
    ``resources_per_trial`` is what each worker holds, e.g. ``{"CPU": 1, "GPU": 1}``
    (default ``{"CPU": 1}``); ``resources_per_evaluator`` is what each dedicated
    evaluator holds (``optimize(..., evaluators=K)``; default: ``resources_per_trial``).
    The storage must be one every node of the cluster can reach:
    PostgreSQL (a SQLite file must stay on one machine's local disk); so must
    ``checkpoint_root``.

    Example::

        study.optimize(train, workers=8,
                       backend=pbtune.RayBackend(address="auto",
                                                 resources_per_trial={"GPU": 1}))
    """

    address: str | None = None
    resources_per_trial: Mapping[str, float] | None = None
    runtime_env: Mapping[str, Any] | None = None
    init_kwargs: Mapping[str, Any] = field(default_factory=dict)
    resources_per_evaluator: Mapping[str, float] | None = None

    def actor_options(self, role: Role = "both") -> dict[str, Any]:
        """``ray.remote`` options: CPU and GPU by their own names, the rest as resources."""
        given, name = self.resources_per_trial, "resources_per_trial"
        if role == "evaluate" and self.resources_per_evaluator is not None:
            given, name = self.resources_per_evaluator, "resources_per_evaluator"
        resources = dict(given or {"CPU": 1})
        for key, amount in resources.items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
                raise ConfigError(f"{name}[{key!r}] must be a number >= 0, got {amount!r}")
        options: dict[str, Any] = {
            "num_cpus": resources.pop("CPU", 0),
            "num_gpus": resources.pop("GPU", 0),
            "max_restarts": 0,  # pbtune replaces dead workers itself, under its policy
        }
        if resources:
            options["resources"] = resources
        if self.runtime_env is not None:
            options["runtime_env"] = dict(self.runtime_env)
        return options


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "backend='ray' needs Ray: pip install 'pbtune[ray]' (or pip install ray)"
        ) from None
    return ray


@dataclass(frozen=True)
class _ByValue:
    """A training function pickled with its module's code, for workers that cannot
    import that module (a script's folder or a test folder is not on their path)."""

    data: bytes

    def load(self) -> TrainFn:
        import ray

        return ray.cloudpickle.loads(self.data)  # type: ignore[no-any-return]


def _ship(ray: Any, train: TrainFn | Entry) -> TrainFn | Entry | _ByValue:
    """How ``train`` travels: an `Entry` by name; a function of an installed package
    (or of ``__main__``, which cloudpickle sends whole) as it is; any other function
    with its module's code."""
    if isinstance(train, Entry):
        return _absolute_entry(train)
    module = sys.modules.get(getattr(train, "__module__", None) or "")
    source = getattr(module, "__file__", None) or ""
    if module is None or module.__name__ == "__main__" or any(
        part in source for part in ("site-packages", "dist-packages")
    ):
        return train
    ray.cloudpickle.register_pickle_by_value(module)
    try:
        return _ByValue(ray.cloudpickle.dumps(train))
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)


class _Worker:
    """The body of one Ray actor: a worker loop against the study's storage."""

    def run(self, url: str, study_name: str, train: TrainFn | Entry | _ByValue,
            fitness: Callable[[Mapping[str, float]], float] | None, worker_id: str,
            role: Role = "both") -> int:
        logging.basicConfig(level=logging.WARNING, format="pbtune worker %(process)d: %(message)s")
        storage = Storage(url, application_name=WORKER_APPLICATION)
        try:
            fn = train.load() if isinstance(train, (Entry, _ByValue)) else train
            return run_worker(storage, study_name, fn, worker_id=worker_id, fitness=fitness,
                              role=role)
        finally:
            storage.dispose()


def run_ray(
    storage: Storage,
    controller: Controller,
    train: TrainFn | Entry,
    workers: int,
    backend: RayBackend,
    *,
    fitness: Callable[[Mapping[str, float]], float] | None = None,
    tick: Tick | None = None,
    max_restarts: int | None = None,
    evaluators: int = 0,
    deadline: Deadline | None = None,
) -> None:
    """Run ``workers`` worker loops as Ray actors until the study is done; replace dead
    ones under the same policy as `run_processes`. ``evaluators`` more actors only
    evaluate (holding ``resources_per_evaluator``), and the others only train. At the
    ``deadline`` the actors are killed and their trials put back in the queue.
    ``storage`` is a database: `Study.optimize` refuses an in-memory one before any start."""
    assert storage.url is not None
    ray = _import_ray()
    roles = worker_roles(workers, evaluators)
    options = {role: backend.actor_options(role) for role in set(roles)}
    url = absolute_sqlite_url(storage.url)  # a relative file would be each worker's own
    shipped = _ship(ray, train)
    started = not ray.is_initialized()
    if started:
        ray.init(address=backend.address, **dict(backend.init_kwargs))
    try:
        actor_classes = {role: ray.remote(**opts)(_Worker) for role, opts in options.items()}
        restarts = Restarts(controller, len(roles), max_restarts, what="Ray workers")
        role_of: dict[str, Role] = {}
        live: dict[Any, tuple[str, Any]] = {}  # the run's result ref -> (worker id, actor)
        actors: dict[str, Any] = {}  # worker id -> actor, for the trial timeout

        enforce_timeout = TrialTimeout(controller, actors,
                                       lambda worker: ray.kill(actors[worker]))

        def spawn(role: Role) -> None:
            worker = f"ray:{uuid.uuid4().hex[:12]}"  # known here, so its trials can be failed
            actor = actor_classes[role].remote()
            ref = actor.run.remote(url, controller.study.name, shipped, fitness, worker, role)
            live[ref] = (worker, actor)
            actors[worker] = actor
            role_of[worker] = role

        for role in roles:
            spawn(role)
        try:
            while live and not (deadline is not None and deadline.passed()):
                ready, _ = ray.wait(list(live), num_returns=len(live),
                                    timeout=MONITOR_INTERVAL_S)
                for ref in ready:
                    worker, actor = live.pop(ref)
                    del actors[worker]
                    crash = _outcome(ray, ref)
                    ray.kill(actor)
                    reason = f"lost: Ray worker {worker} died ({crash})" if crash else ""
                    if restarts.exited(worker, reason or f"lost: {worker} ended",
                                       crashed=crash is not None):
                        spawn(role_of[worker])
                if restarts.deaths and not roles_can_finish(
                    (role_of[w] for w, _ in live.values()), controller.config.evaluated
                ):
                    break  # the trainers or the evaluators are all gone for good
                watch_study(controller, enforce_timeout, tick)
        finally:
            with interrupts_deferred():
                for _, actor in live.values():
                    ray.kill(actor)
                if live and deadline is not None and deadline.reached:
                    # Gone before their trials go back, so none claims another meanwhile.
                    ray.wait(list(live), num_returns=len(live), timeout=ACTOR_EXIT_S)
                for worker, _ in live.values():
                    restarts.stopped(worker, deadline)
        restarts.check(deadline)
    finally:
        if started:
            ray.shutdown()


def _outcome(ray: Any, ref: Any) -> str | None:
    """None if the worker loop returned; else what killed it, in one line."""
    try:
        ray.get(ref)
    except Exception as error:  # RayActorError (node lost, killed), RayTaskError, ...
        lines = [line for line in str(error).splitlines() if line.strip()]
        return f"{type(error).__name__}: {lines[-1] if lines else ''}".strip()
    return None


def _absolute_entry(train: TrainFn | Entry) -> TrainFn | Entry:
    """``script.py:train`` relative to this folder, for workers that start elsewhere."""
    if not isinstance(train, Entry):
        return train
    target, _, name = train.ref.rpartition(":")
    if target.endswith(".py") or "/" in target:
        return Entry(f"{os.path.abspath(os.path.expanduser(target))}:{name}")
    return train
