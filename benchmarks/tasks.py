"""The tasks of the quality benchmark (benchmarks/quality.py).

Every task is one pbtune training function (``train(trial) -> metrics``) plus its search space
and its budget. The same function runs under every method: pbtune's strategies call it
directly, and the Ray Tune trainable in quality.py wraps it (one Ray iteration = one call =
``steps_per_trial`` steps), so the models, the data and the checkpoints are identical.

- ``toy``: Jaderberg et al.'s toy quadratic, examples/toy_quadratic.py's ``train``.
- ``triangle``: the "triangle learning rate" toy of Ray Tune's PBT example
  (ray/python/ray/tune/examples/pbt_function.py), defined below.
- ``digits``: the NumPy MLP on scikit-learn's digits, examples/digits_mlp.py's ``train``,
  with a smaller budget.
- ``torch``: a small PyTorch convolutional net on the same digits split, defined below
  (``torch_train``). Registered only when torch is installed (the optional ``torch`` extra,
  ``pip install -e ".[bench,torch]"``); torch is imported inside the training function, so
  the other tasks never load it.
- ``deceptive``: a toy on which the greedy schedule is the wrong one (after PBT-Zoo's
  "Deceptive"), defined below (``deceptive_train``).
- ``rl``: a small PPO agent in NumPy on gymnasium's Pendulum-v1, ppo.py's ``train``
  (gymnasium, in the ``bench`` extra, is imported inside it).

``Task.seeds`` is the number of seeds quality.py runs by default: 10 on the cheap tasks, 5
on the costly ones.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
if str(EXAMPLES) not in sys.path:  # worker processes inherit sys.path (spawn)
    sys.path.insert(0, str(EXAMPLES))

import digits_mlp  # noqa: E402
import ppo  # noqa: E402
import toy_quadratic  # noqa: E402

import pbtune  # noqa: E402
from pbtune.trial import FrozenTrial  # noqa: E402

# -- the triangle learning-rate toy -----------------------------------------------------------
# Source: Ray, python/ray/tune/examples/pbt_function.py, ``pbt_function(config)`` (the same
# dynamics in the Ray 1.x and 2.x versions of the file; Syne Tune's and Katib's PBT examples
# port it). Its loop body, per step, with ``lr = config["lr"]``:
#
#     if accuracy < midpoint:
#         optimal_lr = 0.01 * accuracy / midpoint
#     else:
#         optimal_lr = 0.01 - 0.01 * (accuracy - midpoint) / midpoint
#     optimal_lr = min(0.01, max(0.001, optimal_lr))
#     q_err = max(lr, optimal_lr) / min(lr, optimal_lr)
#     if q_err < q_tolerance:
#         accuracy += (1.0 / q_err) * random.random()
#     elif lr > optimal_lr:
#         accuracy -= (q_err - q_tolerance) * random.random()
#     accuracy += noise_level * np.random.normal()
#     accuracy = max(0, accuracy)
#
# with midpoint = 100, q_tolerance = 3, noise_level = 2, accuracy = 0.0 at the start, and the
# search space ``"lr": tune.uniform(0.0001, 0.02)``. Differences here, all the same for every
# method: the random numbers come from a NumPy generator seeded by (study seed, member, trial
# number, step) rather than the global ``random`` / ``np.random`` (same distributions: U[0, 1)
# and N(0, 1)). The trial number (unique per trial; per Ray iteration in quality.py) makes a
# segment that is trained again, after a copy from a parent that is behind, draw fresh noise,
# as the example's global generators do. Seeded by (seed, member, step) alone, every retry of
# the same steps replayed the same noise, and a trial that was reset to its donor's checkpoint
# and was unlucky on those steps got the same bad luck on each retry: Ray Tune PBT, which
# retrains often, then spent most of its steps re-running one segment (seen in a run here:
# 240 results within the budget, all at step 25 or earlier);
# the run has a fixed budget of steps (Ray's example also stops early at accuracy > 200); the
# initial lr is drawn from the space (Ray's example starts every member at 0.0001); the
# example's dummy "some_other_factor" is left out.
TRIANGLE_MIDPOINT = 100.0  # lr starts decreasing after accuracy > midpoint
TRIANGLE_Q_TOLERANCE = 3.0  # penalise exceeding the optimal lr by more than this multiple
TRIANGLE_NOISE_LEVEL = 2.0  # Gaussian noise added to the accuracy at every step
TRIANGLE_FILE = "triangle.json"


def triangle_optimal_lr(accuracy: float) -> float:
    """The lr at which accuracy grows fastest: 0.001 -> 0.01 (accuracy 100) -> 0.001."""
    midpoint = TRIANGLE_MIDPOINT
    if accuracy < midpoint:
        optimal = 0.01 * accuracy / midpoint
    else:
        optimal = 0.01 - 0.01 * (accuracy - midpoint) / midpoint
    return min(0.01, max(0.001, optimal))


def triangle_step(accuracy: float, lr: float, rng: np.random.Generator) -> float:
    """One step of pbt_function.py's loop body."""
    optimal = triangle_optimal_lr(accuracy)
    q_err = max(lr, optimal) / min(lr, optimal)
    if q_err < TRIANGLE_Q_TOLERANCE:
        accuracy += (1.0 / q_err) * rng.random()
    elif lr > optimal:
        accuracy -= (q_err - TRIANGLE_Q_TOLERANCE) * rng.random()
    accuracy += TRIANGLE_NOISE_LEVEL * rng.normal()
    return max(0.0, accuracy)


