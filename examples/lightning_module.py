"""PBT for a PyTorch Lightning module: a small MLP regression on synthetic data (CPU, seconds).

A population trains the same ``LightningModule`` (built from ``trial.params``, as any
Lightning user writes it: ``save_hyperparameters()``, ``configure_optimizers`` reading
``self.hparams``, an LR schedule). PBT explores the learning rate, the momentum and the
batch size; one pbtune step is one optimizer step (``trainer.global_step``).
`pbtune.lightning.fit` restores the parent's checkpoint (weights, optimizer, schedule,
loops), then puts the trial's params into the optimizer and the schedule (the restored
state carries the parent's), checks them, trains to ``trial.end_step`` and writes
``model.ckpt``. Each trial records the base learning rate its optimizer trained with,
read in its first training step (``trained_lr``).

Run it::

    pip install -e ".[lightning]"
    python examples/lightning_module.py          # sqlite:///lightning_module.db, 2 workers
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pbtune
import pbtune.lightning

GAMMA = 0.995  # the schedule: the lr decays by this factor at every optimizer step


@functools.lru_cache(maxsize=1)
def make_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """y = sin(3 x0) + x1^2 - x2 plus noise; 512 rows to train on, 256 to validate."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(768, 3, generator=generator) * 2 - 1
    y = torch.sin(3 * x[:, :1]) + x[:, 1:2] ** 2 - x[:, 2:3]
    y = y + 0.05 * torch.randn(y.shape, generator=generator)
    return x[:512], y[:512], x[512:], y[512:]


class RegressionData(L.LightningDataModule):
    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self) -> DataLoader[Any]:
        x, y, _, _ = make_data()
        return DataLoader(TensorDataset(x, y), batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        _, _, x, y = make_data()
        return DataLoader(TensorDataset(x, y), batch_size=256)


class LitMLP(L.LightningModule):
    def __init__(self, lr: float = 0.01, momentum: float = 0.9, hidden: int = 32) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.trained_lr: float | None = None

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.trained_lr is None:  # the base lr this trial trains with, seen by the step
            lr_now = self.trainer.optimizers[0].param_groups[0]["lr"]
            self.trained_lr = lr_now / GAMMA**self.global_step
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr,
                                    momentum=self.hparams.momentum)
        schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=GAMMA)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def train(trial: pbtune.Trial) -> dict[str, float]:
    torch.set_num_threads(1)
    torch.manual_seed(trial.seed)  # the same initial weights in every member
    model = LitMLP(lr=trial.params["lr"], momentum=trial.params["momentum"])
    data = RegressionData(batch_size=trial.params["batch_size"])
    metrics = pbtune.lightning.fit(trial, model, datamodule=data)  # unit="steps"
    assert model.trained_lr is not None
    return {**metrics, "trained_lr": model.trained_lr}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storage", default="sqlite:///lightning_module.db")
    parser.add_argument("--checkpoint-root", default="pbtune_checkpoints")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    study = pbtune.create_study(
        name=f"lightning-module-seed{args.seed}", storage=args.storage,
        checkpoint_root=args.checkpoint_root, metric="val_loss", mode="min",
        space={"lr": pbtune.Float(1e-3, 0.5, log=True),
               "momentum": pbtune.Float(0.0, 0.95),
               "batch_size": pbtune.Choice([16, 32, 64])},
        population_size=args.population, steps_per_trial=20, max_steps=args.max_steps,
        seed=args.seed, load_if_exists=True)
    study.optimize(train, workers=args.workers)

    best = study.best_trial
    assert best.checkpoint is not None and best.metrics is not None
    # The trained model: a plain Lightning checkpoint, loaded the Lightning way.
    model = LitMLP.load_from_checkpoint(pbtune.lightning.checkpoint_file(best.checkpoint))
    _, _, x, y = make_data()
    with torch.no_grad():
        val_loss = nn.functional.mse_loss(model.net(x), y).item()
    print(f"best val_loss {best.metrics['val_loss']:.4f} (reloaded: {val_loss:.4f}) "
          f"with {best.params}")
    return {"study": study, "best": best, "reloaded_val_loss": val_loss}


if __name__ == "__main__":
    main()
