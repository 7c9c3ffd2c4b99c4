"""Runs one study to its end; the tests start it as a process and kill it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pbtune

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", required=True)
    parser.add_argument("--name", default="e2e")
    parser.add_argument("--checkpoint-root", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--steps-per-trial", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--heartbeat-timeout", type=float, default=60.0)
    parser.add_argument("--entry", default=f"{HERE / 'trainers.py'}:quadratic")
    args = parser.parse_args()
    study = pbtune.create_study(
        name=args.name,
        storage=args.storage,
        space={"h0": pbtune.Float(0.0, 1.0), "h1": pbtune.Float(0.0, 1.0)},
        metric="q",
        mode="max",
        population_size=args.population,
        steps_per_trial=args.steps_per_trial,
        max_steps=args.max_steps,
        checkpoint_root=args.checkpoint_root,
        heartbeat_timeout=args.heartbeat_timeout,
        load_if_exists=True,
    )
    study.optimize(args.entry, workers=args.workers, show_progress=False)
    print("best", study.best_trial.fitness)


if __name__ == "__main__":
    main()
