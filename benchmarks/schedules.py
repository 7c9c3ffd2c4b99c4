"""Does a schedule beat every fixed setting? The measurements quoted in tasks.py and ppo.py.

    python benchmarks/schedules.py deceptive          # a few seconds
    python benchmarks/schedules.py rl                 # 13 schedules x 5 seeds, ~2 s a run

``deceptive``: without noise (tasks.deceptive_step with noise 0), Q at the end of the budget
for the best schedule found (Powell's method over the 20 segments' h, started from the
linear decay), the linear decay itself, the best fixed h (a grid of 0, 0.01, ..., 1) and the
greedy schedule (segment by segment, the h of the same grid that gives the best Q at the
segment's end, given what came before). Then each of these four schedules trained by the
task's own training function, noise included, through ``pbtune.replay``, over ``--seeds``
seeds.

``rl``: the task's training function through ``pbtune.replay``, over ``--seeds`` seeds: with
the discount and the minibatch size held at 0.97 and 64, a grid of fixed learning rates and
decaying ones; then, at lr 1e-2, other fixed discounts, a rising discount and other
minibatch sizes. For each: the return after the last segment (final) and the best return of
any segment (peak, what the quality benchmark's best-at-budget sees), median and mean over
seeds, and the worst seed's final return.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import tasks  # noqa: E402
from tasks import TASKS, Task  # noqa: E402

import pbtune  # noqa: E402

Schedule = Callable[[int], dict[str, float]]  # the start step of a segment -> its params


def replay(task: Task, schedule: Schedule, seed: int) -> list[float]:
    """The task's fitness after each segment of ``schedule``, trained from scratch."""
    segments = [
        pbtune.Segment(start, min(start + task.steps_per_trial, task.max_steps), schedule(start))
        for start in range(0, task.max_steps, task.steps_per_trial)
    ]
    with tempfile.TemporaryDirectory(prefix="schedules-") as scratch:
        result = pbtune.replay(task.train, segments, checkpoint_root=scratch, seed=seed)
    return [m[task.metric] for m in result.segment_metrics]


# -- deceptive ----------------------------------------------------------------------------------
def deceptive_q(hs: Sequence[float], segment: int) -> float:
    """Q after the segments ``hs`` (``segment`` steps each), without noise."""
    theta, debt = np.array(tasks.DECEPTIVE_THETA_0), 0.0
    for k, h in enumerate(hs):
        for step in range(k * segment, (k + 1) * segment):
            theta, debt = tasks.deceptive_step(theta, debt, float(h), step, 0.0)
    return 1.2 - float(theta @ theta)


def deceptive(seeds: int) -> None:
    from scipy.optimize import minimize

    task = TASKS["deceptive"]
    segment, n = task.steps_per_trial, task.max_steps // task.steps_per_trial
    grid = np.round(np.linspace(0.0, 1.0, 101), 2)
    linear = [tasks.deceptive_target(k * segment + segment // 2) for k in range(n)]
    fixed = max(grid, key=lambda h: deceptive_q([h] * n, segment))
    greedy: list[float] = []
    for _ in range(n):
        greedy.append(max(grid, key=lambda h: deceptive_q([*greedy, h], segment)))
    found = minimize(lambda x: -deceptive_q(np.clip(x, 0.0, 1.0), segment), linear,
                     method="Powell", bounds=[(0.0, 1.0)] * n)
    best = [float(h) for h in np.clip(found.x, 0.0, 1.0)]
    schedules = {
        "best found": best,
        "linear decay": linear,
        f"best fixed (h = {fixed:.2f})": [float(fixed)] * n,
        "greedy": greedy,
    }
    print(f"deceptive: Q at step {task.max_steps} ({n} segments of {segment} steps)")
    print(f"{'schedule':26s} {'no noise':>9s}  noise, {seeds} seeds: mean [min, max]")
    for name, hs in schedules.items():
        noisy = [replay(task, lambda start, hs=hs: {"h": hs[start // segment]}, seed)[-1]
                 for seed in range(seeds)]
        print(f"{name:26s} {deceptive_q(hs, segment):9.3f}  {np.mean(noisy):.3f} "
              f"[{min(noisy):.3f}, {max(noisy):.3f}]")
    for name in ("best found", "greedy"):
        print(f"{name}: h = " + " ".join(f"{h:.2f}" for h in schedules[name]))


# -- rl -----------------------------------------------------------------------------------------
def rl(seeds: int) -> None:
    task = TASKS["rl"]
    n = task.max_steps

    def schedule(lr: Callable[[float], float], gamma: Callable[[float], float] = lambda u: 0.97,
                 minibatch: int = 64) -> Schedule:
        return lambda start: {"lr": lr(start / n), "gamma": gamma(start / n),
                              "minibatch": minibatch}

    schedules: dict[str, Schedule] = {
        f"lr {lr:g}": schedule(lambda u, lr=lr: lr) for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    }
    schedules["lr 3e-2 -> 1e-3 (exponential)"] = schedule(lambda u: 3e-2 * (1 / 30) ** u)
    schedules["lr 3e-2 -> 0 (linear)"] = schedule(lambda u: 3e-2 * (1 - u) + 1e-4)
    schedules["lr 1e-1 -> 1e-3 (exponential)"] = schedule(lambda u: 1e-1 * (1 / 100) ** u)
    # The other params, at lr 1e-2: fixed, and the discount on a schedule.
    for gamma in (0.9, 0.95, 0.99):
        schedules[f"lr 1e-2, gamma {gamma:g}"] = schedule(lambda u: 1e-2, lambda u, g=gamma: g)
    schedules["lr 1e-2, gamma 0.9 -> 0.99"] = schedule(lambda u: 1e-2, lambda u: 0.9 + 0.09 * u)
    for minibatch in (32, 256):
        schedules[f"lr 1e-2, minibatch {minibatch}"] = schedule(lambda u: 1e-2,
                                                                minibatch=minibatch)
    print(f"rl: return after {n} iterations (params held for each segment of "
          f"{task.steps_per_trial}); gamma 0.97 and minibatch 64 unless said; {seeds} seeds")
    print(f"{'params':32s} {'final median':>12s} {'mean':>7s} {'worst':>7s} "
          f"{'peak median':>12s} {'mean':>7s}")
    for name, schedule in schedules.items():
        runs = [replay(task, schedule, seed) for seed in range(seeds)]
        final = [r[-1] for r in runs]
        peak = [max(r) for r in runs]
        print(f"{name:32s} {np.median(final):12.0f} {np.mean(final):7.0f} {min(final):7.0f} "
              f"{np.median(peak):12.0f} {np.mean(peak):7.0f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Schedules against fixed settings.")
    parser.add_argument("task", choices=["deceptive", "rl"])
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds 0..N-1 (default: the task's, 10 or 5)")
    args = parser.parse_args(argv)
    seeds = args.seeds or TASKS[args.task].seeds
    (deceptive if args.task == "deceptive" else rl)(seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
