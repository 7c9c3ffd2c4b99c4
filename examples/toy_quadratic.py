"""The toy problem of Jaderberg et al. 2017, "Population Based Training of Neural Networks"
(arXiv 1711.09846, Fig. 2), run with pbtune.

The true objective is Q(θ) = 1.2 − (θ0² + θ1²): its maximum, 1.2, is at θ = 0. A member
cannot optimise Q directly. It trains θ by gradient ascent on a surrogate that its
hyperparameters h shape,

    Q̂(θ | h) = 1.2 − (h0·θ0² + h1·θ1²),

so a member with h0 = 0 never moves θ0 and one with h = [1, 1] follows Q itself. PBT explores
h ∈ [0, 1]² and exploits θ (a weak member copies a strong member's θ), judging members by
the true Q. θ starts at [0.9, 0.9] (Q = −0.42) as in the paper. The gradient-ascent step
size (0.01) and the "ready" interval (a member is evaluated, then exploited / explored,
every 4 steps) are this example's choices, small as in the paper's toy. Each pbtune trial
is one such 4-step segment.

With 4 members, PBT gets Q above 1.19 (θ0² + θ1² < 0.01) within the default budget of
300 steps, close to the 1.2 that h = [1, 1] held fixed from the start approaches. For
contrast the script also trains each initial member with its first h held fixed (no
exploit, no explore).

Run it::

    python examples/toy_quadratic.py                  # sqlite:///pbtune.db, 2 workers
    python examples/toy_quadratic.py --workers 4 --seed 3 --name toy-3

Rerunning the same command after a crash (or Ctrl-C) continues the study where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pbtune

THETA_0 = (0.9, 0.9)  # where every member starts (the paper's Fig. 2)
STEP_SIZE = 0.01  # gradient-ascent step size on the surrogate Q̂
CHECKPOINT_FILE = "theta.json"
# pbtune's default, Li et al.'s tournament; Truncation is Jaderberg et al.'s.
EXPLOIT = {"tournament": pbtune.Tournament(), "truncation": pbtune.Truncation()}


def q_true(theta: list[float]) -> float:
    """The objective PBT judges members by: Q(θ) = 1.2 − (θ0² + θ1²)."""
    return 1.2 - (theta[0] ** 2 + theta[1] ** 2)


def q_surrogate(theta: list[float], h: list[float]) -> float:
    """The objective a member trains on: Q̂(θ | h) = 1.2 − (h0·θ0² + h1·θ1²)."""
    return 1.2 - (h[0] * theta[0] ** 2 + h[1] * theta[1] ** 2)


def train(trial: pbtune.Trial) -> dict[str, float]:
    """One segment: gradient ascent on Q̂(θ | h) from ``start_step`` to ``end_step``.

    Module level, so that worker processes (started with "spawn") can import it.
    """
    if trial.parent_checkpoint is not None:
        state = json.loads((Path(trial.parent_checkpoint) / CHECKPOINT_FILE).read_text())
        theta = [float(x) for x in state["theta"]]
        if state["step"] != trial.start_step:
            raise RuntimeError(
                f"checkpoint is at step {state['step']}, trial starts at {trial.start_step}"
            )
    else:
        theta = list(THETA_0)
    h = [float(trial.params["h0"]), float(trial.params["h1"])]
    for _ in range(trial.start_step, trial.end_step):
        # ∂Q̂/∂θi = −2·hi·θi; ascend it.
        theta = [theta[i] + STEP_SIZE * (-2.0 * h[i] * theta[i]) for i in range(2)]
    state = {"theta": theta, "step": trial.end_step}
    (Path(trial.checkpoint_dir) / CHECKPOINT_FILE).write_text(json.dumps(state))
    return {"q": q_true(theta), "q_hat": q_surrogate(theta, h)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="PBT on the toy quadratic of Jaderberg et al. 2017 (Fig. 2)."
    )
    parser.add_argument(
        "--storage", default="sqlite:///pbtune.db", help="study storage URL (default: %(default)s)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="study seed (default: 0)")
    parser.add_argument(
        "--name", default=None, help="study name (default: toy-quadratic-seed<SEED>)"
    )
    parser.add_argument(
        "--checkpoint-root",
        default="pbtune_checkpoints",
        help="where trial checkpoints go (default: %(default)s)",
    )
    parser.add_argument("--population", type=int, default=4, help="population size (default: 4)")
    parser.add_argument(
        "--steps-per-trial",
        type=int,
        default=4,
        help="steps between evaluations, the paper's 'ready' (default: 4)",
    )
    parser.add_argument(
        "--max-steps", type=int, default=300, help="gradient steps per member (default: 300)"
    )
    parser.add_argument(
        "--exploit",
        choices=sorted(EXPLOIT),
        default="tournament",
        help="exploit strategy (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run (or continue) the study; print and return a summary."""
    args = parse_args(argv)
    name = args.name or f"toy-quadratic-seed{args.seed}"
    study = pbtune.create_study(
        name=name,
        space={"h0": pbtune.Float(0.0, 1.0), "h1": pbtune.Float(0.0, 1.0)},
        storage=args.storage,
        metric="q",
        mode="max",
        population_size=args.population,
        steps_per_trial=args.steps_per_trial,
        max_steps=args.max_steps,
        checkpoint_root=args.checkpoint_root,
        seed=args.seed,
        exploit=EXPLOIT[args.exploit],
        load_if_exists=True,
    )
    study.optimize(train, workers=args.workers, show_progress=False if args.quiet else None)

    best = study.best_trial
    schedule = study.schedule(best.id)
    complete = study.trials([pbtune.TrialState.COMPLETE])
    exploits = sum(1 for t in complete if t.decision == "exploit")
    summary: dict[str, Any] = {
        "study": name,
        "best_trial": best.id,
        "best_q": best.metrics["q"] if best.metrics else float("nan"),
        "best_step": best.end_step,
        "best_params": dict(best.params),
        "trials": len(complete),
        "exploits": exploits,
        "schedule": [s.to_dict() for s in schedule],
    }
    # Without PBT: each initial member keeps its first h for the whole budget.
    initial = {t.member: t.params for t in study.trials() if t.parent_id is None}
    fixed = {}
    with tempfile.TemporaryDirectory(prefix="toy-fixed-") as scratch:
        for member, params in sorted(initial.items()):
            constant = [
                pbtune.Segment(start, min(start + args.steps_per_trial, args.max_steps), params)
                for start in range(0, args.max_steps, args.steps_per_trial)
            ]
            result = pbtune.replay(train, constant, checkpoint_root=Path(scratch) / str(member))
            fixed[member] = result.metrics["q"]
    summary["fixed_h_q"] = [fixed[m] for m in sorted(fixed)]
    if not args.quiet:
        print(f"study {name!r}: {len(complete)} trials, {exploits} of them exploits")
        print(
            f"best trial {best.id} at step {best.end_step}: Q = {summary['best_q']:.6f} "
            f"(the maximum is 1.2)"
        )
        print(f"best h at the end: h0 = {best.params['h0']:.3f}, h1 = {best.params['h1']:.3f}")
        print(f"schedule of the best lineage ({len(schedule)} segments; h changes shown):")
        previous = None
        for segment in schedule:
            h = (round(segment.params["h0"], 3), round(segment.params["h1"], 3))
            if h != previous:
                print(f"  from step {segment.start_step:4d}: h0 = {h[0]:.3f}, h1 = {h[1]:.3f}")
                previous = h
        print(
            "without PBT (each initial member's h held fixed for "
            f"{args.max_steps} steps): best Q = {max(fixed.values()):.6f}; all: "
            + ", ".join(f"{q:.6f}" for q in fixed.values())
        )
    return summary


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted: run the same command again to continue the study")
