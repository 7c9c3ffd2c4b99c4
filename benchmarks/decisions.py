"""Decisions per second: one study's controller, timed decision by decision.

    python benchmarks/decisions.py [--backends sqlite,postgresql] [--populations 8,100,1000]
        [--stored 0,10000,100000] [--decisions 300] [--workers 1,4]
        [--postgres postgresql://postgres@127.0.0.1:5432/pbtune_bench]

A decision is what a worker's ``Controller.tell_and_ask`` does for a COMPLETE result: one
transaction records the result, decides the member's next trial (default Tournament and
Perturb), collects the checkpoints nobody needs, and claims the worker's next trial. Here
the real Controller runs it with no training in between: synthetic metrics, a checkpoint
location that is a string (a store in memory, whose deletes do nothing, so no file is
touched), on a study filled with ``--stored`` trials in a realistic shape (see
``scaling.fill``). For each backend, population and size it prints the decisions per
second, the median and p99 of one tell_and_ask (the ask and the tell of a worker), and the
SQL statements per decision (counted with SQLAlchemy's ``before_cursor_execute``: every
statement, BEGIN IMMEDIATE on SQLite included; not the COMMIT, nor a pool's ping).

With one worker, the decisions of one process are timed in interleaved rounds over the
studies (machine noise is shared); with ``--controllers N``, N Controllers of the study
decide in turn in that process, as N worker processes would, one at a time (each knows
less of the population when it decides again). With ``--workers K`` (K > 1), K processes
decide on one study at once (each its own connection and claimed trial), for lock
contention: the decisions per second are all of theirs over the wall time of the parallel
phase.

Each study has a database of its own: an SQLite file, or a PostgreSQL database named after
``--postgres`` plus ``_dec_p<population>_n<stored>`` (dropped and made again; PostgreSQL
gets ``ANALYZE`` after the bulk load). ``--explain`` prints the plan of every statement
of one decision of each study. Writes results/decisions.{json,md}.
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import sys
import tempfile
import time
from collections.abc import Set
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, create_engine, event

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common
from scaling import count, fill, postgres_database

import pbtune
from pbtune.checkpoints import CheckpointStore, Location
from pbtune.controller import Claimed, Controller
from pbtune.storages import normalize_url

KEEP_BEST = 3
WARM_UP = 20
SPACE = {"lr": pbtune.Float(1e-4, 1e-1, log=True), "momentum": pbtune.Float(0.0, 0.99)}
_statements = [0]


@event.listens_for(Engine, "before_cursor_execute")
def _count(*_args: Any) -> None:
    _statements[0] += 1


class MemoryStore(CheckpointStore):
    """Checkpoints that are names only: a decision's garbage collection deletes nothing."""

    location: Location = "mem://decisions"

    def stage(self, number: int, claim: str) -> Path:
        raise AssertionError("no training here")

    def final(self, number: int) -> Location:
        return _location(number)

    def commit(self, staging: Path, number: int) -> Location:
        raise AssertionError("no training here")

    def open(self, reference: Location, trial_id: int) -> Path:
        raise AssertionError("no training here")

    def remove(self, reference: Location) -> None:
        pass

    def sweep(self, keep: Set[Location]) -> int:
        return 0


def _location(number: int) -> Location:
    return f"mem://decisions/trial-{number}"


class Decider:
    """One worker of a study: a Controller, the trial it holds, and its timings."""

    def __init__(self, storage: pbtune.Storage, name: str, worker: str, seed: int) -> None:
        study = storage.get_study(name)
        config = pbtune.load_study(name, storage=storage).config
        self.controller = Controller(storage, study, config, store=MemoryStore())
        self.worker = worker
        self.rng = np.random.default_rng(seed)
        claimed = self.controller.claim(worker)
        assert isinstance(claimed, Claimed), claimed
        self.claimed = claimed
        self.seconds: list[float] = []
        self.statements = 0

    def decide(self, n: int, *, record: bool = True) -> None:
        for _ in range(n):
            claimed = self.claimed
            location = _location(claimed.trial.number)
            score = float(self.rng.normal(2.0, 1.0))
            before = _statements[0]
            started = time.perf_counter()
            told, following = self.controller.tell_and_ask(
                claimed, {"score": score}, location, self.worker)
            elapsed = time.perf_counter() - started
            assert told and isinstance(following, Claimed), (told, following)
            self.claimed = following
            if record:
                self.seconds.append(elapsed)
                self.statements += _statements[0] - before


