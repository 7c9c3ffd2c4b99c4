"""`fit`: one trial of a LightningModule, warm-started from its parent's checkpoint."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pbtune._errors import ConfigError, TrialFailedError
from pbtune.lightning._callback import (
    ParamMapping,
    TrialGuardHooks,
    Unit,
    guard_class,
    position,
    set_hparams,
    warn_changed_hparams,
)
from pbtune.lightning._checkpoint import CHECKPOINT_FILE, checkpoint_file
from pbtune.lightning._package import package_of, quiet
from pbtune.trial import Trial

if TYPE_CHECKING:
    import lightning.pytorch as pl

QUIET_DEFAULTS: dict[str, Any] = {
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "logger": False,
    "enable_checkpointing": False,  # pbtune writes the trial's checkpoint itself
}
"""The Trainer arguments pbtune gives a Trainer it builds, unless ``trainer=`` says otherwise."""


def fit(
    trial: Trial,
    model: pl.LightningModule,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    datamodule: pl.LightningDataModule | None = None,
    *,
    unit: Unit = "steps",
    trainer: pl.Trainer | Mapping[str, Any] | None = None,
    mapping: ParamMapping | None = None,
) -> dict[str, float]:
    """Train ``model`` for one trial and return its metrics (``trainer.callback_metrics``).

    Trains from ``trial.start_step`` to ``trial.end_step`` counted in ``unit``:
    ``"steps"`` (optimizer steps, ``trainer.global_step``; with gradient accumulation one
    step is several batches) or ``"epochs"``. A child trial continues from the parent's
    checkpoint (weights, optimizer and scheduler state, loops) and then, after that
    restore, trains with its own params: pbtune sets them into the module's (and the
    datamodule's) ``hparams`` where those have the name, into every optimizer's param
    groups and into the LR schedulers' base lr (`pbtune.torch.apply_params`; ``mapping``
    as there), checks that the optimizers hold them (`pbtune.torch.ParamMismatchError`
    otherwise) and reports them at ``start_step``. A plain ``Trainer.fit(ckpt_path=...)``
    would train on with the donor's lr, from the donor's optimizer state.

    Build ``model`` (and the data) from ``trial.params``, new in each trial: a batch size
    or any other param outside the optimizer takes effect only that way. Validation
    runs once more at the end if it did not run at ``end_step``, so the metrics describe
    the model the trial ends with. The checkpoint is written as ``model.ckpt`` into
    ``trial.checkpoint_dir``.

    ``trainer``: None (pbtune builds a quiet Trainer: no progress bar, model summary,
    logger, ModelCheckpoint or INFO lines), a dict of Trainer arguments over those
    defaults, or a new ``Trainer`` of your own, used as it is; pbtune sets its
    ``max_steps``/``max_epochs``, which must be unset or the trial's.

    Example::

        def train(trial: pbtune.Trial) -> dict[str, float]:
            model = LitRegression(lr=trial.params["lr"])  # save_hyperparameters() inside
            data = RegressionData(batch_size=trial.params["batch_size"])
            return pbtune.lightning.fit(trial, model, datamodule=data,
                                        trainer={"accelerator": "cpu"})
    """
    if unit not in ("steps", "epochs"):
        raise ConfigError(f"unit must be 'steps' or 'epochs', got {unit!r}")
    package = package_of(model)
    if isinstance(train_dataloaders, package.LightningDataModule):  # Lightning allows this
        datamodule, train_dataloaders = train_dataloaders, None
    parent = checkpoint_file(trial.parent_checkpoint) if trial.parent_checkpoint else None
    for holder in (model, datamodule):  # before fit, for configure_optimizers
        warn_changed_hparams(trial, holder, set_hparams(trial.params, holder))
    guard = guard_class(package)(trial, unit, mapping)
    with quiet(package) if trainer is None or isinstance(trainer, Mapping) else _nothing():
        run = _trainer(package, trial, unit, trainer, guard)
        run.fit(model, train_dataloaders, val_dataloaders, datamodule, ckpt_path=parent)
        _check_reached(trial, unit, run)
        run.save_checkpoint(trial.checkpoint_dir / CHECKPOINT_FILE, weights_only=False)
        metrics = _floats(run.callback_metrics)
        if run.enable_validation and guard.validated_at != run.global_step:
            data = ({"dataloaders": val_dataloaders} if val_dataloaders is not None
                    else {"datamodule": datamodule} if datamodule is not None else {})
            run.validate(model, verbose=False, **data)
            metrics.update(_floats(run.callback_metrics))
    return metrics


def _nothing() -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()


def _limits(trial: Trial, unit: Unit) -> dict[str, int]:
    if unit == "steps":
        return {"max_steps": trial.end_step, "max_epochs": -1}
    return {"max_epochs": trial.end_step, "max_steps": -1}


def _trainer(package: ModuleType, trial: Trial, unit: Unit,
             given: pl.Trainer | Mapping[str, Any] | None, guard: TrialGuardHooks
             ) -> pl.Trainer:
    """A Trainer that stops at the trial's end, with pbtune's callback in it."""
    limits = _limits(trial, unit)
    if given is None or isinstance(given, Mapping):
        arguments = {**QUIET_DEFAULTS, **(given or {})}
        _check_limits(trial, unit, {name: arguments.get(name) for name in _LIMIT_NAMES},
                      "trainer={...}")
        callbacks = arguments.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]
        arguments.update(limits, callbacks=[*callbacks, guard])
        made: pl.Trainer = package.Trainer(**arguments)
        return made
    if not _is_trainer(given, package):
        raise ConfigError(
            f"trainer= takes a {package.__name__}.Trainer (of the model's Lightning), a dict "
            f"of Trainer arguments or None, got {type(given).__qualname__}"
        )
    if given.state.status.value != "initializing":
        raise ConfigError(
            "the Trainer given to pbtune.lightning.fit was used before: build a new Trainer "
            "in the training function for each trial (or pass its arguments as a dict)"
        )
    _check_limits(trial, unit, {name: getattr(given, name) for name in _LIMIT_NAMES},
                  "Trainer(...)")
    given.fit_loop.max_epochs = limits["max_epochs"]
    given.fit_loop.epoch_loop.max_steps = limits["max_steps"]
    given.callbacks.append(guard)  # type: ignore[attr-defined, unused-ignore]  # set in __init__
    return given


def _is_trainer(obj: object, package: ModuleType) -> bool:
    # Not an isinstance in `_trainer`: with the package's Trainer typed Any, it would make
    # the checked Trainer Any too.
    return isinstance(obj, package.Trainer)


_LIMIT_NAMES = ("max_steps", "max_epochs", "min_steps", "min_epochs")
_UNSET: dict[str, tuple[Any, ...]] = {
    "max_steps": (None, -1), "max_epochs": (None, -1), "min_steps": (None, 0),
    "min_epochs": (None, 0),
}


def _check_limits(trial: Trial, unit: Unit, given: Mapping[str, Any], where: str) -> None:
    """Refuse Trainer limits that would stop training elsewhere than the trial's end."""
    mine = "max_steps" if unit == "steps" else "max_epochs"
    minimum = "min_steps" if unit == "steps" else "min_epochs"
    wrong = {name: value for name, value in given.items() if value not in _UNSET[name]
             and not (name == mine and value == trial.end_step)
             and not (name == minimum and value <= trial.end_step)}
    if wrong:
        settings = ", ".join(f"{name}={value!r}" for name, value in wrong.items())
        raise ConfigError(
            f"{where} sets {settings}, but trial {trial.id} trains from {unit[:-1]} "
            f"{trial.start_step} to {trial.end_step} (unit={unit!r}) and pbtune stops it "
            f"there ({mine}={trial.end_step}). Leave max_steps and max_epochs out of the "
            "Trainer: the study's steps_per_trial and max_steps decide how long each trial "
            "and the whole run train."
        )


def _check_reached(trial: Trial, unit: Unit, run: pl.Trainer) -> None:
    reached = position(run, unit)
    if reached != trial.end_step:
        raise TrialFailedError(
            f"trial {trial.id} stopped at {unit[:-1]} {reached}, not at its end_step "
            f"{trial.end_step}: something stopped training early (an EarlyStopping "
            "callback, max_time, trainer.should_stop, or limit_train_batches=0). Its "
            "checkpoint would not be where the next trial starts: remove the early stop "
            "from the Trainer (pbtune's exploit replaces bad members instead)."
        )


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar metrics as floats (tensors of one element, numbers)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if hasattr(value, "numel"):
            if value.numel() == 1:
                out[name] = float(value.item())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out
