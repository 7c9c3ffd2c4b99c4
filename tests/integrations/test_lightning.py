"""pbtune.lightning: a child trial restores its parent's Lightning checkpoint, then trains
with its own params (not the donor's, which the restored optimizer state brings back).

The module records the lr in its first training step of each trial
(``self.trainer.optimizers[0].param_groups[0]["lr"]``), so the tests check what trained, not
what pbtune says it set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from integrations.extras import require

require("lightning", "lightning")

import lightning as L  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import pbtune  # noqa: E402
import pbtune.lightning  # noqa: E402
from pbtune.trial import FrozenTrial  # noqa: E402

# Lightning's advice for production runs, not for a model of 3 weights on 40 rows.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers"),
    pytest.mark.filterwarnings("ignore:.*resuming from a checkpoint that ended before"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec"),
]

BATCHES_PER_EPOCH = 5  # 40 rows, batches of 8: step 4 and step 8 are mid-epoch
PARENT_LR, CHILD_LR = 0.1, 0.01


def regression_data(rows: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 3, generator=generator)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3


def loaders(batch_size: int = 8) -> tuple[DataLoader[Any], DataLoader[Any]]:
    x, y = regression_data()
    return (DataLoader(TensorDataset(x, y), batch_size=batch_size),
            DataLoader(TensorDataset(x, y), batch_size=20))


def halve_every_two(step: int) -> float:
    return 0.5 ** (step // 2)


class LitRegression(L.LightningModule):
    """Linear regression as users write a module: hparams saved, the optimizer built from
    ``self.hparams.lr``; records what its first training step of the trial sees."""

    def __init__(self, lr: float = 0.1, schedule: str = "none") -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 1)
        self.first_lr: float | None = None
        self.first_weight: torch.Tensor | None = None
        self.steps = 0

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.first_lr is None:
            self.first_lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            self.first_weight = self.linear.weight.detach().clone()
        self.steps += 1
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.linear(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.linear(x), y))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
        if self.hparams.schedule == "none":
            return optimizer
        if self.hparams.schedule == "lambda":
            scheduler: Any = torch.optim.lr_scheduler.LambdaLR(optimizer, halve_every_two)
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def make_trial(root: Path, id: int, lr: float, start: int, end: int, *, member: int = 0,
               parent: pbtune.Trial | None = None, reports: list[Any] | None = None
               ) -> pbtune.Trial:
    checkpoint_dir = root / f"trial-{id}"
    checkpoint_dir.mkdir(parents=True)
    sink = None if reports is None else (lambda step, values: reports.append((step, values)))
    return pbtune.Trial(
        id=id, member=member, generation=0 if parent is None else parent.generation + 1,
        params={"lr": lr}, start_step=start, end_step=end,
        parent_checkpoint=None if parent is None else parent.checkpoint_dir,
        checkpoint_dir=checkpoint_dir, study_name="lightning", report_sink=sink,
    )


def load_checkpoint(trial: pbtune.Trial) -> dict[str, Any]:
    path = pbtune.lightning.checkpoint_file(trial.checkpoint_dir)
    checkpoint: dict[str, Any] = torch.load(path, weights_only=False)
    return checkpoint


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> pbtune.Trial:
    """Member 0 trained steps 0 -> 4 at lr 0.1: the donor of the exploits below."""
    trial = make_trial(tmp_path_factory.mktemp("parent"), 0, PARENT_LR, 0, 4)
    model = LitRegression(lr=PARENT_LR)
    pbtune.lightning.fit(trial, model, *loaders())
    assert model.first_lr == PARENT_LR and model.steps == 4
    return trial


def test_a_child_that_exploits_a_parent_trains_with_its_own_lr(
    parent: pbtune.Trial, tmp_path: Path
) -> None:
    reports: list[Any] = []
    child = make_trial(tmp_path, 1, CHILD_LR, 4, 8, member=1, parent=parent, reports=reports)
    model = LitRegression(lr=CHILD_LR)
    metrics = pbtune.lightning.fit(child, model, *loaders())

    assert model.first_lr == CHILD_LR  # what the optimizer held in the first step
    assert reports == [(4, {"applied_lr": CHILD_LR})]
    # Warm start: the first step saw the parent's final weights, and it ran 4 more steps.
    assert torch.equal(model.first_weight, load_checkpoint(parent)["state_dict"]["linear.weight"])
    assert model.steps == 4
    saved = load_checkpoint(child)
    assert saved["global_step"] == 8
    assert saved["optimizer_states"][0]["param_groups"][0]["lr"] == CHILD_LR
    assert saved["hyper_parameters"]["lr"] == CHILD_LR
    # Validation last ran at the end of epoch 1 (step 5): it runs again at step 8, so the
    # metrics describe the model the trial ends with.
    x, y = regression_data()
    with torch.no_grad():
        weight, bias = saved["state_dict"]["linear.weight"], saved["state_dict"]["linear.bias"]
        val_loss = torch.nn.functional.mse_loss(x @ weight.T + bias, y).item()
    assert metrics["val_loss"] == pytest.approx(val_loss, rel=1e-5)
    assert set(metrics) == {"train_loss", "val_loss"}


def test_without_pbtune_a_plain_restore_trains_with_the_donors_lr(
    parent: pbtune.Trial, tmp_path: Path
) -> None:
    """The bug pbtune guards against (Ray Tune's LightningTrainer with PBT, ray#36660)."""
    model = LitRegression(lr=CHILD_LR)
    trainer = L.Trainer(max_steps=8, **pbtune.lightning.QUIET_DEFAULTS)
    parent_file = pbtune.lightning.checkpoint_file(parent.checkpoint_dir)
    trainer.fit(model, *loaders(), ckpt_path=parent_file)
    assert model.hparams.lr == CHILD_LR
    assert model.first_lr == PARENT_LR  # the donor's lr came back with its optimizer state


@pytest.mark.parametrize(("schedule", "factor_at_4"), [("lambda", 0.25), ("step", 0.25)])
def test_a_restored_lr_schedule_goes_on_from_its_step_with_the_childs_base_lr(
    schedule: str, factor_at_4: float, tmp_path: Path
) -> None:
    first = make_trial(tmp_path, 0, PARENT_LR, 0, 4)
    pbtune.lightning.fit(first, LitRegression(PARENT_LR, schedule), *loaders())
    reports: list[Any] = []
    child = make_trial(tmp_path, 1, CHILD_LR, 4, 6, member=1, parent=first, reports=reports)
    model = LitRegression(CHILD_LR, schedule)
    pbtune.lightning.fit(child, model, *loaders())
    assert model.first_lr == pytest.approx(CHILD_LR * factor_at_4)
    assert reports == [(4, {"applied_lr": CHILD_LR,
                            "scheduled_lr": pytest.approx(CHILD_LR * factor_at_4)})]
    saved = load_checkpoint(child)["lr_schedulers"][0]
    assert saved["base_lrs"] == [CHILD_LR] and saved["last_epoch"] == 6
    assert saved["_last_lr"] == [pytest.approx(CHILD_LR * 0.125)]


def test_epochs_as_the_unit(tmp_path: Path) -> None:
    first = make_trial(tmp_path, 0, PARENT_LR, 0, 1)
    pbtune.lightning.fit(first, LitRegression(PARENT_LR), *loaders(), unit="epochs")
    child = make_trial(tmp_path, 1, CHILD_LR, 1, 3, member=1, parent=first)
    model = LitRegression(CHILD_LR)
    pbtune.lightning.fit(child, model, *loaders(), unit="epochs")
    assert model.first_lr == CHILD_LR and model.steps == 2 * BATCHES_PER_EPOCH
    saved = load_checkpoint(child)
    assert saved["epoch"] == 3 and saved["global_step"] == 3 * BATCHES_PER_EPOCH


def test_steps_are_optimizer_steps_under_gradient_accumulation(tmp_path: Path) -> None:
    trial = make_trial(tmp_path, 0, PARENT_LR, 0, 2)
    model = LitRegression(PARENT_LR)
    pbtune.lightning.fit(trial, model, *loaders(), trainer={"accumulate_grad_batches": 2})
    assert model.steps == 4 and load_checkpoint(trial)["global_step"] == 2


def test_a_module_loaded_with_the_donors_hparams_trains_the_trials_and_warns(
    parent: pbtune.Trial, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = LitRegression.load_from_checkpoint(
        pbtune.lightning.checkpoint_file(parent.checkpoint_dir))
    assert model.hparams.lr == PARENT_LR
    child = make_trial(tmp_path, 1, CHILD_LR, 4, 5, member=1, parent=parent)
    with caplog.at_level(logging.WARNING, "pbtune.lightning"):
        pbtune.lightning.fit(child, model, *loaders())
    assert model.first_lr == CHILD_LR and model.hparams.lr == CHILD_LR
    assert "lr=0.1 -> 0.01" in caplog.text and "Model(**trial.params)" in caplog.text


def test_a_trainer_of_the_users_own_is_used_with_its_callbacks(
    parent: pbtune.Trial, tmp_path: Path
) -> None:
    child = make_trial(tmp_path, 1, CHILD_LR, 4, 6, member=1, parent=parent)
    elsewhere = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "mine", save_last=True)
    inside = L.pytorch.callbacks.ModelCheckpoint(dirpath=child.checkpoint_dir,
                                                every_n_train_steps=1)
    trainer = L.Trainer(callbacks=[elsewhere, inside], logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    model = LitRegression(CHILD_LR)
    pbtune.lightning.fit(child, model, *loaders(), trainer=trainer)
    assert model.first_lr == CHILD_LR and trainer.global_step == 6
    assert (tmp_path / "mine" / "last.ckpt").is_file()
    assert len(list(child.checkpoint_dir.glob("*.ckpt"))) == 2  # pbtune's and the user's
    assert pbtune.lightning.checkpoint_file(child.checkpoint_dir).name == "model.ckpt"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_trainer_pbtune_builds_is_quiet_and_one_of_the_users_is_not(tmp_path: Path) -> None:
    records = Records()
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.addHandler(records)
    try:
        pbtune.lightning.fit(make_trial(tmp_path, 0, PARENT_LR, 0, 1), LitRegression(),
                             *loaders())
        assert not records.messages and logger.level == level
        trainer = L.Trainer(logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        pbtune.lightning.fit(make_trial(tmp_path, 1, PARENT_LR, 0, 1), LitRegression(),
                             *loaders(), trainer=trainer)
        assert any("GPU available" in message for message in records.messages)
    finally:
        logger.removeHandler(records)


def test_trainer_limits_that_fight_the_trials_are_refused_and_the_advice_works(
    tmp_path: Path
) -> None:
    trial = make_trial(tmp_path, 0, PARENT_LR, 0, 2)
    quiet = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False,
             "enable_checkpointing": False}
    with pytest.raises(pbtune.ConfigError, match=r"max_steps=100.*Leave max_steps and max_e"):
        pbtune.lightning.fit(trial, LitRegression(), *loaders(),
                             trainer=L.Trainer(max_steps=100, **quiet))
    with pytest.raises(pbtune.ConfigError, match=r"max_epochs=3"):
        pbtune.lightning.fit(trial, LitRegression(), *loaders(), trainer={"max_epochs": 3})
    used = L.Trainer(max_steps=1, **quiet)
    used.fit(LitRegression(), *loaders())
    with pytest.raises(pbtune.ConfigError, match="new Trainer"):
        pbtune.lightning.fit(trial, LitRegression(), *loaders(), trainer=used)
    # Following the advice: the same Trainer without max_steps trains the trial's steps.
    trainer = L.Trainer(**quiet)
    pbtune.lightning.fit(trial, LitRegression(), *loaders(), trainer=trainer)
    assert trainer.global_step == 2 and trainer.max_epochs == -1


def test_a_parent_without_a_lightning_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    empty = make_trial(tmp_path, 0, PARENT_LR, 0, 2)
    child = make_trial(tmp_path, 1, CHILD_LR, 2, 4, parent=empty)
    with pytest.raises(pbtune.CheckpointError, match=r"no Lightning checkpoint.*pbtune.lightn"):
        pbtune.lightning.fit(child, LitRegression(), *loaders())
    for name in ("a.ckpt", "b.ckpt"):
        (empty.checkpoint_dir / name).write_bytes(b"")
    with pytest.raises(pbtune.CheckpointError, match=r"several .*a.ckpt, b.ckpt"):
        pbtune.lightning.checkpoint_file(empty.checkpoint_dir)


def test_a_parent_counted_in_another_unit_is_refused(parent: pbtune.Trial, tmp_path: Path
                                                      ) -> None:
    child = make_trial(tmp_path, 1, CHILD_LR, 4, 5, parent=parent)
    # Lightning counts the epoch that step 4 stopped in as done.
    with pytest.raises(pbtune.CheckpointError, match=r"starts at epoch 4 \(unit='epochs'\), "
                                                     r"but the parent .* stands at epoch 1"):
        pbtune.lightning.fit(child, LitRegression(CHILD_LR), *loaders(), unit="epochs")


class StopAtStep(L.Callback):
    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= 1:
            trainer.should_stop = True


def test_training_that_stops_before_end_step_fails_the_trial(tmp_path: Path) -> None:
    trial = make_trial(tmp_path, 0, PARENT_LR, 0, 4)
    with pytest.raises(pbtune.TrialFailedError, match=r"stopped at step 1, not at its end_st"):
        pbtune.lightning.fit(trial, LitRegression(), *loaders(),
                             trainer={"callbacks": [StopAtStep()]})
    assert not (trial.checkpoint_dir / "model.ckpt").exists()


def test_what_is_not_a_lightning_module_or_unit_is_refused(tmp_path: Path) -> None:
    trial = make_trial(tmp_path, 0, PARENT_LR, 0, 2)
    with pytest.raises(pbtune.ConfigError, match="LightningModule"):
        pbtune.lightning.fit(trial, torch.nn.Linear(3, 1), *loaders())  # type: ignore[arg-type]
    with pytest.raises(pbtune.ConfigError, match="unit"):
        pbtune.lightning.fit(trial, LitRegression(), *loaders(), unit="batches")  # type: ignore[arg-type]


# -- a study: worker processes on SQLite --------------------------------------------------
class RegressionData(L.LightningDataModule):
    def __init__(self, batch_size: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self) -> DataLoader[Any]:
        return loaders(self.hparams.batch_size)[0]

    def val_dataloader(self) -> DataLoader[Any]:
        return loaders()[1]


def train(trial: pbtune.Trial) -> dict[str, float]:
    model = LitRegression(lr=trial.params["lr"])
    metrics = pbtune.lightning.fit(trial, model, datamodule=RegressionData())
    assert model.first_lr is not None
    return {**metrics, "lr_trained": model.first_lr}


class CopyAnother(pbtune.ExploitStrategy):
    """Copy the fittest other member whenever one can be copied.

    With 3 members on 2 workers that makes an exploit certain in any order of events: a
    worker claims the queued trial with the smallest end_step, so no member's second trial
    starts while a first trial waits; the second of the first trials to finish therefore
    sees a member that finished its first trial and is not at max_steps."""

    def select(self, finished: FrozenTrial, population: Sequence[FrozenTrial], mode: Any,
               rng: np.random.Generator) -> FrozenTrial:
        others = [t for t in population if t.member != finished.member]
        if not others:
            return finished
        return min(others, key=lambda t: (t.metrics or {})["val_loss"])

    def to_dict(self) -> dict[str, Any]:
        return {"type": f"{__name__}:CopyAnother"}


class HalveOrDouble(pbtune.ExploreStrategy):
    """A copied lr is halved (doubled near the lower bound): a child's lr always differs
    from its donor's."""

    def explore(self, params: Mapping[str, Any], space: pbtune.SearchSpace,
                rng: np.random.Generator) -> dict[str, Any]:
        low = space["lr"].low  # type: ignore[union-attr]
        lr = params["lr"] / 2 if params["lr"] / 2 >= low else params["lr"] * 2
        return {**params, "lr": lr}

    def to_dict(self) -> dict[str, Any]:
        return {"type": f"{__name__}:HalveOrDouble"}


def test_in_a_study_every_trial_trains_with_its_own_lr(tmp_path: Path) -> None:
    study = pbtune.create_study(
        "lightning", storage=f"sqlite:///{tmp_path / 'study.db'}",
        space={"lr": pbtune.Float(1e-4, 0.2, log=True)}, metric="val_loss", mode="min",
        population_size=3, steps_per_trial=3, max_steps=9, exploit=CopyAnother(),
        explore=HalveOrDouble(), checkpoint_root=tmp_path / "checkpoints", seed=0)
    study.optimize(train, workers=2, show_progress=False)

    trials = study.trials()
    assert study.state == pbtune.StudyState.COMPLETE
    complete = [t for t in trials if t.state == pbtune.TrialState.COMPLETE]
    for member in (0, 1, 2):  # every member trained to max_steps
        assert max(t.end_step for t in complete if t.member == member) == 9
    for t in complete:
        assert t.metrics is not None
        assert t.metrics["lr_trained"] == pytest.approx(t.params["lr"], rel=1e-12)
    by_id = {t.id: t for t in trials}
    exploits = [t for t in complete if t.parent_id is not None
                and by_id[t.parent_id].member != t.member]
    assert exploits  # each trained its own lr, not its donor's:
    assert all(t.params["lr"] != by_id[t.parent_id].params["lr"] for t in exploits)


def test_the_standalone_pytorch_lightning_package_works_too(tmp_path: Path) -> None:
    pl = pytest.importorskip("pytorch_lightning")  # not in the extra: `lightning` is

    class PlRegression(pl.LightningModule):  # type: ignore[misc]
        def __init__(self, lr: float) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.linear = torch.nn.Linear(3, 1)
            self.first_lr: float | None = None

        def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
            if self.first_lr is None:
                self.first_lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            x, y = batch
            return torch.nn.functional.mse_loss(self.linear(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    first = make_trial(tmp_path, 0, PARENT_LR, 0, 2)
    pbtune.lightning.fit(first, PlRegression(PARENT_LR), loaders()[0])
    child = make_trial(tmp_path, 1, CHILD_LR, 2, 4, member=1, parent=first)
    model = PlRegression(CHILD_LR)
    pbtune.lightning.fit(child, model, loaders()[0])
    assert model.first_lr == CHILD_LR and load_checkpoint(child)["global_step"] == 4


def test_the_example_study_trains_every_trial_with_its_own_lr_and_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/lightning_module.py end to end (SQLite, 2 worker processes)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples"))
    import lightning_module

    summary = lightning_module.main(["--storage", f"sqlite:///{tmp_path / 's.db'}",
                                     "--checkpoint-root", str(tmp_path / "ck"),
                                     "--population", "3", "--max-steps", "60"])
    study, best = summary["study"], summary["best"]
    trials = [t for t in study.trials() if t.state == pbtune.TrialState.COMPLETE]
    assert {t.member for t in trials if t.end_step == 60} == {0, 1, 2}
    for trial in trials:  # read in each trial's first training step
        assert trial.metrics["trained_lr"] == pytest.approx(trial.params["lr"], rel=1e-9)
    # The checkpoint is the model the metrics describe, loaded with load_from_checkpoint.
    assert summary["reloaded_val_loss"] == pytest.approx(best.metrics["val_loss"], rel=1e-5)
    # Warm starts lose nothing: the schedule replayed from scratch trains the same model.
    replayed = pbtune.replay(lightning_module.train, study.schedule(),
                             checkpoint_root=tmp_path / "replay", seed=study.config.seed)
    assert replayed.metrics["val_loss"] == pytest.approx(best.metrics["val_loss"], rel=1e-6)
