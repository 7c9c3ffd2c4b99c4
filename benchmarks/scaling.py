"""Scaling benchmark: controller ask + tell latency against the number of stored trials.

    python benchmarks/scaling.py [--sizes 100,1000,10000,100000] [--pairs 300]
        [--postgres postgresql://postgres@127.0.0.1:5432/pbtune_bench] [--explore pb2]

For each size N, a study (population 16, default Tournament strategy, the explore of
``--explore``: ``perturb``, the default, or ``pb2``, whose decisions read a window of the
64 newest results and the pending trials) is given N trials
already stored, in a realistic shape, by bulk inserts through pbtune's own tables: every
member has a lineage of COMPLETE trials (a quarter of them exploit another member's
trial), metrics, fitness; only the latest trial of each member and the 3 best keep a
checkpoint; the members rows point at each member's latest COMPLETE trial and every member
has one QUEUED next trial. Then the real ``Controller.ask`` and ``Controller.tell`` run in
this process, with no training in between (a checkpoint directory is an empty folder).

Each size has a database of its own (an SQLite file; a PostgreSQL database named after
``--postgres`` plus ``_scale_<N>``, dropped and made again). Sizes are measured in
interleaved rounds, so machine noise is shared. PostgreSQL gets ``ANALYZE`` after the bulk
load (what autovacuum does to a table that grew); SQLite gets nothing (pbtune runs none).
Writes results/scaling.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy
from sqlalchemy import insert, update

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

import pbtune
from pbtune.controller import Claimed, Controller
from pbtune.storages._engine import normalize_url
from pbtune.storages._schema import members, trials

POPULATION = 16
KEEP_BEST = 3
EXPLOIT_SHARE = 0.25
TARGET = 1.5
CHUNK = 5000


def postgres_database(base: str, suffix: str) -> str:
    """A fresh database ``<base db>_<suffix>`` on the server of ``base``."""
    url = sqlalchemy.engine.make_url(normalize_url(base))
    name = f"{url.database}_{suffix}"
    admin = sqlalchemy.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def fill(study: pbtune.Study, size: int, root: Path, population: int = POPULATION) -> None:
    """Store ``size`` trials: lineages of COMPLETE trials and one QUEUED trial per member
    of the study's ``population``."""
    rng = np.random.default_rng(0)
    engine = sqlalchemy.create_engine(normalize_url(study.storage.url or ""))
    study_id = study.id
    generations = max(1, size // population)  # the last generation is the QUEUED one
    now = time.time()
    with engine.begin() as connection:
        # create_study made generation 0 as QUEUED trials: they become the first COMPLETE ones.
        # A trial is named by its number in the study (its id); the storage keys the rows.
        ids = {t.member: t.id for t in study.trials()}
        first = [t.number for t in study.trials()]
        assert sorted(first) == list(range(population)), first
        fitness = {m: float(rng.normal()) for m in range(population)}
        rows_by_gen: list[dict[int, int]] = [dict(ids)]
        complete_gen0 = generations > 1
        for member, trial_id in ids.items():
            connection.execute(
                update(trials).where(trials.c.study_id == study_id,
                                     trials.c.number == trial_id).values(
                    state="COMPLETE" if complete_gen0 else "QUEUED",
                    metrics={"score": fitness[member]} if complete_gen0 else None,
                    fitness=fitness[member] if complete_gen0 else None,
                    worker="bench:0:fill" if complete_gen0 else None,
                    started_at=now if complete_gen0 else None,
                    finished_at=now if complete_gen0 else None,
                ))
        number = population
        batch: list[dict[str, Any]] = []
        for generation in range(1, generations):
            last = generation == generations - 1
            previous = rows_by_gen[-1]
            current: dict[int, int] = {}
            for member in range(population):
                exploit = rng.random() < EXPLOIT_SHARE
                donor = int(rng.integers(population)) if exploit else member
                parent = previous[donor]
                score = fitness[donor] + float(rng.normal(0.1, 0.3))
                if not last:
                    fitness[member] = score
                batch.append({
                    "study_id": study_id, "number": number, "member": member,
                    "generation": generation, "parent_id": parent,
                    "params": {"lr": float(10 ** rng.uniform(-4, -1)),
                               "momentum": float(rng.uniform(0, 0.99))},
                    "start_step": generation, "end_step": generation + 1,
                    "state": "QUEUED" if last else "COMPLETE",
                    "decision": "exploit" if exploit else "continue",
                    "metrics": None if last else {"score": score, "loss": -score},
                    "fitness": None if last else score, "checkpoint": None, "error": None,
                    "worker": None if last else "bench:0:fill", "claim": None,
                    "created_at": now, "started_at": None if last else now,
                    "finished_at": None if last else now, "heartbeat_at": None,
                })
                current[member] = number
                number += 1
            rows_by_gen.append(current)
            if len(batch) >= CHUNK:
                connection.execute(insert(trials), batch)
                batch = []
        if batch:
            connection.execute(insert(trials), batch)
        # The members' latest COMPLETE trials and the 3 best keep checkpoints (real folders).
        latest = rows_by_gen[-2] if generations > 1 else {}
        keep = set(latest.values())
        best = connection.execute(
            sqlalchemy.select(trials.c.number).where(trials.c.study_id == study_id,
                                                 trials.c.state == "COMPLETE")
            .order_by(trials.c.fitness.desc()).limit(KEEP_BEST)).scalars().all()
        keep.update(best)
        for trial_id in keep:
            directory = root / f"filled-{trial_id}"
            directory.mkdir(parents=True, exist_ok=True)
            connection.execute(update(trials).where(trials.c.study_id == study_id,
                                                    trials.c.number == trial_id)
                               .values(checkpoint=str(directory)))
        for member, trial_id in latest.items():
            connection.execute(update(members).where(members.c.study_id == study_id,
                                                     members.c.member == member)
                               .values(latest_complete_id=trial_id))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
    engine.dispose()


def count(study: pbtune.Study) -> int:
    return sum(study.storage.count_states(study.id).values())


class Bench:
    """One size on one backend: a filled study and its controller."""

    def __init__(self, url: str, size: int, root: Path, explore: pbtune.ExploreStrategy
                 ) -> None:
        self.size = size
        self.study = pbtune.create_study(
            name=f"scaling-{size}", storage=url,
            space={"lr": pbtune.Float(1e-4, 1e-1, log=True),
                   "momentum": pbtune.Float(0.0, 0.99)},
            metric="score", mode="max", population_size=POPULATION, steps_per_trial=1,
            max_steps=10**9, checkpoint_root=root / "checkpoints", seed=0,
            keep_best=KEEP_BEST, explore=explore,
        )
        started = time.perf_counter()
        fill(self.study, size, self.study.checkpoint_dir)
        self.fill_s = time.perf_counter() - started
        self.stored = count(self.study)
        self.controller = Controller(self.study.storage,
                                     self.study.storage.get_study(self.study.name),
                                     self.study.config)
        self.ask_s: list[float] = []
        self.tell_s: list[float] = []
        self.rng = np.random.default_rng(1)

    def pairs(self, n: int, *, record: bool = True) -> None:
        controller = self.controller
        for _ in range(n):
            t0 = time.perf_counter()
            claimed = controller.ask("bench:0:worker")
            t1 = time.perf_counter()
            assert isinstance(claimed, Claimed), claimed
            final = self.study.checkpoint_dir / f"trial-{claimed.trial.number}"
            final.mkdir(parents=True, exist_ok=True)  # what the worker commits; not timed
            score = float(self.rng.normal(2.0, 1.0))
            t2 = time.perf_counter()
            told = controller.tell(claimed, {"score": score}, final)
            t3 = time.perf_counter()
            assert told
            if record:
                self.ask_s.append(t1 - t0)
                self.tell_s.append(t3 - t2)

    def figures(self) -> dict[str, Any]:
        pair = [a + t for a, t in zip(self.ask_s, self.tell_s, strict=True)]
        ms = 1000.0
        return {
            "stored": self.stored, "stored_after": count(self.study), "fill_s": self.fill_s,
            "pairs": len(pair),
            "ask_median_ms": ms * common.median(self.ask_s),
            "ask_p99_ms": ms * common.percentile(self.ask_s, 99),
            "tell_median_ms": ms * common.median(self.tell_s),
            "tell_p99_ms": ms * common.percentile(self.tell_s, 99),
            "pair_median_ms": ms * common.median(pair),
            "pair_p99_ms": ms * common.percentile(pair, 99),
        }


def measure(backend: str, urls: dict[int, str], root: Path, pairs: int,
            rounds: int, explore: pbtune.ExploreStrategy) -> dict[int, dict[str, Any]]:
    benches = {}
    for size, url in urls.items():
        benches[size] = Bench(url, size, root / f"{backend}-{size}", explore)
        print(f"{backend}: filled {benches[size].stored} trials in "
              f"{benches[size].fill_s:.1f} s", flush=True)
    for bench in benches.values():
        bench.pairs(10, record=False)  # warm caches and connections
    per_round = max(1, pairs // rounds)
    for _ in range(rounds):
        for bench in benches.values():
            bench.pairs(per_round)
    out = {}
    for size, bench in benches.items():
        out[size] = bench.figures()
        f = out[size]
        print(f"{backend:10s} N={size:>6} ask {f['ask_median_ms']:6.2f} ms (p99 "
              f"{f['ask_p99_ms']:6.2f})  tell {f['tell_median_ms']:6.2f} ms (p99 "
              f"{f['tell_p99_ms']:6.2f})  pair {f['pair_median_ms']:6.2f} ms (p99 "
              f"{f['pair_p99_ms']:6.2f})", flush=True)
        bench.study.storage.dispose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=common.DEFAULT_POSTGRES,
                        help="a PostgreSQL URL whose server may get databases <db>_scale_<N>; "
                        "'' to skip PostgreSQL")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--output", default=None,
                        help="results name (default: scaling, or scaling-pb2)")
    parser.add_argument("--explore", choices=("perturb", "pb2"), default="perturb")
    args = parser.parse_args()
    explore = pbtune.PB2() if args.explore == "pb2" else pbtune.Perturb()
    args.output = args.output or ("scaling" if args.explore == "perturb" else "scaling-pb2")
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, dict[int, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="pbtune-scaling-") as tmp:
        root = Path(tmp)
        backends = args.backends.split(",")
        if "sqlite" in backends:
            urls = {n: f"sqlite:///{root}/scale-{n}.db" for n in sizes}
            results["sqlite"] = measure("sqlite", urls, root, args.pairs, args.rounds,
                                        explore)
        if args.postgres and "postgresql" in backends:
            urls = {n: postgres_database(args.postgres, f"scale_{n}") for n in sizes}
            results["postgresql"] = measure("postgresql", urls, root, args.pairs,
                                            args.rounds, explore)
    base = min(sizes)
    top = max(sizes)
    target: dict[str, bool] = {}
    rows = []
    for backend, by_size in results.items():
        for f in by_size.values():
            f["pair_median_vs_smallest"] = f["pair_median_ms"] / by_size[base]["pair_median_ms"]
            rows.append([backend, f"{f['stored']:,}", f"{f['ask_median_ms']:.2f}",
                         f"{f['ask_p99_ms']:.2f}", f"{f['tell_median_ms']:.2f}",
                         f"{f['tell_p99_ms']:.2f}", f"{f['pair_median_ms']:.2f}",
                         f"{f['pair_p99_ms']:.2f}", f"{f['pair_median_vs_smallest']:.2f}"])
        target[backend] = by_size[top]["pair_median_vs_smallest"] <= TARGET
    env = common.environment(args.postgres or None)
    markdown = "\n".join([
        "### Scaling: ask + tell latency against stored trials",
        "",
        f"Controller.ask and Controller.tell in one process, no training, population "
        f"{POPULATION}, default Tournament, explore {explore!r}; {args.pairs} ask/tell "
        f"pairs per size in "
        f"{args.rounds} interleaved rounds after 10 warm-up pairs. Stored = trials in the "
        "study when measuring began (each pair adds one).",
        "",
        common.table(["storage", "stored trials", "ask median (ms)", "ask p99 (ms)",
                      "tell median (ms)", "tell p99 (ms)", "ask+tell median (ms)",
                      "ask+tell p99 (ms)", f"median / at {base:,}"], rows),
        "",
        f"Target: ask+tell median at {top:,} <= {TARGET} x at {base:,}: "
        + ", ".join(f"{b} {'met' if ok else 'MISSED'}" for b, ok in target.items()) + ".",
        "",
        common.env_line(env),
    ])
    data = {"benchmark": "scaling",
            "setup": {"population": POPULATION, "pairs": args.pairs, "rounds": args.rounds,
                      "sizes": sizes, "strategy": "Tournament(window=2)",
                      "explore": explore.to_dict()},
            "results": results, "target": f"pair median at {top} <= {TARGET} x at {base}",
            "target_met": target, "environment": env}
    common.write_results(args.output, data, markdown)
    plot(results, args.output)
    print(json.dumps({"target_met": target}, indent=2))
    print(markdown)
    return 0


def plot(results: dict[str, dict[int, dict[str, Any]]], name: str) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for backend, by_size in results.items():
        sizes = sorted(by_size)
        line = ax.plot(sizes, [by_size[s]["pair_median_ms"] for s in sizes], "o-",
                       label=f"{backend} median")[0]
        ax.plot(sizes, [by_size[s]["pair_p99_ms"] for s in sizes], "x--",
                color=line.get_color(), label=f"{backend} p99")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("trials stored in the study")
    ax.set_ylabel("ask + tell latency (ms)")
    ax.set_title("Controller latency vs study size (flat is good)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(common.RESULTS / f"{name}.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