def triangle_train(trial: pbtune.Trial) -> dict[str, float]:
    """One segment of the triangle toy, from ``start_step`` to ``end_step``."""
    accuracy = 0.0
    if trial.parent_checkpoint is not None:
        state = json.loads((Path(trial.parent_checkpoint) / TRIANGLE_FILE).read_text())
        if state["step"] != trial.start_step:
            raise RuntimeError(
                f"checkpoint is at step {state['step']}, trial starts at {trial.start_step}"
            )
        accuracy = float(state["accuracy"])
    lr = float(trial.params["lr"])
    for step in range(trial.start_step, trial.end_step):
        # The trial's own noise stream: independent of the lineage it copied, fresh on a retry.
        rng = np.random.default_rng([trial.seed, trial.member, trial.number, step])
        accuracy = triangle_step(accuracy, lr, rng)
    state = {"accuracy": accuracy, "step": trial.end_step}
    (Path(trial.checkpoint_dir) / TRIANGLE_FILE).write_text(json.dumps(state))
    return {"accuracy": accuracy, "optimal_lr": triangle_optimal_lr(accuracy)}


# -- the deceptive toy ----------------------------------------------------------------------
# In the spirit of the "Deceptive" toy of PBT-Zoo (Chebykin et al., TMLR 2025, "To Be Greedy,
# or Not to Be"): a task on which the greedy choice of a hyperparameter, the one that makes
# the next segment best, is the wrong schedule. The variant here is this benchmark's own.
#
# The model is a point theta in the plane, starting at (0.9, 0.9); fitness is the toy
# quadratic's Q = 1.2 - |theta|^2 (max 1.2 at theta = 0). One hyperparameter h in [0, 1]. At
# every step theta moves straight towards 0 by DECEPTIVE_RATE * speed (it stops at 0), with
#
#     speed = (1.5 - h) / (1 + debt) * (1 + 0.1 * noise),
#
# so a lower h moves faster now. But the model keeps a debt: after every step,
#
#     debt += DECEPTIVE_DEBT / max_steps * |h - target(step)|,  target(step) = 1 - step / max_steps,
#
# i.e. every step away from a target that decays linearly from 1 to 0 over the budget slows
# down every later step, for good (the debt is part of the model: it is in the checkpoint and
# a member that copies another inherits it). Lowering h right away is faster for the next
# few segments and much slower in the end; the best schedule follows the decaying target
# and drops to 0 near the end, where little is left to pay the debt back. The noise is
# N(0, 1) from a generator seeded by (study seed, member, trial number, step), like the
# triangle's. Compared with PBT-Zoo's toy (speed max(2 - h - penalty, 0), the penalty 0.2 x
# the accumulated |h - target| over segments), the debt here divides the speed instead of
# subtracting from it (the speed never reaches 0), accumulates per step, and the fitness is
# the distance covered, read through Q.
#
# Measured by ``python benchmarks/schedules.py deceptive`` (every value is Q at
# step 100, 20 segments of 5 steps, h constant within a segment):
#
#     schedule                                   no noise   noise, 10 seeds: mean [min, max]
#     best found (Powell's method from the          1.085    1.086 [1.077, 1.097]
#       linear decay): h = 0.98, 0.93, ..., 0.17, 0.12, then 0 for the last 2 segments
#     linear decay (h = the target at each          1.083    1.085 [1.076, 1.096]
#       segment's middle step)
#     best fixed h (0.55, the best of 0, 0.01,      0.572    0.572 [0.562, 0.589]
#       ..., 1)
#     greedy (each segment, the h of that grid      0.486    0.485 [0.471, 0.505]
#       giving the best Q at the segment's end: 0 every time)
#
# The best schedule beats the best fixed h by 0.51 and the greedy one by 0.60, far beyond
# the noise (seed to seed, Q moves by about 0.02).
DECEPTIVE_STEPS = 100
DECEPTIVE_RATE = 0.01
DECEPTIVE_DEBT = 10.0
DECEPTIVE_NOISE = 0.1
DECEPTIVE_THETA_0 = (0.9, 0.9)
DECEPTIVE_FILE = "deceptive.json"


