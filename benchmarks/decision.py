"""Decision benchmark: how long one explore decision takes, PB2 against Perturb.

    python benchmarks/decision.py [--repeats 200]

The pure decision alone (no storage): a member of a population of 32 copies a parent, and
the explore strategy picks its params from a full history window (the newest results of the
whole population, drawn like a study's: each member's fitness climbing at a rate that peaks
at one learning rate) with the 31 other members' trials pending. The search space has a
log-scaled float, a float, a log-scaled int and an unordered choice, so every kind of
param PB2 handles is timed. Windows of 32, 64 (PB2's default), 128 and 256 results; each
decision gets its own seed. Writes results/decision.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

import pbtune
from pbtune.strategies import History, Observation, Pending
from pbtune.trial import FrozenTrial, TrialState

POPULATION = 32
SEGMENT = 100
SPACE = pbtune.SearchSpace({
    "lr": pbtune.Float(1e-5, 1e-1, log=True),
    "momentum": pbtune.Float(0.0, 0.99),
    "batch": pbtune.Int(16, 512, log=True),
    "optimizer": pbtune.Choice(["sgd", "adam", "rmsprop"]),
})


def window(size: int, rng: np.random.Generator) -> tuple[History, FrozenTrial]:
    """``size`` results of a population of 32 and the trials it has pending, plus the
    parent a member copies."""
    fitness = np.zeros(POPULATION)
    observations = []
    for i in range(size + POPULATION):
        member = i % POPULATION
        params = SPACE.sample(rng)
        rate = math.exp(-((math.log10(params["lr"]) + 3.0) ** 2)) + 0.1 * rng.normal()
        start = float(fitness[member])
        fitness[member] += rate
        step = SEGMENT * (i // POPULATION)
        observations.append(Observation(
            trial_id=i, member=member, parent_id=i - POPULATION if i >= POPULATION else None,
            params=params, start_step=step, end_step=step + SEGMENT,
            start_fitness=start if i >= POPULATION else None, end_fitness=float(fitness[member])))
    newest = observations[-1]
    pending = tuple(
        Pending(trial_id=10**6 + m, member=m, params=SPACE.sample(rng),
                start_step=newest.end_step, end_step=newest.end_step + SEGMENT,
                start_fitness=float(fitness[m]))
        for m in range(1, POPULATION))
    parent = FrozenTrial(
        id=newest.trial_id, member=newest.member, generation=9,
        parent_id=newest.parent_id, params=dict(newest.params), start_step=newest.start_step,
        end_step=newest.end_step, state=TrialState.COMPLETE,
        metrics={"score": newest.end_fitness}, fitness=newest.end_fitness)
    return History(tuple(observations[-size:]), pending), parent


def time_decisions(strategy: pbtune.ExploreStrategy, history: History, parent: FrozenTrial,
                   repeats: int) -> list[float]:
    seconds = []
    for seed in range(repeats):
        rng = np.random.default_rng(seed)
        started = time.perf_counter()
        strategy.explore_from(parent, SPACE, rng, history=history, mode="max")
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    rows, results = [], []
    for name, strategy, size in [("Perturb()", pbtune.Perturb(), 64)] + [
        (f"PB2(history_size={n})", pbtune.PB2(history_size=n), n) for n in (32, 64, 128, 256)
    ]:
        history, parent = window(size, np.random.default_rng(size))
        time_decisions(strategy, history, parent, 5)  # warm-up
        seconds = time_decisions(strategy, history, parent, args.repeats)
        figures: dict[str, Any] = {
            "strategy": name, "history": len(history.observations),
            "pending": len(history.pending), "repeats": args.repeats,
            "median_ms": 1000 * common.median(seconds),
            "p90_ms": 1000 * common.percentile(seconds, 90),
            "p99_ms": 1000 * common.percentile(seconds, 99),
        }
        results.append(figures)
        rows.append([name, figures["history"], figures["pending"],
                     f"{figures['median_ms']:.2f}", f"{figures['p90_ms']:.2f}",
                     f"{figures['p99_ms']:.2f}"])
        print(f"{name:24s} median {figures['median_ms']:7.2f} ms  p90 {figures['p90_ms']:7.2f}"
              f"  p99 {figures['p99_ms']:7.2f}", flush=True)
    env = common.environment()
    markdown = "\n".join([
        "### One explore decision, PB2 against Perturb",
        "",
        f"The pure decision of a member of a population of {POPULATION} that copies a parent: "
        f"the history window of the newest results, the {POPULATION - 1} other members' "
        f"trials pending, a space of a log float, a float, a log int and a 3-way unordered "
        f"choice; {args.repeats} decisions each, one seed per decision.",
        "",
        common.table(["strategy", "results in window", "pending", "median (ms)", "p90 (ms)",
                      "p99 (ms)"], rows),
        "",
        common.env_line(env),
    ])
    common.write_results("decision", {"benchmark": "decision", "results": results,
                                      "environment": env}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
