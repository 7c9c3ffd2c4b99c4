"""`hyperparameter_search`: a PBT study of a Hugging Face `Trainer`, shaped like
``Trainer.hyperparameter_search``."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import Trainer
from transformers.trainer_utils import BestRun

from pbtune._errors import ConfigError
from pbtune.space import Param, SearchSpace
from pbtune.storages import Storage
from pbtune.strategies import Mode
from pbtune.study import create_study
from pbtune.transformers._callback import Mapped
from pbtune.transformers._train import TrainerLike, train


def hyperparameter_search(
    trainer: TrainerLike,
    *,
    space: Mapping[str, Param] | SearchSpace,
    metric: str | None = "eval_loss",
    mode: Mode = "min",
    population_size: int = 4,
    steps_per_trial: int = 100,
    max_steps: int | None = None,
    storage: str | Storage | None = None,
    name: str = "hyperparameter-search",
    workers: int = 1,
    backend: str | None = None,
    timeout: float | None = None,
    mapping: Mapping[str, Mapped] | None = None,
    quiet: bool = True,
    **study_options: Any,
) -> BestRun:
    """Search ``space`` by Population Based Training of ``trainer``; return HF's `BestRun`:
    ``run_id`` (the best trial's id), ``objective`` (its fitness), ``hyperparameters``
    (its params, those of the schedule's last segment) and ``run_summary`` (the
    `pbtune.Study`: ``study.schedule()`` is the whole schedule, ``study.best_trial``
    its trial and checkpoint).

    As for ``Trainer.hyperparameter_search``, ``trainer`` needs a ``model_init``; or pass a
    factory ``make_trainer(trial) -> Trainer`` (see `pbtune.transformers.train`). A `Trainer`
    object runs in this process, one trial at a time (``workers=1``, the thread backend);
    several workers need a module-level factory (worker processes import it) and a
    database ``storage`` (``"sqlite:///search.db"``). ``population_size`` members each
    train ``max_steps`` optimizer steps (default: the Trainer's ``args.max_steps``; a
    factory needs ``max_steps=``) in trials of ``steps_per_trial``; ``metric`` / ``mode``
    (or ``fitness=``) compare them. Checkpoints go under the Trainer's ``output_dir`` (or
    ``checkpoint_root=``). Other keywords go to `pbtune.create_study` (``exploit``,
    ``explore``, ``seed``, ``load_if_exists``, ``stop``, ...).

    Example::

        trainer = Trainer(model_init=make_model, args=args, train_dataset=train_set,
                          eval_dataset=eval_set)
        best = pbtune.transformers.hyperparameter_search(
            trainer, space={"learning_rate": pbtune.Float(1e-5, 1e-3, log=True)},
            population_size=4, steps_per_trial=100, max_steps=1000)
        print(best.hyperparameters, best.run_summary.schedule())
    """
    steps = _max_steps(trainer, max_steps)
    if isinstance(trainer, Trainer):
        _check_one_process(trainer, workers, backend)
        backend = "thread"
        if trainer.args.output_dir:  # where HF's own search puts its runs
            study_options.setdefault("checkpoint_root", Path(trainer.args.output_dir))
    elif not callable(trainer):
        raise ConfigError(f"trainer must be a transformers.Trainer or a function "
                          f"make_trainer(trial) -> Trainer, got {trainer!r}")
    if "fitness" in study_options or "objectives" in study_options:
        metric = None
    study = create_study(
        name, space=space, storage=storage, metric=metric, mode=mode,
        population_size=population_size, steps_per_trial=steps_per_trial, max_steps=steps,
        **study_options)
    fn = functools.partial(train, trainer=trainer, max_steps=steps, mapping=mapping,
                           quiet=quiet)
    study.optimize(fn, workers=workers, backend=backend, timeout=timeout)
    best = study.best_trial
    return BestRun(run_id=str(best.id), objective=study.best_value,
                   hyperparameters=dict(best.params), run_summary=study)


def _max_steps(trainer: TrainerLike, max_steps: int | None) -> int:
    if max_steps is not None:
        return max_steps
    if isinstance(trainer, Trainer):
        if trainer.args.max_steps > 0:
            return int(trainer.args.max_steps)
        where = ", or build the Trainer with TrainingArguments(max_steps=...)"
    else:
        where = ("; a factory builds its Trainers as trials run, after the study is made, "
                 "so their TrainingArguments cannot size it")
    raise ConfigError(
        "pass max_steps= (the optimizer steps each member trains, the length of the whole "
        f"run){where}"
    )


def _check_one_process(trainer: Trainer, workers: int, backend: str | None) -> None:
    if trainer.model_init is None:
        raise ConfigError(
            "to search hyperparameters the Trainer needs a model_init, so that each member "
            "starts from a fresh model: Trainer(model_init=make_model, args=..., ...) (as "
            "Trainer.hyperparameter_search needs)"
        )
    if workers != 1 or backend not in (None, "thread"):
        raise ConfigError(
            f"a Trainer object runs its trials in this process, one at a time (workers=1), "
            f"not workers={workers!r}, backend={backend!r}: for several workers pass a "
            "module-level function make_trainer(trial) -> Trainer instead of the Trainer, "
            "with a database storage (storage='sqlite:///search.db')"
        )