def deceptive_target(step: int) -> float:
    """The h that costs no debt at ``step``: 1 at the start, 0 at the end of the budget."""
    return 1.0 - step / DECEPTIVE_STEPS


def deceptive_step(theta: np.ndarray, debt: float, h: float, step: int,
                   noise: float) -> tuple[np.ndarray, float]:
    """One step of the deceptive toy: move theta towards 0, then add to the debt."""
    speed = (1.5 - h) / (1.0 + debt) * (1.0 + DECEPTIVE_NOISE * noise)
    distance = float(np.hypot(*theta))
    if distance > 0.0:
        theta = theta * max(distance - DECEPTIVE_RATE * speed, 0.0) / distance
    debt += DECEPTIVE_DEBT / DECEPTIVE_STEPS * abs(h - deceptive_target(step))
    return theta, debt


def deceptive_train(trial: pbtune.Trial) -> dict[str, float]:
    """One segment of the deceptive toy, from ``start_step`` to ``end_step``."""
    theta, debt = np.array(DECEPTIVE_THETA_0), 0.0
    if trial.parent_checkpoint is not None:
        state = json.loads((Path(trial.parent_checkpoint) / DECEPTIVE_FILE).read_text())
        if state["step"] != trial.start_step:
            raise RuntimeError(
                f"checkpoint is at step {state['step']}, trial starts at {trial.start_step}"
            )
        theta, debt = np.array(state["theta"], dtype=float), float(state["debt"])
    h = float(trial.params["h"])
    for step in range(trial.start_step, trial.end_step):
        rng = np.random.default_rng([trial.seed, trial.member, trial.number, step, 3])
        theta, debt = deceptive_step(theta, debt, h, step, float(rng.normal()))
    state = {"theta": theta.tolist(), "debt": debt, "step": trial.end_step}
    (Path(trial.checkpoint_dir) / DECEPTIVE_FILE).write_text(json.dumps(state))
    return {"q": 1.2 - float(theta @ theta), "debt": debt}


# -- a small PyTorch convolutional net on digits ------------------------------------------------
# The 8x8 digits of scikit-learn, split and standardised exactly as examples/digits_mlp.py
# does (digits_mlp.load_data: 1257 training and 540 validation images), reshaped to 1x8x8.
# Model: conv 3x3 (1 -> 8 channels, padding 1), ReLU, 2x2 max-pool, conv 3x3 (8 -> 16,
# padding 1), ReLU, 2x2 max-pool, linear 64 -> 10; softmax cross-entropy; torch.optim.SGD
# with momentum 0.9 and the member's lr and weight_decay. One step is one minibatch of 32.
# Every member starts from the same weights, drawn from the study seed only. The minibatches
# of a segment come from a generator seeded by (study seed, member, trial number, start_step),
# so a trial is deterministic given its checkpoint, and a segment trained again (a retry after
# a copy) sees fresh minibatches, as with an ordinary shuffling data loader. The checkpoint
# is ``torch.save`` of the model's and the optimizer's state_dicts (the momentum buffers) and
# the step, loaded back with ``weights_only=True``. Fitness is the validation accuracy (0 if
# the weights diverged).
TORCH_FILE = "state.pt"
TORCH_BATCH = 32
TORCH_MOMENTUM = 0.9
TORCH_SPACE = {
    "lr": pbtune.Float(1e-3, 1.0, log=True),
    "weight_decay": pbtune.Float(1e-6, 1e-2, log=True),
}


def torch_available() -> bool:
    """Whether torch is installed (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def torch_model(seed: int) -> Any:
    """The initial net, from the study seed only (the global torch RNG is left as it was)."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(f"torch-digits-{seed}".encode()))
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
        )


