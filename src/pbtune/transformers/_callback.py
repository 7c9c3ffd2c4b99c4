"""The `TrainerCallback` that makes one Hugging Face training run a pbtune trial.

``Trainer.train(resume_from_checkpoint=...)`` restores the parent's optimizer and LR
scheduler, and with them the parent's learning rate, weight decay, betas and epsilon (an
optimizer's ``state_dict`` holds its param groups; a scheduler's holds its ``base_lrs``),
and its ``trainer_state.json`` brings back the parent's logging, eval and save intervals.
``on_train_begin`` is the first moment after that restore (the Trainer calls it after
``_load_optimizer_and_scheduler``): there the trial's params go into the optimizer and the
scheduler, and are checked. The callback also ends the run at the trial's ``end_step`` and
asks the Trainer to save its checkpoint there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from pbtune._errors import CheckpointError, ConfigError
from pbtune.torch import GroupKey, apply_params, check_params, report_applied
from pbtune.trial import Trial

Mapped = str | GroupKey | None
"""Where a trial param goes in param groups (see `pbtune.torch.apply_params`)."""

TRAINER_KEYS: Mapping[str, Mapped] = {
    "learning_rate": GroupKey("lr"),
    "adam_beta1": GroupKey("betas", 0),
    "adam_beta2": GroupKey("betas", 1),
    "adam_epsilon": GroupKey("eps"),
}
"""The `TrainingArguments` fields that live in the optimizer's param groups, beside
``weight_decay`` (which goes only to the groups of parameters the Trainer decays)."""


class TrialCallback(TrainerCallback):
    """Applies ``trial.params`` to the restored optimizer and scheduler, checks them at
    the first step, and stops and saves at ``trial.end_step`` (refuses a run of fewer
    steps, which ``max_steps``, given to `train`, or the args set). ``applied`` holds what
    the optimizer trains with, read back after the params went in."""

    def __init__(self, trainer: Trainer, trial: Trial,
                 mapping: Mapping[str, Mapped] | None = None,
                 max_steps: int | None = None) -> None:
        self.trainer = trainer
        self.trial = trial
        self.max_steps = max_steps  # as given to pbtune.transformers.train
        self.user_mapping = dict(mapping or {})
        self.mapping: dict[str, Mapped] = {}
        self.applied: dict[str, Any] = {}

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **kwargs: Any) -> None:
        trial = self.trial
        if state.global_step != trial.start_step:
            raise CheckpointError(
                f"trial {trial.id} starts at step {trial.start_step}, but the Trainer resumed "
                f"at step {state.global_step}: its parent's checkpoint was not written by "
                "pbtune.transformers.train for this study"
            )
        if state.max_steps < trial.end_step:
            raise ConfigError(short_run(state.max_steps, trial, self.max_steps))
        # trainer_state.json carries the parent's intervals and its best checkpoint (a
        # path in the parent's folder, which HF would otherwise keep or delete by).
        _intervals(args, state)
        state.best_model_checkpoint = None
        scheduler = kwargs["lr_scheduler"]
        optimizer = _scheduled(kwargs["optimizer"], scheduler)
        self.mapping = {**TRAINER_KEYS, "weight_decay": self._decay_key(kwargs["model"]),
                        **self.user_mapping}
        apply_params(trial.params, optimizer, scheduler=scheduler, mapping=self.mapping)
        _follow_lambdas(scheduler)
        self.applied = check_params(trial.params, optimizer, scheduler=scheduler,
                                    mapping=self.mapping)
        report_applied(trial, self.applied, optimizer, scheduler)

    def on_step_begin(self, args: TrainingArguments, state: TrainerState,
                      control: TrainerControl, **kwargs: Any) -> None:
        if state.global_step == self.trial.start_step:  # what the first step trains with
            scheduler = kwargs["lr_scheduler"]
            check_params(self.trial.params, _scheduled(kwargs["optimizer"], scheduler),
                         scheduler=scheduler, mapping=self.mapping)

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kwargs: Any) -> None:
        if state.global_step >= self.trial.end_step:
            control.should_training_stop = True
            control.should_save = True

    def _decay_key(self, model: torch.nn.Module) -> GroupKey:
        """``weight_decay`` goes to the param groups that hold parameters the Trainer
        decays (not biases and norms: its no-decay group keeps 0). Chosen by parameter,
        not by value, since a parent trained with weight decay 0 has 0 in both groups."""
        decayed = set(self.trainer.get_decay_parameter_names(model))
        ids = {id(p) for name, p in model.named_parameters() if name in decayed}
        return GroupKey("weight_decay",
                        where=lambda group: any(id(p) in ids for p in group["params"]))


def _scheduled(optimizer: Any, scheduler: Any) -> Any:
    """The optimizer object that ``scheduler`` holds, where it has the same param groups
    as ``optimizer``. Transformers 4 (and ``Trainer(optimizers=(opt, sched))``) make the
    scheduler on the optimizer that Accelerate then wraps, so the callback gets the
    wrapper and the scheduler holds the inner one; the guard pairs a scheduler with its
    optimizer by identity."""
    held = getattr(scheduler, "optimizer", None)
    if held is not None and held.param_groups is optimizer.param_groups:
        return held
    return optimizer


def _intervals(args: TrainingArguments, state: TrainerState) -> None:
    """The logging, eval and save intervals of this trial's args (a fraction below 1 is
    of the run's steps), as the Trainer sets them when it does not resume."""
    for kind in ("logging", "eval", "save"):
        steps = getattr(args, f"{kind}_steps", None)
        if steps is not None:
            setattr(state, f"{kind}_steps",
                    math.ceil(state.max_steps * steps) if steps < 1 else steps)


def _follow_lambdas(scheduler: Any) -> None:
    """Set the learning rate of a `LambdaLR` (the Trainer's linear, cosine, constant and
    warmup schedules) to what this trial's schedule gives at the restored position:
    base lr × lambda(step). The restored lr followed the parent's schedule, whose warmup
    or shape may differ from this trial's (``warmup_steps`` or ``lr_scheduler_type`` as
    a trial param); the parent's lambdas are not in its checkpoint, only its position."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        return
    groups = scheduler.optimizer.param_groups
    for group, base, fn in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        group["lr"] = base * fn(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]  # what get_last_lr() answers


def short_run(run_steps: int, trial: Trial, max_steps: int | None) -> str:
    """Why a run of ``run_steps`` cannot train ``trial``, and where to make it as long as
    the study: where `trial_args` reads its length (``max_steps`` given to `train`, else
    the Trainer's args: with a factory, those of each Trainer it builds)."""
    short = (f"the Trainer's run ends at step {run_steps}, before trial {trial.id} ends "
             f"(step {trial.end_step})")
    if max_steps is not None:
        return (f"{short}: pbtune.transformers.train was given max_steps={max_steps}; pass "
                "the study's max_steps")
    return (f"{short}: pass max_steps=<the study's max_steps> to pbtune.transformers.train, "
            "or make the Trainer (with a factory, each Trainer it builds) with "
            "TrainingArguments(max_steps=<the study's max_steps>)")
