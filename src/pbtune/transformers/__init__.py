"""Hugging Face Transformers for pbtune: a `Trainer` run as PBT trials.

`train` runs one trial with a `transformers.Trainer`: it resumes from the parent trial's
checkpoint, puts the trial's params into the restored optimizer and LR scheduler (which
would otherwise train on with the parent's), checks them, and saves at the trial's end.
`hyperparameter_search` runs a whole study, as ``Trainer.hyperparameter_search`` does.

Install with ``pip install 'pbtune[transformers]'``; ``import pbtune`` alone never imports
transformers or torch.

Example::

    import pbtune
    import pbtune.transformers

    trainer = Trainer(model_init=make_model, args=TrainingArguments(max_steps=1000),
                      train_dataset=train_set, eval_dataset=eval_set)
    best = pbtune.transformers.hyperparameter_search(
        trainer, space={"learning_rate": pbtune.Float(1e-5, 1e-3, log=True)},
        metric="eval_loss", mode="min", population_size=4, steps_per_trial=100)
    best.hyperparameters, best.run_summary.schedule()
"""

from pbtune._errors import MissingExtraError

try:
    import accelerate as _accelerate  # noqa: F401  (the Trainer needs it)
    import torch as _torch  # noqa: F401
    import transformers as _transformers  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installation
    raise MissingExtraError(
        f"pbtune.transformers needs Transformers, PyTorch and Accelerate, which cannot be "
        f"imported ({error}): pip install 'pbtune[transformers]'"
    ) from error

from pbtune.transformers._callback import TRAINER_KEYS
from pbtune.transformers._search import hyperparameter_search
from pbtune.transformers._train import TrainerFactory, checkpoint_folder, train

__all__ = [
    "TRAINER_KEYS",
    "TrainerFactory",
    "checkpoint_folder",
    "hyperparameter_search",
    "train",
]
