"""`simulate`: a study run by virtual workers on a virtual clock, its figures and its audit."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pbtune._errors import ConfigError, DuplicatedStudyError
from pbtune.controller import Controller
from pbtune.simulation._engine import Simulation
from pbtune.simulation._faults import Faults
from pbtune.simulation._records import audit
from pbtune.simulation._store import MemoryStore
from pbtune.simulation._tasks import Task, check_params, resolve_task
from pbtune.space import SearchSpace
from pbtune.storages import Storage, StudyState, VirtualClock
from pbtune.study import create_study
from pbtune.worker import IDLE_POLL_MAX_S


@dataclass
class SimulationResult:
    """What a simulation measured. Times called virtual are on the simulated clock;
    ``real_s`` and the controller's milliseconds are this machine's, spent in the real
    controller and storage. ``lost``: trials whose work was lost and never retried."""

    study: str
    storage: str
    workers: int
    trials: int
    complete: int
    decisions: int
    virtual_wall_s: float
    utilization: float
    real_s: float
    decisions_per_real_s: float
    controller_ms_median: float | None
    controller_ms_p99: float | None
    storage_calls: dict[str, int]  # by the controller method that made them
    idle_polls_per_s: float
    best_fitness: float | None
    best_curve: list[tuple[float, float]]
    faults: dict[str, float]
    lost: int
    unfinished: int
    state: str
    consistent: bool
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def __str__(self) -> str:
        ms = ("-" if self.controller_ms_median is None else
              f"{self.controller_ms_median:.2f} ms median, {self.controller_ms_p99:.2f} ms p99")
        faults = ", ".join(f"{k} {v:g}" for k, v in self.faults.items() if v) or "none"
        best = "-" if self.best_fitness is None else f"{self.best_fitness:.6g}"
        lines = [
            f"study {self.study!r} ({self.storage}), {self.workers} virtual workers: "
            f"{self.state}",
            f"  trials         {self.trials} ({self.complete} complete, {self.decisions} "
            f"decisions)",
            f"  virtual wall   {self.virtual_wall_s:.1f} s, utilization "
            f"{self.utilization:.3f}",
            f"  real time      {self.real_s:.2f} s: {self.decisions_per_real_s:.1f} "
            f"decisions/s; ask+tell {ms}",
            f"  best fitness   {best}",
            f"  faults         {faults}",
            f"  lost           {self.lost} (unfinished {self.unfinished}); records "
            + ("consistent" if self.consistent else "INCONSISTENT"),
        ]
        lines += [f"    {problem}" for problem in self.problems[:10]]
        return "\n".join(lines)


def simulate(
    task: Task | str = "toy",
    *,
    workers: int = 10,
    storage: str | None = None,
    name: str | None = None,
    seed: int = 0,
    kill_fraction: float = 0.0,
    silent_fraction: float = 0.0,
    outage: tuple[float, float] | None = None,
    restart_s: float | None = None,
    spread: float = 0.0,
    stragglers: float = 0.0,
    max_virtual_s: float | None = None,
    **study: Any,
) -> SimulationResult:
    """Run a study with ``workers`` virtual workers on a virtual clock, in this process:
    the real controller and storage decide, a surrogate ``task`` trains (see
    `pbtune.simulation`), so hours of a cluster's study take seconds.

    ``task``: ``"toy"`` (Jaderberg et al.'s quadratic), ``"nqm"`` (the noisy quadratic
    model), ``"file.py:function"``, or a function. ``study``: `pbtune.create_study`
    keyword arguments (space, metric, mode, population_size, steps_per_trial, max_steps,
    exploit, explore, ...); a built-in task brings its own defaults. The study is left in
    ``storage`` (a URL; None: memory) for `pbtune status` and the dashboard; its
    checkpoints were kept in memory only. Durations vary by member (``spread``, the sigma
    of a log-normal factor) and by draw (``stragglers``: the fraction of trials 3x slower).
    Faults: see `Faults`.

    Example::

        result = pbtune.simulate("nqm", workers=64, population_size=32, kill_fraction=0.1)
        print(result)
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    faults = Faults(kill_fraction, silent_fraction, outage, restart_s)
    fn = resolve_task(task)
    settings = _settings(fn, study)
    check_params(fn, list(settings["space"]))
    name = name or f"simulation-{getattr(fn, 'name', 'task')}-{uuid.uuid4().hex[:8]}"
    clock = VirtualClock(time.time())
    store = MemoryStore()
    try:
        created = create_study(name=name, storage=Storage(storage, clock=clock), seed=seed,
                               **settings)
    except DuplicatedStudyError:
        where = f" --storage {storage}" if storage else ""
        raise DuplicatedStudyError(
            f"a study named {name!r} exists in {storage}: a simulation makes a new study, "
            f"so give it another name, or delete that one first (pbtune delete{where} "
            f"--study {name} --yes)") from None
    if created.config.evaluated:
        raise ConfigError("a simulation runs studies without an evaluate function: the "
                          "surrogate's metrics are the trial's result")
    record = created.storage.get_study_by_id(created.id)
    controller = Controller(created.storage, record, created.config, store=store)
    simulation = Simulation(controller, store, fn, workers=workers, faults=faults, seed=seed,
                            spread=spread, stragglers=stragglers)
    began = time.perf_counter()
    simulation.run(until=max_virtual_s)
    real_s = time.perf_counter() - began
    state = created.storage.get_study_state(created.id)
    found = audit(created.trials(), finished=state != StudyState.RUNNING)
    return _result(created, simulation, found, real_s, state, workers, outage)


