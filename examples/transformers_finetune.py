"""Population Based Training of a Hugging Face `Trainer`: a tiny BERT, built from a config
(no download), learns a synthetic classification task on CPU in seconds.

The script is what a Transformers user writes for ``Trainer.hyperparameter_search``: a
``model_init``, `TrainingArguments`, datasets and ``compute_metrics``; then
`pbtune.transformers.hyperparameter_search` runs PBT on it. A population of 4 members
trains the same linear-decay schedule of ``--max-steps`` optimizer steps; every
``--steps-per-trial`` steps each member is compared with another, and a weaker one goes on
from the stronger one's checkpoint (weights, optimizer, scheduler) with a perturbed
learning rate and weight decay, which pbtune puts into the restored optimizer and scheduler.

The task: a sequence of 8 tokens (of 50) is labelled 1 when its first token is one of
the upper 25.

Run it::

    python examples/transformers_finetune.py            # in memory, checkpoints in ./hf_pbt
    python examples/transformers_finetune.py --storage sqlite:///hf.db   # a durable study
    python examples/transformers_finetune.py --storage sqlite:///hf.db --workers 2

Needs ``pip install 'pbtune[transformers]'`` (PyTorch, Transformers, Accelerate).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is built locally

import numpy as np
import torch
import transformers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    EvalPrediction,
    Trainer,
    TrainingArguments,
)

import pbtune
import pbtune.transformers

VOCAB, LENGTH = 50, 8
torch.set_num_threads(1)  # a model this small is fastest on one core (also in workers)
SPACE = {
    "learning_rate": pbtune.Float(1e-4, 5e-2, log=True),
    "weight_decay": pbtune.Float(1e-4, 1e-1, log=True),
}


def make_model() -> BertForSequenceClassification:
    """The model every member's first trial starts from (HF seeds it with args.seed)."""
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=LENGTH)
    return BertForSequenceClassification(config)


def make_dataset(size: int, seed: int) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (size, LENGTH), generator=generator)
    return [{"input_ids": row, "labels": int(row[0] >= VOCAB // 2)} for row in ids]


def accuracy(prediction: EvalPrediction) -> dict[str, float]:
    labels = np.asarray(prediction.label_ids)
    return {"accuracy": float((np.argmax(prediction.predictions, -1) == labels).mean())}


def make_trainer(trial: pbtune.Trial | None = None, *, output_dir: str = "hf_pbt",
                 seed: int = 0) -> Trainer:
    """The Trainer to search: what one writes for ``Trainer.hyperparameter_search``.
    pbtune sets each trial's params, output_dir, max_steps and checkpointing on its args.
    As ``make_trainer(trial)`` it is also the factory that worker processes call (they
    import this module to find it): the trial's folder is its output_dir (the Trainer
    creates that folder), and the study's seed its seed."""
    if trial is not None:
        output_dir, seed = str(trial.checkpoint_dir), trial.seed
    args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=16, lr_scheduler_type="linear",
        seed=seed, report_to="none", disable_tqdm=True, use_cpu=True)
    return Trainer(model_init=make_model, args=args, train_dataset=make_dataset(512, 0),
                   eval_dataset=make_dataset(256, 1), compute_metrics=accuracy)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=None, help="a database URL (default: in memory)")
    parser.add_argument("--output-dir", default="hf_pbt", help="where checkpoints go")
    parser.add_argument("--workers", type=int, default=1,
                        help="more than 1: worker processes (needs --storage)")
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--steps-per-trial", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the search, reload the best checkpoint, and return a summary."""
    options = parse_args(argv)
    transformers.logging.disable_progress_bar()  # from_pretrained's, below
    trainer = make_trainer(output_dir=options.output_dir, seed=options.seed)
    best = pbtune.transformers.hyperparameter_search(
        # One worker trains the Trainer object in this process; several call the
        # module-level factory make_trainer(trial) in worker processes.
        trainer if options.workers == 1 else make_trainer,
        space=SPACE, metric="eval_loss", mode="min", population_size=options.population,
        steps_per_trial=options.steps_per_trial, max_steps=options.max_steps,
        storage=options.storage, workers=options.workers, seed=options.seed,
        checkpoint_root=options.output_dir, name="transformers-finetune",
        load_if_exists=True)
    study: pbtune.Study = best.run_summary
    trial = study.best_trial
    assert trial.metrics is not None and trial.checkpoint is not None
    say = (lambda *_: None) if options.quiet else print
    say(f"best run {best.run_id}: eval_loss {best.objective:.4f}, eval_accuracy "
        f"{trial.metrics['eval_accuracy']:.4f}, params {best.hyperparameters}")
    say("its schedule (the params each segment of its lineage trained with):")
    for segment in study.schedule(trial.id):
        lr, wd = segment.params["learning_rate"], segment.params["weight_decay"]
        say(f"  steps {segment.start_step:3d}-{segment.end_step:3d}: "
            f"learning_rate {lr:.2e}, weight_decay {wd:.2e}")

    # The best trial's checkpoint is a Trainer checkpoint: from_pretrained loads it.
    folder = pbtune.transformers.checkpoint_folder(trial.checkpoint, trial.end_step)
    model = BertForSequenceClassification.from_pretrained(folder)
    reloader = Trainer(model=model, args=trainer.args, eval_dataset=trainer.eval_dataset,
                       compute_metrics=accuracy)
    reloader.pop_callback(transformers.PrinterCallback)  # we print, below
    reloaded = reloader.evaluate()
    say(f"reloaded from {folder}: eval_loss {reloaded['eval_loss']:.4f}, "
        f"eval_accuracy {reloaded['eval_accuracy']:.4f}")
    return {
        "best_loss": best.objective,
        "best_accuracy": trial.metrics["eval_accuracy"],
        "reloaded_loss": reloaded["eval_loss"],
        "reloaded_accuracy": reloaded["eval_accuracy"],
        "exploits": sum(t.decision == "exploit" for t in study.trials()),
        "trials": len(study.trials()),
        "schedule": [s.to_dict() for s in study.schedule(trial.id)],
    }


if __name__ == "__main__":
    main()