class Turns:
    """``controllers`` Controllers of one study in this process, deciding in turn (one
    decision each), as workers in as many processes would: each one's decisions are
    ``controllers`` decisions apart, so what it knew of the population has changed."""

    def __init__(self, url: str, name: str, controllers: int) -> None:
        self.storage = pbtune.Storage(url)
        self.deciders = [Decider(self.storage, name, f"bench:{i}:w", i)
                         for i in range(controllers)]
        self._turn = 0

    def decide(self, n: int, *, record: bool = True) -> None:
        for _ in range(n):
            self.deciders[self._turn].decide(1, record=record)
            self._turn = (self._turn + 1) % len(self.deciders)

    def timings(self) -> tuple[list[float], int]:
        """Every recorded decision's seconds, and the statements they sent."""
        return ([s for d in self.deciders for s in d.seconds],
                sum(d.statements for d in self.deciders))

    def close(self) -> None:
        """Give the held trials back (the next measurement's workers claim them)."""
        for decider in self.deciders:
            assert decider.controller.release(decider.claimed)
        self.storage.dispose()


def make_study(url: str, population: int, stored: int, root: Path) -> tuple[str, int, float]:
    """A study of ``population`` filled with ``stored`` trials: (its name, the trials it
    holds, the seconds the fill took)."""
    name = f"decisions-p{population}-n{stored}"
    study = pbtune.create_study(
        name=name, storage=url, space=SPACE, metric="score", mode="max",
        population_size=population, steps_per_trial=1, max_steps=10**9,
        checkpoint_root=root / "checkpoints", seed=0, keep_best=KEEP_BEST)
    started = time.perf_counter()
    fill(study, stored, root / name, population)
    took = time.perf_counter() - started
    held = count(study)
    study.storage.dispose()
    return name, held, took


def explain(url: str, name: str) -> None:
    """Print the plan of every statement of one decision: EXPLAIN ANALYZE on PostgreSQL
    (in a transaction rolled back), EXPLAIN QUERY PLAN on SQLite."""
    storage = pbtune.Storage(url)
    decider = Decider(storage, name, "bench:explain:w", 0)
    decider.decide(WARM_UP, record=False)
    sent: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.startswith(("BEGIN", "EXPLAIN")):
            sent.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", keep)
    try:
        decider.decide(1, record=False)
    finally:
        event.remove(Engine, "before_cursor_execute", keep)
    engine = create_engine(normalize_url(url))
    prefix = ("EXPLAIN ANALYZE " if engine.dialect.name == "postgresql"
              else "EXPLAIN QUERY PLAN ")
    with engine.connect() as connection:
        for statement, parameters in sent:
            print(" ".join(statement.split())[:160])
            for row in connection.exec_driver_sql(prefix + statement, parameters):
                print("    ", row[-1])
        connection.rollback()
    engine.dispose()
    assert decider.controller.release(decider.claimed)
    storage.dispose()


def figures(seconds: list[float], statements: int, wall: float) -> dict[str, Any]:
    return {
        "decisions": len(seconds),
        "decisions_per_s": len(seconds) / wall,
        "median_ms": 1000 * common.median(seconds),
        "p99_ms": 1000 * common.percentile(seconds, 99),
        "statements_per_decision": statements / len(seconds),
    }


