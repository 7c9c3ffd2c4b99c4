"""A trial's `TrainingArguments` (the user's, with the trial's params and pbtune's
checkpointing), put on a Trainer for one trial and taken off after; and a quiet trial."""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

from pbtune._errors import ConfigError
from pbtune.trial import Trial

PBTUNE_SETS = {
    "output_dir": "the trial's checkpoint_dir",
    "max_steps": "the study's max_steps",
    "save_strategy": "'no': the trial's checkpoint is saved at its end_step only",
    "save_steps": "the trial's checkpoint is saved at its end_step only",
    "save_total_limit": "None: a trial's folder holds one checkpoint",
    "load_best_model_at_end": "False: PBT picks which checkpoint goes on",
    "push_to_hub": "False: push the best trial's checkpoint yourself",
    "resume_from_checkpoint": "the parent trial's checkpoint",
}
"""The `TrainingArguments` fields pbtune sets for every trial, and to what."""


def trial_args(args: TrainingArguments, trial: Trial, max_steps: int | None) -> TrainingArguments:
    """A copy of ``args`` with each trial param that names a `TrainingArguments` field
    (others are left to the user's ``model_init`` or factory) and pbtune's settings."""
    fields = {field.name for field in dataclasses.fields(args)}
    if "per_device_train_batch_size" in trial.params and args.auto_find_batch_size:
        raise ConfigError(
            "per_device_train_batch_size is a trial param, but TrainingArguments("
            "auto_find_batch_size=True) resumes each trial with its parent's batch size: "
            "set auto_find_batch_size=False"
        )
    new = copy.copy(args)
    for name, value in trial.params.items():
        if name in PBTUNE_SETS:
            raise ConfigError(
                f"the trial param {name!r} names a TrainingArguments field that pbtune sets "
                f"for every trial ({PBTUNE_SETS[name]}): remove it from the space"
            )
        if name in fields:
            setattr(new, name, _cast(name, getattr(args, name), value))
    new.output_dir = str(trial.checkpoint_dir)
    if max_steps is not None:
        new.max_steps = max_steps
    new.save_strategy = _cast("save_strategy", args.save_strategy, "no")
    new.save_total_limit = None
    new.load_best_model_at_end = False
    new.push_to_hub = False
    return new


def _cast(name: str, old: Any, value: Any) -> Any:
    """``value`` as the field's type, where that is an enum (``lr_scheduler_type``); a
    number stays as it is (``warmup_steps`` takes a step count or a ratio)."""
    if not isinstance(old, enum.Enum) or isinstance(value, type(old)):
        return value
    try:
        return type(old)(value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in type(old))
        raise ConfigError(f"the trial param {name!r} is {value!r}; TrainingArguments.{name} "
                          f"takes one of {choices}: change the space") from None


@contextmanager
def on_trainer(trainer: Trainer, args: TrainingArguments, params: dict[str, Any]
               ) -> Iterator[None]:
    """Train ``trainer`` with ``args`` (and ``model_init(params)`` where the user's
    ``model_init`` takes one argument, as HF's Ray Tune search passes its config),
    then give it back its own."""
    own_args, own_init = trainer.args, trainer.model_init
    _set_args(trainer, args)
    if own_init is not None and _takes_one(own_init):
        trainer.model_init = functools.partial(own_init, params)
    try:
        yield
    finally:
        trainer.model_init = own_init
        _set_args(trainer, own_args)


def _set_args(trainer: Trainer, args: TrainingArguments) -> None:
    # What Trainer._hp_search_setup does after changing args for a search trial: the
    # batch size is cached at __init__, and the accelerator is made from the args.
    trainer.args = args
    trainer._train_batch_size = args.train_batch_size
    trainer.create_accelerator_and_postprocess()


def _takes_one(fn: Callable[..., Any]) -> bool:
    from transformers.trainer_utils import number_of_arguments

    return bool(number_of_arguments(fn) == 1)


_quiet_lock = threading.Lock()
_quiet_count = 0
_loud: tuple[int, bool] = (logging.WARNING, True)


@contextmanager
def hushed(trainer: Trainer, enabled: bool) -> Iterator[None]:
    """Without the Trainer's printed logs and progress bars, and with Transformers'
    logger at ERROR (unless the user set ``log_level``), while a trial runs."""
    if not enabled:
        yield
        return
    removed = [trainer.pop_callback(kind) for kind in (PrinterCallback, ProgressCallback)]
    level = trainer.args.log_level == "passive"
    _hush(+1, level)
    try:
        yield
    finally:
        _hush(-1, level)
        for callback in removed:
            if callback is not None:
                trainer.add_callback(callback)


def _hush(change: int, level: bool) -> None:
    """Counted, so that trials running in threads side by side leave it as it was."""
    global _quiet_count, _loud
    with _quiet_lock:
        if change > 0 and _quiet_count == 0:
            _loud = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
            hf_logging.disable_progress_bar()
            if level:
                hf_logging.set_verbosity_error()
        _quiet_count += change
        if change < 0 and _quiet_count == 0:
            hf_logging.set_verbosity(_loud[0])
            if _loud[1]:
                hf_logging.enable_progress_bar()
