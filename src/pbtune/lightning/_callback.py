"""The callback that puts a trial's params into the restored training state.

Lightning restores a checkpoint inside ``Trainer.fit``: the weights, then the loops, the
optimizers and the LR schedulers, after ``configure_optimizers`` built them from the
module's hparams. The optimizer's state carries the lr (and momentum, weight decay, ...)
it trained with, and a scheduler's state its ``base_lrs``: after an exploit those are
the donor's, so a plain ``fit(ckpt_path=parent)`` trains the donor's params, not the
trial's. ``on_train_start`` is the first hook after all of that is restored and before
the first batch: there the guard checks where the restored loops stand, sets the
trial's params and checks that the optimizers hold them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from pbtune._errors import CheckpointError
from pbtune.torch import GroupKey, apply_params, check_params, report_applied
from pbtune.trial import Trial

if TYPE_CHECKING:
    import lightning.pytorch as pl

Unit = Literal["steps", "epochs"]
ParamMapping = Mapping[str, "str | GroupKey | None"]  # as pbtune.torch.apply_params takes

_log = logging.getLogger("pbtune.lightning")


def position(trainer: pl.Trainer, unit: Unit) -> int:
    """Where training stands, in the trial's unit: optimizer steps or finished epochs."""
    return int(trainer.global_step if unit == "steps" else trainer.current_epoch)


def set_hparams(params: Mapping[str, Any], holder: Any) -> dict[str, tuple[Any, Any]]:
    """Set each of ``params`` that ``holder.hparams`` (a LightningModule's or a
    LightningDataModule's, from ``save_hyperparameters``) has; return those that differed
    as ``{name: (old, new)}``."""
    hparams = getattr(holder, "hparams", None)
    if not isinstance(hparams, Mapping):
        return {}
    changed = {name: (hparams[name], value) for name, value in params.items()
               if name in hparams and hparams[name] != value}
    for name, (_, value) in changed.items():
        hparams[name] = value  # type: ignore[index]  # an AttributeDict
    return changed


def warn_changed_hparams(trial: Trial, holder: Any, changed: Mapping[str, tuple[Any, Any]]
                         ) -> None:
    if not changed:
        return
    pairs = ", ".join(f"{name}={old!r} -> {new!r}" for name, (old, new) in changed.items())
    _log.warning(
        "trial %d: %s was built with other hparams than the trial's params (%s); pbtune set "
        "them in its hparams, so configure_optimizers and the steps read the trial's, but "
        "what __init__ built from the old values (layer sizes, dropout) stays. Build it "
        "from trial.params, e.g. Model(**trial.params), not with load_from_checkpoint: "
        "pbtune.lightning.fit restores the parent's weights itself.",
        trial.id, type(holder).__qualname__, pairs,
    )


class TrialGuardHooks:
    """The hooks of pbtune's callback; `guard_class` mixes them into the Callback class of
    the model's Lightning package."""

    def __init__(self, trial: Trial, unit: Unit, mapping: ParamMapping | None) -> None:
        self.trial = trial
        self.unit = unit
        self.mapping = mapping
        self.in_effect: dict[str, Any] = {}
        self.validated_at: int | None = None  # global_step of the last validation

    @property
    def state_key(self) -> str:
        return "pbtune.TrialGuard"

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trial = self.trial
        at = position(trainer, self.unit)
        if at != trial.start_step:
            source = (f"the parent checkpoint in {str(trial.parent_checkpoint)!r}"
                      if trial.parent_checkpoint else "a new model (no parent checkpoint)")
            raise CheckpointError(
                f"trial {trial.id} starts at {self.unit[:-1]} {trial.start_step} "
                f"(unit={self.unit!r}), but {source} stands at {self.unit[:-1]} {at}. "
                "Count a study's steps in one unit in every trial (unit='steps': optimizer "
                "steps, trainer.global_step; unit='epochs': trainer.current_epoch), give "
                "each trial a new Trainer, and let nothing stop training before end_step."
            )
        for holder in (pl_module, getattr(trainer, "datamodule", None)):
            set_hparams(trial.params, holder)  # the restore may have brought others back
        optimizers = trainer.optimizers
        schedulers = [config.scheduler for config in trainer.lr_scheduler_configs]
        apply_params(trial.params, optimizers, scheduler=schedulers, mapping=self.mapping)
        self.in_effect = check_params(trial.params, optimizers, scheduler=schedulers,
                                      mapping=self.mapping)
        report_applied(trial, self.in_effect, optimizers, schedulers)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validated_at = trainer.global_step


@functools.cache
def guard_class(package: ModuleType) -> type[TrialGuardHooks]:
    """The callback class for ``package`` (``lightning.pytorch`` or ``pytorch_lightning``):
    `TrialGuardHooks` over that package's ``Callback``."""
    return type("TrialGuard", (TrialGuardHooks, package.Callback), {})