def one_worker(studies: dict[tuple[int, int], tuple[str, str]], decisions: int,
               rounds: int, controllers: int) -> dict[tuple[int, int], dict[str, Any]]:
    """Each study decided in this process (by ``controllers`` in turn), the studies in
    interleaved rounds."""
    turns = {key: Turns(url, name, min(controllers, key[0]))  # one trial held by each
             for key, (url, name) in studies.items()}
    walls = dict.fromkeys(turns, 0.0)
    for each in turns.values():
        each.decide(max(WARM_UP, controllers), record=False)
    for _ in range(rounds):
        for key, each in turns.items():
            started = time.perf_counter()
            each.decide(max(1, decisions // rounds))
            walls[key] += time.perf_counter() - started
    out = {key: figures(*each.timings(), walls[key]) | {"controllers": len(each.deciders)}
           for key, each in turns.items()}
    for each in turns.values():
        each.close()
    return out


def _worker(url: str, name: str, index: int, decisions: int, barrier: Any, results: Any
            ) -> None:
    storage = pbtune.Storage(url)
    try:
        decider = Decider(storage, name, f"bench:{index}:w", index)
        decider.decide(WARM_UP, record=False)
    except BaseException:
        barrier.abort()  # the others, and the parent, stop waiting
        raise
    barrier.wait()
    decider.decide(decisions)
    results.put((decider.seconds, decider.statements))
    assert decider.controller.release(decider.claimed)
    storage.dispose()


def many_workers(url: str, name: str, workers: int, decisions: int) -> dict[str, Any]:
    """``workers`` processes deciding on one study at once, ``decisions`` each."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers + 1)
    results = context.Queue()
    processes = [context.Process(target=_worker,
                                 args=(url, name, i, decisions, barrier, results))
                 for i in range(workers)]
    for process in processes:
        process.start()
    barrier.wait()  # BrokenBarrierError if a worker could not start
    started = time.perf_counter()
    got = []
    while len(got) < workers:
        try:
            got.append(results.get(timeout=1.0))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in processes):
                raise RuntimeError("a worker process failed (its traceback is above)"
                                   ) from None
    wall = time.perf_counter() - started
    for process in processes:
        process.join()
    seconds = [s for found, _ in got for s in found]
    return figures(seconds, sum(n for _, n in got), wall)


def study_urls(backend: str, populations: list[int], sizes: list[int], root: Path,
               postgres: str) -> dict[tuple[int, int], str]:
    if backend == "sqlite":
        return {(p, n): f"sqlite:///{root}/dec-p{p}-n{n}.db" for p in populations
                for n in sizes}
    return {(p, n): postgres_database(postgres, f"dec_p{p}_n{n}") for p in populations
            for n in sizes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--populations", default="8,100,1000")
    parser.add_argument("--stored", default="0,10000,100000")
    parser.add_argument("--decisions", type=int, default=300,
                        help="timed decisions per study (per worker with --workers K)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1",
                        help="comma-separated worker counts; K > 1: K processes at once")
    parser.add_argument("--controllers", type=int, default=1,
                        help="with one worker: this many Controllers (at most one per member) "
                        "deciding in turn, as that many worker processes would")
    parser.add_argument("--postgres", default=common.DEFAULT_POSTGRES)
    parser.add_argument("--output", default="decisions")
    parser.add_argument("--explain", action="store_true",
                        help="also print the plan of every statement of one decision")
    args = parser.parse_args()
    populations = [int(p) for p in args.populations.split(",")]
    sizes = [int(n) for n in args.stored.split(",")]
    worker_counts = [int(k) for k in args.workers.split(",")]
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="pbtune-decisions-") as tmp:
        root = Path(tmp)
        for backend in args.backends.split(","):
            studies = {}
            for key, url in study_urls(backend, populations, sizes, root,
                                       args.postgres).items():
                name, held, took = make_study(url, *key, root)
                print(f"{backend}: population {key[0]}, {held} trials stored in {took:.1f} s",
                      flush=True)
                studies[key] = (url, name)
                if args.explain:
                    explain(url, name)
            for workers in worker_counts:
                if workers == 1:
                    measured = one_worker(studies, args.decisions, args.rounds,
                                          args.controllers)
                else:
                    measured = {key: many_workers(url, name, workers, args.decisions)
                                for key, (url, name) in studies.items()}
                for (population, stored), found in measured.items():
                    found.setdefault("controllers", workers)
                    found.update(backend=backend, population=population, stored=stored,
                                 workers=workers)
                    results.append(found)
                    rows.append(_row(found))
                    print(" | ".join(str(cell) for cell in rows[-1]), flush=True)
    env = common.environment(args.postgres if "postgresql" in args.backends else None)
    markdown = "\n".join([
        "### Decisions per second",
        "",
        f"Controller.tell_and_ask for COMPLETE results (record, decide, collect, claim the "
        f"next trial) on a filled study, default Tournament and Perturb, no training; "
        f"{args.decisions} timed decisions per study (per worker) after {WARM_UP} warm-up "
        "ones. Stored = trials in the study before the warm-up. Statements: SQL statements "
        "sent per decision (BEGIN IMMEDIATE on SQLite counted; COMMIT and pool pings not).",
        "",
        common.table(["storage", "processes", "controllers", "population", "stored trials",
                      "decisions/s", "median (ms)", "p99 (ms)", "statements/decision"], rows),
        "",
        common.env_line(env),
    ])
    common.write_results(args.output, {"benchmark": "decisions", "results": results,
                                       "environment": env}, markdown)
    print(markdown)
    return 0


def _row(found: dict[str, Any]) -> list[str]:
    return [found["backend"], str(found["workers"]), str(found["controllers"]),
            str(found["population"]),
            f"{found['stored']:,}", f"{found['decisions_per_s']:.0f}",
            f"{found['median_ms']:.2f}", f"{found['p99_ms']:.2f}",
            f"{found['statements_per_decision']:.1f}"]


if __name__ == "__main__":
    sys.exit(main())