def torch_train(trial: pbtune.Trial) -> dict[str, float]:
    """One segment of SGD on the conv net, from ``start_step`` to ``end_step``."""
    import torch
    from torch import nn

    torch.set_num_threads(1)  # 2 workers on 2 cores
    x_train, y_train, x_val, y_val = digits_mlp.load_data()
    xt = torch.from_numpy(x_train.astype(np.float32)).reshape(-1, 1, 8, 8)
    yt = torch.from_numpy(y_train)
    xv = torch.from_numpy(x_val.astype(np.float32)).reshape(-1, 1, 8, 8)
    yv = torch.from_numpy(y_val)
    model = torch_model(trial.seed)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=float(trial.params["lr"]), momentum=TORCH_MOMENTUM,
        weight_decay=float(trial.params["weight_decay"]),
    )
    if trial.parent_checkpoint is not None:
        state = torch.load(Path(trial.parent_checkpoint) / TORCH_FILE, weights_only=True)
        if state["step"] != trial.start_step:
            raise RuntimeError(
                f"checkpoint is at step {state['step']}, trial starts at {trial.start_step}"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # the member's own params, not the parent's
            group["lr"] = float(trial.params["lr"])
            group["weight_decay"] = float(trial.params["weight_decay"])
    rng = np.random.default_rng([trial.seed, trial.member, trial.number, trial.start_step, 7])
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(trial.start_step, trial.end_step):
        batch = torch.from_numpy(rng.choice(len(yt), size=TORCH_BATCH, replace=False))
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt[batch]), yt[batch])
        loss.backward()
        optimizer.step()
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
         "step": trial.end_step},
        Path(trial.checkpoint_dir) / TORCH_FILE,
    )
    model.eval()
    with torch.no_grad():
        logits = model(xv)
    if not bool(torch.isfinite(logits).all()):
        return {"accuracy": 0.0}  # diverged: a too-large lr is a result, not an error
    return {"accuracy": float((logits.argmax(dim=1) == yv).double().mean())}


# -- random search as an exploit strategy ------------------------------------------------------
class NoExploit(pbtune.ExploitStrategy):
    """Never copy: every member trains its initial params for the whole budget.

    Random search over the same initial population, run by the same machinery as PBT:
    no copy, and no exploring on a plateau either. Stored as "tasks:NoExploit", so worker
    processes import it from this module.
    """

    explore_on_plateau = False

    def select(
        self,
        finished: FrozenTrial,
        population: Sequence[FrozenTrial],
        mode: Any,
        rng: np.random.Generator,
    ) -> FrozenTrial:
        return finished

    def to_dict(self) -> dict[str, Any]:
        return {"type": f"{__name__}:NoExploit"}


# -- the tasks ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    name: str
    title: str
    train: Callable[[pbtune.Trial], Mapping[str, float]]
    space: Mapping[str, pbtune.Float | pbtune.Int | pbtune.Choice]
    metric: str  # maximised
    population: int
    steps_per_trial: int
    max_steps: int
    seeds: int  # how many seeds quality.py runs by default


TASKS: dict[str, Task] = {
    "toy": Task(
        name="toy",
        title="Toy quadratic (Jaderberg et al. 2017, Fig. 2): Q = 1.2 - |theta|^2, max 1.2",
        train=toy_quadratic.train,
        space={"h0": pbtune.Float(0.0, 1.0), "h1": pbtune.Float(0.0, 1.0)},
        metric="q",
        population=4,
        steps_per_trial=4,
        max_steps=200,
        seeds=10,
    ),
    "triangle": Task(
        name="triangle",
        title="Triangle lr toy (Ray Tune pbt_function.py): accuracy after 300 steps",
        train=triangle_train,
        space={"lr": pbtune.Float(0.0001, 0.02)},
        metric="accuracy",
        population=4,
        steps_per_trial=5,
        max_steps=300,
        seeds=10,
    ),
    "digits": Task(
        name="digits",
        title="NumPy MLP on digits: validation accuracy after 600 minibatch steps",
        train=digits_mlp.train,
        space=dict(digits_mlp.SPACE),
        metric="accuracy",
        population=8,
        steps_per_trial=50,
        max_steps=600,
        seeds=5,
    ),
    "deceptive": Task(
        name="deceptive",
        title="Deceptive toy (greedy h is the wrong schedule): Q after 100 steps, max 1.2",
        train=deceptive_train,
        space={"h": pbtune.Float(0.0, 1.0)},
        metric="q",
        population=8,
        steps_per_trial=5,
        max_steps=DECEPTIVE_STEPS,
        seeds=10,
    ),
    "rl": Task(
        name="rl",
        title="PPO (NumPy) on Pendulum-v1: mean evaluation return after 60 iterations",
        train=ppo.train,
        space=dict(ppo.SPACE),
        metric="return",
        population=8,
        steps_per_trial=4,
        max_steps=60,
        seeds=5,
    ),
}
if torch_available():
    TASKS["torch"] = Task(
        name="torch",
        title="PyTorch conv net on digits: validation accuracy after 600 minibatch steps",
        train=torch_train,
        space=dict(TORCH_SPACE),
        metric="accuracy",
        population=8,
        steps_per_trial=50,
        max_steps=600,
        seeds=5,
    )
