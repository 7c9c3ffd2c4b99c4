"""`train`: one pbtune trial run by a Hugging Face `Trainer`."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers import Trainer

from pbtune._errors import CheckpointError, ConfigError
from pbtune.transformers._args import hushed, on_trainer, trial_args
from pbtune.transformers._callback import Mapped, TrialCallback, short_run
from pbtune.trial import Trial

TrainerFactory = Callable[[Trial], Trainer]
TrainerLike = Trainer | TrainerFactory

_in_use_lock = threading.Lock()
_in_use: dict[int, int] = {}  # id() of each Trainer training now -> its trial's id


def train(
    trial: Trial,
    trainer: TrainerLike,
    *,
    max_steps: int | None = None,
    mapping: Mapping[str, Mapped] | None = None,
    quiet: bool = True,
) -> dict[str, float]:
    """Train ``trial`` with a Hugging Face `Trainer`; return ``trainer.evaluate()``'s metrics.

    ``trainer`` is a `Trainer` with a ``model_init`` (as ``Trainer.hyperparameter_search``
    needs: each member's first trial starts from a fresh model), or a factory
    ``make_trainer(trial) -> Trainer`` (a module-level function, for worker processes).
    Each trial param that names a `TrainingArguments` field (``learning_rate``,
    ``weight_decay``, ``warmup_steps``, ``per_device_train_batch_size``, ``adam_beta1``,
    ``lr_scheduler_type``, ...) is set on the trial's copy of the args; the others are
    the factory's, or ``model_init(params)``'s where it takes one argument.

    The Trainer resumes from the parent trial's checkpoint (weights, optimizer, scheduler,
    RNG, trainer state), then the trial's params go into the restored optimizer and LR
    scheduler (which would otherwise train on with the parent's), are checked at the
    first step, and are reported as ``applied_<name>`` at ``start_step``. It trains from
    ``trial.start_step`` to ``trial.end_step`` (optimizer steps, HF's ``global_step``)
    of one run of ``max_steps`` steps (default: the args' own ``max_steps`` or epochs), so
    an LR schedule spans the whole study, not each trial; the checkpoint of
    ``end_step`` goes into ``trial.checkpoint_dir``. ``mapping`` adds trial params that go
    into param groups (see `pbtune.torch.apply_params`); ``quiet`` hushes the Trainer's
    printed logs and progress bars (False: as the args say).

    Example::

        def make_trainer(trial: pbtune.Trial) -> Trainer:
            args = TrainingArguments(output_dir="out", max_steps=1000, report_to="none")
            return Trainer(model=build_model(trial.seed), args=args,
                           train_dataset=train_set, eval_dataset=eval_set)

        def train(trial: pbtune.Trial) -> dict[str, float]:
            return pbtune.transformers.train(trial, make_trainer, max_steps=1000)
    """
    hf = _trainer_for(trial, trainer)
    with _one_trial(hf, trial, trainer):  # before reading args that another trial set
        return _train_one(hf, trial, max_steps, mapping, quiet)


def _train_one(hf: Trainer, trial: Trial, max_steps: int | None,
               mapping: Mapping[str, Mapped] | None, quiet: bool) -> dict[str, float]:
    if hf.eval_dataset is None:
        raise ConfigError("the Trainer has no eval_dataset: give it one, since pbtune "
                          "compares members by trainer.evaluate()'s metrics")
    resume = parent_folder(trial)
    callback = TrialCallback(hf, trial, mapping, max_steps)
    args = trial_args(hf.args, trial, max_steps)
    with on_trainer(hf, args, dict(trial.params)), hushed(hf, quiet):
        hf.add_callback(callback)
        try:
            hf.train(resume_from_checkpoint=None if resume is None else str(resume))
            metrics = hf.evaluate()
        finally:
            hf.remove_callback(callback)
    if hf.state.global_step != trial.end_step:
        raise ConfigError(_stopped_early(hf, trial, max_steps))
    return _floats(metrics)


@contextmanager
def _one_trial(hf: Trainer, trial: Trial, given: TrainerLike) -> Iterator[None]:
    """Refuse a Trainer that trains another trial now: the trial's args, ``model_init``
    and callbacks, set on the shared object, would mix the two trials."""
    with _in_use_lock:
        other = _in_use.get(id(hf))
        if other is None:
            _in_use[id(hf)] = trial.id
    if other is not None:
        made = "" if given is hf else f"the trainer factory {given!r} returned "
        raise ConfigError(
            f"{made}a Trainer object that trains trial {other} now, so trial {trial.id} "
            "cannot use it too (each trial changes its args, model_init and callbacks): "
            "a Trainer object runs one trial at a time (workers=1); to run trials side by "
            "side, pass a function make_trainer(trial) -> Trainer that builds a new Trainer "
            "for each trial (at module level, so that worker processes can import it)"
        )
    try:
        yield
    finally:
        with _in_use_lock:
            del _in_use[id(hf)]


def _stopped_early(hf: Trainer, trial: Trial, max_steps: int | None) -> str:
    """Why the Trainer stopped before the trial's end step, and what to do."""
    if hf.state.max_steps < trial.end_step:  # refused at the start: not seen here as a rule
        return short_run(hf.state.max_steps, trial, max_steps)
    return (f"the Trainer stopped at step {hf.state.global_step}, before trial {trial.id} "
            f"ends (step {trial.end_step}), in a run of {hf.state.max_steps} steps: a "
            "callback set control.should_training_stop; let pbtune end each trial at its "
            "end step")


def checkpoint_folder(trial_dir: Path | str, step: int) -> Path:
    """The Trainer's checkpoint folder of a trial that ended at ``step``
    (``<trial checkpoint>/checkpoint-<step>``): what ``from_pretrained`` loads.

    Example::

        best = study.best_trial
        model = AutoModelForSequenceClassification.from_pretrained(
            pbtune.transformers.checkpoint_folder(best.checkpoint, best.end_step))
    """
    return Path(trial_dir) / f"checkpoint-{step}"


def parent_folder(trial: Trial) -> Path | None:
    """The Trainer checkpoint this trial resumes from, or None for a first trial."""
    if trial.parent_checkpoint is None:
        return None
    folder = checkpoint_folder(trial.parent_checkpoint, trial.start_step)
    if not folder.is_dir():
        found = sorted(p.name for p in Path(trial.parent_checkpoint).iterdir())
        raise CheckpointError(
            f"trial {trial.id}'s parent checkpoint {str(trial.parent_checkpoint)!r} has no "
            f"Trainer checkpoint {folder.name!r} (it holds {found}): every trial of the "
            "study must be trained by pbtune.transformers.train"
        )
    return folder


def _trainer_for(trial: Trial, trainer: TrainerLike) -> Trainer:
    if isinstance(trainer, Trainer):
        if trainer.model_init is None:
            raise ConfigError(
                "the Trainer has no model_init, so a member's first trial would go on "
                "from whatever model the Trainer holds: build it as Trainer(model_init="
                "make_model, ...) (as Trainer.hyperparameter_search needs), or pass a "
                "function make_trainer(trial) -> Trainer instead"
            )
        return trainer
    if not callable(trainer):
        raise ConfigError(f"trainer must be a transformers.Trainer or a function "
                          f"make_trainer(trial) -> Trainer, got {trainer!r}")
    made = trainer(trial)
    if not isinstance(made, Trainer):
        raise ConfigError(f"the trainer factory {trainer!r} returned {made!r}, "
                          "not a transformers.Trainer")
    return made


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric metrics as floats (pbtune stores metrics as JSON numbers)."""
    out = {}
    for name, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            speed = name.endswith(("_runtime", "_per_second"))  # inf after a 0 s run
            if math.isfinite(value) or not speed:  # a NaN loss fails the trial, and says so
                out[name] = float(value)
    return out