def _settings(fn: Task, study: Mapping[str, Any]) -> dict[str, Any]:
    settings = {**getattr(fn, "defaults", {}), **study}
    if "space" not in settings:
        raise ConfigError("a simulation of your own task needs the study's space (and "
                          "metric, mode, population_size, max_steps...): pass them as "
                          "create_study arguments, or a study file")
    space = settings["space"]
    if isinstance(space, Mapping) and all(isinstance(v, Mapping) for v in space.values()):
        settings["space"] = SearchSpace.from_dict(space)
    elif not isinstance(space, SearchSpace):
        settings["space"] = SearchSpace(space)
    return settings


def _result(created: Any, simulation: Simulation, found: Any, real_s: float,
            state: StudyState, workers: int, outage: tuple[float, float] | None
            ) -> SimulationResult:
    tally = simulation.tally
    wall = simulation.end - simulation.start
    median, p99 = simulation.controller_ms()
    idle = max(0, workers - created.config.population_size)
    best = tally.best[-1][1] if tally.best else None
    return SimulationResult(
        study=created.name, storage=repr(created.storage), workers=workers,
        trials=found.trials, complete=found.complete, decisions=tally.decisions,
        virtual_wall_s=wall,
        utilization=tally.busy_s / (len(simulation.workers) * wall) if wall > 0 else 0.0,
        real_s=real_s, decisions_per_real_s=tally.decisions / real_s if real_s else 0.0,
        controller_ms_median=median, controller_ms_p99=p99,
        storage_calls=dict(sorted(tally.calls.items())),
        idle_polls_per_s=idle / (0.75 * IDLE_POLL_MAX_S),
        best_fitness=best, best_curve=tally.best,
        faults={"killed": tally.killed, "silent": tally.silent, "reaped": tally.reaped,
                "lost_trials": found.lost_trials, "refused": tally.refused,
                "failed": tally.failed, "gone": tally.gone,
                "outage_s": outage[1] if outage else 0.0},
        lost=found.lost, unfinished=found.unfinished, state=state.value,
        consistent=found.consistent and not _problems(simulation, found),
        problems=found.problems + _problems(simulation, found),
    )


def _problems(simulation: Simulation, found: Any) -> list[str]:
    """What the simulation saw that the records must agree with."""
    tally = simulation.tally
    problems = []
    if simulation.stalled:
        problems.append("the simulation stalled: no trial started or ended for "
                        f"{simulation.stall_s:.0f} virtual seconds")
    if tally.told_twice:
        problems.append(f"{tally.told_twice} trials were told complete twice")
    if tally.started_twice:
        problems.append(f"{tally.started_twice} trials were trained by two workers")
    if tally.decisions != found.complete:
        problems.append(f"{tally.decisions} results were told, and the study records "
                        f"{found.complete} complete trials")
    return problems
