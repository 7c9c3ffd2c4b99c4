"""The discrete-event simulation: virtual workers run the real `Controller` against the
real storage, on a virtual clock, with each trial's training replaced by a surrogate task.

Events are kept in a heap by virtual time and run one at a time. A worker's life is the
real worker loop's (`pbtune.worker`): ask, train, tell and claim the next trial in one
transaction, heartbeat while training; a monitor reaps silent workers' trials. Training
costs the virtual seconds the surrogate says; a storage call costs the real seconds it
took, and the storage serves one call at a time (a call that finds it busy waits), so a
storage that cannot keep up shows as lost utilization, as it would on a cluster.

What is not simulated call by call: idle workers' polls. A worker with nothing to claim
joins the idle pool; a result told wakes one idle worker, and the pool polls once per
0.75 `IDLE_POLL_MAX_S` (the mean of a real idle worker's jittered wait, each), so the
storage load of many idle workers is underestimated (see
`SimulationResult.idle_polls_per_s`).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pbtune._errors import CheckpointGoneError, ConfigError, TrialFailedError
from pbtune.controller import Claimed, Controller, Done
from pbtune.simulation._faults import Faults
from pbtune.simulation._store import MemoryStore
from pbtune.simulation._tasks import Outcome, Task, run_task, trial_rng
from pbtune.storages import VirtualClock
from pbtune.worker import IDLE_POLL_MAX_S, POLL_INTERVAL_S

T = TypeVar("T")


@dataclass
class _Worker:
    name: str
    doomed: bool = False  # met its fault (see `Simulation._fate`)
    alive: bool = True
    done: bool = False
    trials: int = 0
    claimed: Claimed | None = None
    beating: bool = False


@dataclass
class Tally:
    """What happened, counted as it happened."""

    decisions: int = 0
    refused: int = 0  # results told after their trial was failed as lost (late)
    failed: int = 0  # results the study refused as failures (a NaN metric, say)
    gone: int = 0  # parents whose state was gone when a child started
    killed: int = 0
    silent: int = 0
    reaped: int = 0
    busy_s: float = 0.0
    tell_s: list[float] = field(default_factory=list)  # real seconds per ask+tell
    call_s: list[float] = field(default_factory=list)  # real seconds per storage call
    calls: dict[str, int] = field(default_factory=dict)  # storage calls by what made them
    best: list[tuple[float, float]] = field(default_factory=list)  # (virtual s, fitness)
    told_twice: int = 0
    started_twice: int = 0  # trials two workers trained (the claim must prevent it)


class Simulation:
    """One simulated run of ``controller``'s study by ``workers`` virtual workers."""

    def __init__(self, controller: Controller, store: MemoryStore, task: Task, *,
                 workers: int, faults: Faults, seed: int, spread: float,
                 stragglers: float) -> None:
        clock = controller.clock
        if not isinstance(clock, VirtualClock):
            raise ConfigError("a simulation's storage needs a VirtualClock: "
                              "Storage(url, clock=VirtualClock())")
        self.clock = clock
        self.controller = controller
        self.store = store
        self.task = task
        self.faults = faults
        self.seed = seed
        self._rng = random.Random(seed)
        self._spread = spread
        self._stragglers = stragglers
        self._member_speed: dict[int, float] = {}
        self.start = clock.time()
        self.end = self.start
        self.tally = Tally()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._server_free = self.start
        self._line: deque[Callable[[], None]] = deque()  # calls waiting for the storage
        self._serving = False
        self._serve_pending = False
        self._idle: deque[_Worker] = deque()
        self._polling = False
        self._told: set[int] = set()
        self._started: set[int] = set()
        self._names = itertools.count()
        self.workers = [self._new_worker() for _ in range(workers)]
        self._plan_faults(workers)
        self._best: float | None = None
        self._progress = self.start  # when a trial last started or ended
        self.stall_s = max(3600.0, 20 * controller.config.heartbeat_timeout)
        self.stalled = False
        self._maximize = controller.config.mode != "min"

    # -- the event loop -----------------------------------------------------------------
    def run(self, until: float | None = None) -> None:
        """Run until every worker is done or dead (or past ``until`` virtual seconds)."""
        for worker in self.workers:
            self._at(self.start, lambda w=worker: self._ask(w))  # type: ignore[misc]
        self._at(self.start + self.controller.config.heartbeat_interval, self._monitor)
        while self._heap:
            at, _, action = heapq.heappop(self._heap)
            if until is not None and at - self.start > until:
                break
            self.clock.advance(at)
            action()

    def _at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), action))

    @property
    def now(self) -> float:
        return self.clock.time()

    def _storage(self, action: Callable[[], None]) -> bool:
        """Whether the storage can serve a call now; if not (an outage, or busy with
        other calls), ``action`` waits in line, and runs when the storage is free."""
        outage = self.faults.outage
        if outage is not None and self.start + outage[0] <= self.now < self.start + sum(outage):
            self._at(self.start + sum(outage), action)
            return False
        if self._serving or (self._server_free <= self.now and not self._line):
            return True
        self._line.append(action)
        if not self._serve_pending:
            self._serve_pending = True
            self._at(self._server_free, self._serve)
        return False

    def _serve(self) -> None:
        """The storage is free: the calls waiting in line go, one at a time."""
        self._serve_pending = False
        while self._line and self._server_free <= self.now:
            self._serving = True
            try:
                self._line.popleft()()
            finally:
                self._serving = False
        if self._line:
            self._serve_pending = True
            self._at(self._server_free, self._serve)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
        """Run one storage call of the controller; (its result, when it ends on the
        virtual clock: now plus the real seconds it took)."""
        began = time.perf_counter()
        result = fn(*args, **kwargs)
        took = time.perf_counter() - began
        self.tally.call_s.append(took)
        kind = getattr(fn, "__name__", "call")
        self.tally.calls[kind] = self.tally.calls.get(kind, 0) + 1
        self._server_free = self.now + took
        return result, self._server_free

    # -- workers ------------------------------------------------------------------------
    def _new_worker(self) -> _Worker:
        return _Worker(f"sim-{next(self._names)}")

    def _plan_faults(self, workers: int) -> None:
        """How often a trial's start dooms its worker: ``kill_fraction`` of the workers
        die, and ``silent_fraction`` hang, spread over the first half of the study's
        trials. Faults strike workers that train (an idle worker that dies loses nothing,
        and is not counted); each worker meets one fault at most."""
        config = self.controller.config
        trials = config.population_size * math.ceil(config.max_steps / config.steps_per_trial)
        self._kills_left = round(self.faults.kill_fraction * workers)
        self._silences_left = round(self.faults.silent_fraction * workers)
        self._hazard = 2.0 / trials

    def _fate(self, worker: _Worker) -> str | None:
        """Whether this trial's worker dies ("kill") or hangs ("silent") during it."""
        if worker.doomed or not (self._kills_left or self._silences_left):
            return None
        if self._rng.random() >= self._hazard * (self._kills_left + self._silences_left):
            return None
        worker.doomed = True
        if self._rng.random() * (self._kills_left + self._silences_left) < self._kills_left:
            self._kills_left -= 1
            return "kill"
        self._silences_left -= 1
        return "silent"

    def _ask(self, worker: _Worker) -> None:
        if not worker.alive or worker.done or not self._storage(lambda: self._ask(worker)):
            return
        asked, after = self._call(self.controller.ask, worker.name)
        self.end = max(self.end, after)
        if isinstance(asked, Claimed):
            self._start(worker, asked, after)
            self._wake(after)  # more may be queued
        elif isinstance(asked, Done):
            self._finish_all(worker)
        else:
            self._idle.append(worker)
            self._poll_later(after)

    def _finish_all(self, worker: _Worker) -> None:
        """The study is done: this worker stops, and so does every idle one (each would
        learn it on its next poll, within `IDLE_POLL_MAX_S`)."""
        worker.done = True
        for idle in self._idle:
            idle.done = True
        self._idle.clear()

    def _wake(self, at: float) -> None:
        """A result was told: one idle worker asks (a real one is woken, or polls)."""
        if self._idle:
            worker = self._idle.popleft()
            self._at(at + POLL_INTERVAL_S, lambda: self._ask(worker))

    def _poll_later(self, at: float) -> None:
        if not self._polling:
            self._polling = True
            self._at(at + IDLE_POLL_MAX_S * 0.75, self._poll)

    def _poll(self) -> None:
        self._polling = False
        if self.now - self._progress > self.stall_s:
            self.stalled = True  # nothing has started or ended for long: nothing will
            self._heap.clear()
            return
        if self._idle:
            self._ask(self._idle.popleft())
        if self._idle:
            self._poll_later(self.now)

    def _start(self, worker: _Worker, claimed: Claimed, at: float) -> None:
        trial = claimed.trial
        if trial.id in self._started:
            self.tally.started_twice += 1
        self._started.add(trial.id)
        state = None
        if trial.parent_id is not None:
            parent = claimed.parent
            found, state = (self.store.get(parent.checkpoint)
                            if parent is not None and parent.checkpoint is not None
                            else (False, None))
            if not found:
                self.tally.gone += 1
                error = CheckpointGoneError(f"the state of trial {trial.parent_id} is gone")
                self._at(at, lambda: self._fail(worker, claimed, error, counts=False))
                return
        outcome = run_task(self.task, trial.params, state, trial.start_step, trial.end_step,
                           trial_rng(self.seed, trial.id))
        seconds = outcome.seconds * self._slowdown(trial.member)
        worker.trials += 1
        self._progress = at
        worker.claimed, worker.beating = claimed, True
        ends = at + seconds
        fate = self._fate(worker)
        if fate == "kill":
            dies = at + self._rng.random() * seconds
            self.tally.busy_s += dies - at
            self._at(dies, lambda: self._die(worker))
        else:
            if fate == "silent":
                ends += self._silence(worker, at, seconds)
            self.tally.busy_s += seconds
            self._at(ends, lambda: self._tell(worker, claimed, outcome))
        self._at(at + self.controller.config.heartbeat_interval,
                 lambda: self._beat(worker, claimed, ends))

    def _slowdown(self, member: int) -> float:
        """How much longer than the task says a trial takes: a member's own speed
        (``spread``: the sigma of a log-normal) and stragglers (a fraction of draws, 3x)."""
        speed = self._member_speed.setdefault(
            member, math.exp(self._rng.gauss(0.0, self._spread)) if self._spread else 1.0)
        if self._stragglers and self._rng.random() < self._stragglers:
            speed *= 3.0
        return speed

    def _silence(self, worker: _Worker, at: float, seconds: float) -> float:
        """The worker hangs mid-trial, past the heartbeat timeout, then goes on: its
        beats stop meanwhile, and its late result is refused. Returns the hang's length."""
        config = self.controller.config
        hang = config.heartbeat_timeout + 3 * config.heartbeat_interval
        begins = at + self._rng.random() * seconds
        self.tally.silent += 1

        def mute() -> None:
            worker.beating = False

        def speak() -> None:
            worker.beating = worker.claimed is not None

        self._at(begins, mute)
        self._at(begins + hang, speak)
        return hang

    def _beat(self, worker: _Worker, claimed: Claimed, ends: float) -> None:
        if worker.claimed is not claimed or not worker.alive or self.now >= ends:
            return
        interval = self.controller.config.heartbeat_interval
        if worker.beating:
            if not self._storage(lambda: self._beat(worker, claimed, ends)):
                return
            held, _ = self._call(self.controller.heartbeat, claimed)
            if not held:
                return
        self._at(self.now + interval, lambda: self._beat(worker, claimed, ends))

    def _die(self, worker: _Worker) -> None:
        """The worker is killed mid-trial; its trial is left for the reaper."""
        worker.alive, worker.claimed = False, None
        self.tally.killed += 1
        restart = self.faults.restart_s
        if restart is not None:
            fresh = self._new_worker()
            self.workers.append(fresh)
            self._at(self.now + restart, lambda: self._ask(fresh))

    def _tell(self, worker: _Worker, claimed: Claimed, outcome: Outcome) -> None:
        if not self._storage(lambda: self._tell(worker, claimed, outcome)):
            return
        worker.claimed = None
        self._progress = self.now
        try:
            result = self.controller.check(claimed, outcome.metrics)
        except TrialFailedError as error:
            self.tally.failed += 1
            self._fail(worker, claimed, error, counts=True)
            return
        location = self.store.put(claimed.trial.number, outcome.state)
        began = time.perf_counter()
        (told, following), after = self._call(
            self.controller.tell_and_ask, claimed, result, location, worker.name)
        self.tally.tell_s.append(time.perf_counter() - began)
        self.end = max(self.end, after)
        if told:
            self._record(claimed.trial.id, result.fitness, after)
        else:
            self.store.remove(location)
            self.tally.refused += 1
        self._next(worker, following, after)

    def _fail(self, worker: _Worker, claimed: Claimed, error: BaseException, *,
              counts: bool) -> None:
        if not self._storage(lambda: self._fail(worker, claimed, error, counts=counts)):
            return
        worker.claimed = None
        _, after = self._call(self.controller.tell_failure, claimed, error, counts=counts)
        self._next(worker, None, after)

    def _next(self, worker: _Worker, following: Claimed | None, at: float) -> None:
        if following is not None:
            self._start(worker, following, at)
        else:
            self._at(at, lambda: self._ask(worker))
        self._wake(at)

    def _record(self, trial_id: int, fitness: float | None, at: float) -> None:
        self.tally.decisions += 1
        if trial_id in self._told:
            self.tally.told_twice += 1
        self._told.add(trial_id)
        if fitness is None:
            return
        if self._best is None or (fitness > self._best if self._maximize
                                  else fitness < self._best):
            self._best = fitness
            self.tally.best.append((at - self.start, fitness))

    # -- the monitor --------------------------------------------------------------------
    def _monitor(self) -> None:
        """Reap the trials of silent or dead workers, as a run's monitor does."""
        if not any(w.alive and not w.done for w in self.workers):
            return  # nobody is left to run anything
        if self._storage(self._monitor):
            reaped, after = self._call(self.controller.reap_stale)
            self.tally.reaped += reaped
            if reaped:
                self._wake(after)
            self._at(self.now + self.controller.config.heartbeat_interval, self._monitor)

    # -- figures ------------------------------------------------------------------------
    def controller_ms(self) -> tuple[float | None, float | None]:
        """(median, p99) real milliseconds per ask+tell."""
        samples = sorted(self.tally.tell_s)
        if not samples:
            return None, None
        p99 = samples[min(len(samples) - 1, math.ceil(0.99 * len(samples)) - 1)]
        return 1000 * statistics.median(samples), 1000 * p99
