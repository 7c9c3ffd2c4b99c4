"""Ranking benchmark: how long one decision takes with several objectives and constraints.

    python benchmarks/ranking.py [--repeats 50]

The pure decision alone (no storage), `Tournament` with `Perturb`: a member of a
population of 32, 256 or 1000 decides its next trial, with one objective (the plain
fitness comparison), with two objectives (non-dominated sorting and crowding distance over
the population, every decision), with two objectives and a constraint, and with these and
`Lagging` (the early stop ranks the population once more). The members' results are drawn
on a noisy trade-off so that the population has fronts of every depth. Each decision gets
its own seed. Writes results/ranking.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

import pbtune
from pbtune.strategies import Bound, Criteria, Lagging, decide
from pbtune.trial import FrozenTrial, TrialState

SPACE = pbtune.SearchSpace({"lr": pbtune.Float(1e-5, 1e-1, log=True),
                            "width": pbtune.Int(16, 512, log=True)})
CASES: list[tuple[str, Criteria | None, Lagging | None]] = [
    ("one objective", None, None),
    ("two objectives", Criteria((("accuracy", "max"), ("cost", "min"))), None),
    ("two objectives, a constraint",
     Criteria((("accuracy", "max"), ("cost", "min")), (Bound("memory", high=0.8),)), None),
    ("two objectives, a constraint, Lagging",
     Criteria((("accuracy", "max"), ("cost", "min")), (Bound("memory", high=0.8),)),
     Lagging(generations=3)),
]


def population(size: int, rng: np.random.Generator) -> list[FrozenTrial]:
    """``size`` members' latest results on a noisy accuracy/cost trade-off."""
    cost = rng.random(size)
    accuracy = np.sqrt(cost) - 0.3 * rng.random(size)
    return [FrozenTrial(id=i, member=i, generation=3, parent_id=None,
                        params=SPACE.sample(rng), start_step=300, end_step=400,
                        state=TrialState.COMPLETE, fitness=float(accuracy[i]),
                        metrics={"accuracy": float(accuracy[i]), "cost": float(cost[i]),
                                 "memory": float(rng.random())})
            for i in range(size)]


def time_decisions(members: list[FrozenTrial], criteria: Criteria | None,
                   early_stop: Lagging | None, repeats: int) -> list[float]:
    seconds = []
    for seed in range(repeats):
        finished = members[seed % len(members)]
        start = time.perf_counter()
        decide(finished, members, space=SPACE, exploit=pbtune.Tournament(),
               explore=pbtune.Perturb(), mode="max", max_steps=1000,
               rng=np.random.default_rng(seed), criteria=criteria, early_stop=early_stop,
               lagging=2)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rows, results = [], []
    for size in (32, 256, 1000):
        members = population(size, np.random.default_rng(size))
        for name, criteria, early_stop in CASES:
            time_decisions(members, criteria, early_stop, 3)  # warm-up
            seconds = time_decisions(members, criteria, early_stop, args.repeats)
            figures: dict[str, Any] = {
                "population": size, "case": name, "repeats": args.repeats,
                "median_ms": 1000 * common.median(seconds),
                "p99_ms": 1000 * common.percentile(seconds, 99),
            }
            results.append(figures)
            rows.append([size, name, f"{figures['median_ms']:.2f}", f"{figures['p99_ms']:.2f}"])
            print(f"{size:5d} {name:40s} median {figures['median_ms']:8.2f} ms  "
                  f"p99 {figures['p99_ms']:8.2f}", flush=True)
    env = common.environment()
    markdown = "\n".join([
        "### One decision with several objectives and constraints",
        "",
        "The pure decision (Tournament, Perturb) of one member of the population, which is "
        "ranked as a whole (non-dominated sorting, crowding distance, Deb's rule) whenever "
        f"the criteria are more than one plain objective; {args.repeats} decisions each, one "
        "seed per decision.",
        "",
        common.table(["population", "criteria", "median (ms)", "p99 (ms)"], rows),
        "",
        common.env_line(env),
    ])
    common.write_results("ranking", {"benchmark": "ranking", "results": results,
                                     "environment": env}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
