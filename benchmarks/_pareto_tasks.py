"""The two-objective tasks of the Pareto benchmark (benchmarks/pareto.py).

Each task is one pbtune training function that reports both objectives, its search space,
its budget, the weighted sum that the ``weighted`` method maximises and the reference point
of the hypervolume (in the metrics' own units).

- ``width``: the NumPy MLP of examples/digits_mlp.py on scikit-learn's digits, with one
  more param, ``width``: how many of the 64 hidden units are active (the others are
  masked to 0, so they neither compute nor learn). Validation accuracy (max) against
  ``log2_units``, log2 of the active hidden units (min; 0 for one unit, 6 for all 64):
  the model's size on a log scale, as model sizes are usually compared (on a linear scale
  the hypervolume is almost all decided by widths 2 to 8, and in a trial run the fronts of
  all three methods scored within 5% of each other). A real trade-off (a check with a
  fixed lr of 0.03, momentum 0.9, weight decay 1e-4, 600 steps, 3 seeds: width 1 about
  0.27, 2 0.55, 3 0.78, 4 0.87, 8 0.94, 16 0.95, 64 0.96), in which the schedule matters
  little (in the same check, a decaying lr, or 64 units for 300 steps then 2, 4 or 8, did
  no better than the fixed settings at those widths): PBT's help here is finding
  good lr, momentum and weight decay for each width.
- ``fuel``: the deceptive toy of tasks.py (``deceptive_step``: a point moves towards the
  optimum of Q = 1.2 - |theta|^2 at a speed (1.5 - h) / (1 + debt), the debt growing with
  |h - target(step)|, the target decaying from 1 to 0), with a second objective: ``fuel``,
  the speed asked for, 1.5 - h per step, averaged over the lineage's steps so far (min;
  0.5 to 1.5). Moving fast costs fuel, so Q and fuel conflict, and the schedule matters a
  lot: with the noise off, following the target (fuel 1.00) reaches Q 1.083, while the
  best fixed h at the same fuel (h = 0.5) reaches 0.570 (pareto.py computes the front of
  fixed h and of target-following schedules as a reference).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tasks  # benchmarks/tasks.py; it puts examples/ on sys.path
from tasks import digits_mlp

import pbtune

Objectives = Mapping[str, str]  # metric -> "max" | "min"


@dataclass(frozen=True)
class ParetoTask:
    name: str
    title: str
    train: Callable[[pbtune.Trial], Mapping[str, float]]
    space: Mapping[str, pbtune.Float | pbtune.Int | pbtune.Choice]
    objectives: Objectives  # (the objective to maximise first, the cost second)
    weighted: Callable[[Mapping[str, float]], float]  # the weighted method's fitness
    weights: str  # what ``weighted`` computes, for the report
    reference: Mapping[str, float]  # the hypervolume's reference point, in metric units
    population: int
    steps_per_trial: int
    max_steps: int
    seeds: int  # how many seeds pareto.py runs by default


# -- width: accuracy against the size of the digits MLP ---------------------------------------
WIDTHS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # at most digits_mlp.HIDDEN
WIDTH_SPACE = {**digits_mlp.SPACE, "width": pbtune.Choice(list(WIDTHS), ordered=True)}
WIDTH_FILE = "state.npz"


def masked_forward(state: Mapping[str, np.ndarray], x: np.ndarray, width: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """digits_mlp.forward with hidden units ``width`` and above set to 0."""
    hidden = np.maximum(x @ state["w1"] + state["b1"], 0.0)
    hidden[:, width:] = 0.0
    return hidden, hidden @ state["w2"] + state["b2"]


def masked_accuracy(state: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                    width: int) -> float:
    with np.errstate(all="ignore"):
        _, logits = masked_forward(state, x, width)
    if not np.all(np.isfinite(logits)):
        return 0.0  # diverged
    return float(np.mean(np.argmax(logits, axis=1) == y))


def masked_sgd_step(state: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, lr: float,
                    momentum: float, weight_decay: float, width: int) -> None:
    """digits_mlp.sgd_step on the first ``width`` hidden units (the masked ones get no
    gradient from the data, only weight decay)."""
    hidden, logits = masked_forward(state, x, width)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(y)
    probs[np.arange(n), y] -= 1.0
    d_logits = probs / n
    d_hidden = (d_logits @ state["w2"].T) * (hidden > 0.0)
    grads = {
        "w2": hidden.T @ d_logits + weight_decay * state["w2"],
        "b2": d_logits.sum(axis=0),
        "w1": x.T @ d_hidden + weight_decay * state["w1"],
        "b1": d_hidden.sum(axis=0),
    }
    for name, grad in grads.items():
        velocity = state["v_" + name]
        velocity *= momentum
        velocity += grad
        state[name] -= lr * velocity


def width_train(trial: pbtune.Trial) -> dict[str, float]:
    """One segment of the masked MLP: examples/digits_mlp.py's ``train`` (same data, initial
    weights, data order and checkpoint) with only ``width`` hidden units active."""
    x_train, y_train, x_val, y_val = digits_mlp.load_data()
    if trial.parent_checkpoint is not None:
        with np.load(Path(trial.parent_checkpoint) / WIDTH_FILE, allow_pickle=False) as saved:
            state = {name: saved[name].copy() for name in saved.files}
        if int(state["step"]) != trial.start_step:
            raise RuntimeError(f"checkpoint is at step {int(state['step'])}, trial starts at "
                               f"{trial.start_step}")
    else:
        state = digits_mlp.init_state(trial.seed, x_train.shape[1], len(y_train))
    width = int(trial.params["width"])
    settings = (float(trial.params["lr"]), float(trial.params["momentum"]),
                float(trial.params["weight_decay"]), width)
    data_rng = digits_mlp.unpack_rng(state["rng_state"])
    order, cursor, size = state["order"], int(state["cursor"]), digits_mlp.BATCH_SIZE
    with np.errstate(all="ignore"):  # a too-large learning rate may diverge: a result
        for _ in range(trial.start_step, trial.end_step):
            if cursor + size > len(order):
                order, cursor = data_rng.permutation(len(order)), 0
            batch = order[cursor:cursor + size]
            cursor += size
            masked_sgd_step(state, x_train[batch], y_train[batch], *settings)
    state.update(order=order, cursor=np.array(cursor, dtype=np.int64),
                 rng_state=digits_mlp.pack_rng(data_rng),
                 step=np.array(trial.end_step, dtype=np.int64))
    np.savez(Path(trial.checkpoint_dir) / WIDTH_FILE, **state)
    return {"accuracy": masked_accuracy(state, x_val, y_val, width),
            "log2_units": math.log2(width), "hidden_units": float(width)}


LOG2_MAX_UNITS = math.log2(max(WIDTHS))


def width_weighted(metrics: Mapping[str, float]) -> float:
    """Equal weights on both objectives scaled to [0, 1] by their ranges (accuracy 0..1,
    log2 units 0..6), higher is better."""
    return 0.5 * metrics["accuracy"] + 0.5 * (1.0 - metrics["log2_units"] / LOG2_MAX_UNITS)


# -- fuel: the deceptive toy's Q against the speed it asked for -----------------------------
FUEL_FILE = "fuel.json"
Q_START = 1.2 - sum(t * t for t in tasks.DECEPTIVE_THETA_0)  # -0.42: Q before any step
FUEL_MAX = 1.5  # 1.5 - h at h = 0
FUEL_MIN = 0.5  # at h = 1


def fuel_train(trial: pbtune.Trial) -> dict[str, float]:
    """One segment of the deceptive toy (tasks.deceptive_train's dynamics and noise) that
    also sums the fuel, 1.5 - h per step; the sum is in the checkpoint."""
    theta, debt, fuel = np.array(tasks.DECEPTIVE_THETA_0), 0.0, 0.0
    if trial.parent_checkpoint is not None:
        state = json.loads((Path(trial.parent_checkpoint) / FUEL_FILE).read_text())
        if state["step"] != trial.start_step:
            raise RuntimeError(f"checkpoint is at step {state['step']}, trial starts at "
                               f"{trial.start_step}")
        theta = np.array(state["theta"], dtype=float)
        debt, fuel = float(state["debt"]), float(state["fuel"])
    h = float(trial.params["h"])
    for step in range(trial.start_step, trial.end_step):
        rng = np.random.default_rng([trial.seed, trial.member, trial.number, step, 3])
        theta, debt = tasks.deceptive_step(theta, debt, h, step, float(rng.normal()))
        fuel += FUEL_MAX - h
    state = {"theta": theta.tolist(), "debt": debt, "fuel": fuel, "step": trial.end_step}
    (Path(trial.checkpoint_dir) / FUEL_FILE).write_text(json.dumps(state))
    return {"q": 1.2 - float(theta @ theta), "fuel": fuel / trial.end_step, "debt": debt}


def fuel_weighted(metrics: Mapping[str, float]) -> float:
    """Equal weights on both objectives scaled to [0, 1] by their ranges (Q from its start,
    -0.42, to its maximum, 1.2; fuel 0.5..1.5), higher is better."""
    q = (metrics["q"] - Q_START) / (1.2 - Q_START)
    return 0.5 * q + 0.5 * (FUEL_MAX - metrics["fuel"]) / (FUEL_MAX - FUEL_MIN)


def fuel_reference_fronts() -> dict[str, list[tuple[float, float]]]:
    """(Q, fuel) at step 100 with the noise off, for two families of schedules: every fixed
    h of 0, 0.01, ..., 1; and the target shifted by -0.5, -0.49, ..., 0.5 (clipped to [0,
    1], h constant within each 5-step segment at the target of its middle step)."""
    def run(h_at: Callable[[int], float]) -> tuple[float, float]:
        theta, debt, fuel = np.array(tasks.DECEPTIVE_THETA_0), 0.0, 0.0
        for step in range(tasks.DECEPTIVE_STEPS):
            h = h_at(step)
            theta, debt = tasks.deceptive_step(theta, debt, h, step, 0.0)
            fuel += FUEL_MAX - h
        return 1.2 - float(theta @ theta), fuel / tasks.DECEPTIVE_STEPS

    def target(step: int, shift: float) -> float:
        middle = 5 * (step // 5) + 2.5
        return min(1.0, max(0.0, tasks.deceptive_target(middle) + shift))  # type: ignore[arg-type]

    grid = [round(float(x), 2) for x in np.linspace(0.0, 1.0, 101)]
    return {"fixed h": [run(lambda _, h=h: h) for h in grid],
            "target + shift": [run(lambda step, s=h - 0.5: target(step, s)) for h in grid]}


TASKS: dict[str, ParetoTask] = {
    "width": ParetoTask(
        name="width",
        title="NumPy MLP on digits: validation accuracy (max) vs log2 active hidden units (min)",
        train=width_train,
        space=WIDTH_SPACE,
        objectives={"accuracy": "max", "log2_units": "min"},
        weighted=width_weighted,
        weights="0.5 * accuracy + 0.5 * (1 - log2_units / 6)",
        reference={"accuracy": 0.1, "log2_units": LOG2_MAX_UNITS},
        population=16,
        steps_per_trial=50,
        max_steps=600,
        seeds=10,
    ),
    "fuel": ParetoTask(
        name="fuel",
        title="Deceptive toy: Q after 100 steps (max) vs fuel, mean 1.5 - h per step (min)",
        train=fuel_train,
        space={"h": pbtune.Float(0.0, 1.0)},
        objectives={"q": "max", "fuel": "min"},
        weighted=fuel_weighted,
        weights="0.5 * (q + 0.42) / 1.62 + 0.5 * (1.5 - fuel)",
        reference={"q": Q_START, "fuel": FUEL_MAX},
        population=16,
        steps_per_trial=5,
        max_steps=tasks.DECEPTIVE_STEPS,
        seeds=10,
    ),
}
