"""PBT for a small PyTorch CNN on scikit-learn's bundled digits (8x8 images, no download).

A population trains the same network with SGD; PBT explores the learning rate, the
momentum and the weight decay, and one pbtune step is one minibatch. `pbtune.torch.load`
restores the parent's model, optimizer, LR scheduler and RNG states and then puts the
trial's own params into the optimizer (the restored optimizer state carries the parent's),
and checks them; `pbtune.torch.save` writes the trial's state. Each trial records the
learning rate its optimizer held at its first step (``trained_lr``), read inside training:
the trial's ``lr`` times the schedule's decay at that step, ``GAMMA ** start_step``.

Run it (CPU, seconds)::

    pip install -e ".[torch,examples]"
    python examples/torch_cnn.py                  # sqlite:///torch_cnn.db, 2 workers
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import numpy as np
import torch
from torch import nn

import pbtune
import pbtune.torch

BATCH_SIZE = 64
GAMMA = 0.999  # the learning rate's decay per step


@functools.lru_cache(maxsize=1)
def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as 1x8x8 images scaled to [0, 1], split once by a fixed seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    validation, training = order[:500], order[500:]
    return x[training], y[training], x[validation], y[validation]


def build(seed: int) -> nn.Module:
    """The same initial weights in every member (from the study seed only)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 10),
    )


def train(trial: pbtune.Trial) -> dict[str, float]:
    torch.set_num_threads(1)
    x, y, x_val, y_val = load_data()
    model = build(trial.seed)
    params = trial.params
    optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"],
                                momentum=params["momentum"],
                                weight_decay=params["weight_decay"])
    # A slow exponential decay of the base learning rate the trial's "lr" sets.
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=GAMMA)
    pbtune.torch.load(trial, model=model, optimizer=optimizer, scheduler=scheduler)
    trained_lr = float("nan")
    loss = torch.tensor(0.0)
    for step in range(trial.start_step, trial.end_step):
        batch = torch.randint(len(y), (BATCH_SIZE,))
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        if step == trial.start_step:  # what this trial trains with, read at its first step
            trained_lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    pbtune.torch.save(trial, model=model, optimizer=optimizer, scheduler=scheduler)
    with torch.no_grad():
        accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
    return {"accuracy": accuracy, "loss": loss.item(), "trained_lr": trained_lr}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storage", default="sqlite:///torch_cnn.db")
    parser.add_argument("--checkpoint-root", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    study = pbtune.create_study(
        name=f"torch-cnn-seed{args.seed}", storage=args.storage,
        checkpoint_root=args.checkpoint_root, metric="accuracy", mode="max",
        space={"lr": pbtune.Float(1e-3, 0.5, log=True),
               "momentum": pbtune.Float(0.0, 0.95),
               "weight_decay": pbtune.Float(1e-6, 1e-2, log=True)},
        population_size=args.population, steps_per_trial=30, max_steps=args.max_steps,
        seed=args.seed, load_if_exists=True)
    study.optimize(train, workers=args.workers)
    best = study.best_trial
    print(f"best accuracy {best.metrics['accuracy']:.3f} with {best.params}")
    return {"best_accuracy": best.metrics["accuracy"], "trials": study.trials(),
            "study": study}


if __name__ == "__main__":
    main()
