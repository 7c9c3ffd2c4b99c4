"""pbtune.transformers: a Hugging Face Trainer run as PBT trials trains with each trial's
params, read from inside training (the optimizer's param groups and the LR scheduler's
base learning rates at the trial's first step), not with those its parent's checkpoint
brings back; and a whole search runs end to end."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from integrations.extras import require

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here downloads; make sure of it
transformers = require("transformers", "transformers")
require("accelerate", "transformers")

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import BestRun  # noqa: E402

import pbtune  # noqa: E402
import pbtune.transformers  # noqa: E402

PARENT_LR, CHILD_LR = 1e-3, 3e-2
MAX_STEPS = 16
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Models this small train fastest on one core (torch's threads spin on a busy one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model() -> BertForSequenceClassification:
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=16)
    return BertForSequenceClassification(config)


def dataset(n: int, seed: int) -> list[dict[str, Any]]:
    """Sequences whose label is whether token 0 is above 25: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (n, 8), generator=g)
    return [{"input_ids": row, "labels": int(row[0] > 25)} for row in ids]


class Recorder(TrainerCallback):
    """What the optimizer steps with: each step's lr, base lr and weight decay, by the
    trial folder (the Trainer's output_dir) it trained for."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        optimizer, scheduler = kwargs["optimizer"], kwargs["lr_scheduler"]
        self.steps.append({
            "folder": Path(args.output_dir).name,
            "step": state.global_step,
            "lr": [g["lr"] for g in optimizer.param_groups],
            "base_lrs": list(scheduler.base_lrs),
            "weight_decay": [g["weight_decay"] for g in optimizer.param_groups],
            "betas": [g["betas"] for g in optimizer.param_groups],
            "logging_steps": state.logging_steps,
            "weight": kwargs["model"].classifier.weight.detach().clone(),
        })

    def at(self, folder: str, step: int) -> dict[str, Any]:
        [record] = [r for r in self.steps if r["folder"].startswith(folder) and r["step"] == step]
        return record


def make_args(out: Path, **overrides: Any) -> TrainingArguments:
    settings: dict[str, Any] = dict(
        output_dir=str(out), max_steps=MAX_STEPS, learning_rate=PARENT_LR,
        per_device_train_batch_size=8, lr_scheduler_type="constant", report_to="none",
        use_cpu=True, seed=0)
    return TrainingArguments(**{**settings, **overrides})


def make_trainer(out: Path, recorder: Recorder, **overrides: Any) -> Trainer:
    return Trainer(model_init=make_model, args=make_args(out, **overrides),
                   train_dataset=dataset(64, 0), eval_dataset=dataset(32, 1),
                   callbacks=[recorder])


def make_trial(root: Path, id: int, params: dict[str, Any], start: int, end: int,
               parent: Path | None = None) -> pbtune.Trial:
    folder = root / f"trial-{id:06d}"
    folder.mkdir(parents=True)
    return pbtune.Trial(id=id, member=0, generation=int(parent is not None), params=params,
                        start_step=start, end_step=end, parent_checkpoint=parent,
                        checkpoint_dir=folder, study_name="hf")


def parent_then_child(tmp_path: Path, scheduler: str, child: dict[str, Any],
                      parent: dict[str, Any] | None = None
                      ) -> tuple[Recorder, pbtune.Trial, pbtune.Trial]:
    recorder = Recorder()
    trainer = make_trainer(tmp_path / "out", recorder, lr_scheduler_type=scheduler)
    first = make_trial(tmp_path, 0, parent or {"learning_rate": PARENT_LR}, 0, 4)
    pbtune.transformers.train(first, trainer)
    second = make_trial(tmp_path, 1, child, 4, 8, parent=first.checkpoint_dir)
    pbtune.transformers.train(second, trainer)
    return recorder, first, second


def test_the_child_trains_with_its_own_lr_under_a_constant_schedule(tmp_path: Path) -> None:
    recorder, parent, child = parent_then_child(tmp_path, "constant",
                                                {"learning_rate": CHILD_LR})
    assert recorder.at("trial-000000", 0)["lr"] == [PARENT_LR, PARENT_LR]
    first_step = recorder.at("trial-000001", 4)
    assert first_step["lr"] == [CHILD_LR, CHILD_LR]
    assert first_step["base_lrs"] == [CHILD_LR, CHILD_LR]
    # It went on from the weights the parent saved, not from a fresh model.
    saved = load_file(parent.checkpoint_dir / "checkpoint-4" / "model.safetensors")
    assert torch.equal(first_step["weight"], saved["classifier.weight"])
    assert not torch.equal(first_step["weight"], recorder.at("trial-000000", 0)["weight"])
    assert (child.checkpoint_dir / "checkpoint-8" / "optimizer.pt").is_file()
    assert sorted(p.name for p in child.checkpoint_dir.iterdir()) == ["checkpoint-8"]


def test_the_child_is_its_own_lr_times_its_own_schedule_under_linear(tmp_path: Path) -> None:
    child = {"learning_rate": CHILD_LR, "warmup_steps": 8}  # the parent had no warmup
    recorder, _, _ = parent_then_child(tmp_path, "linear", child)
    parent_step = recorder.at("trial-000000", 2)
    assert parent_step["base_lrs"] == [PARENT_LR] * 2
    assert parent_step["lr"] == pytest.approx([PARENT_LR * (MAX_STEPS - 2) / MAX_STEPS] * 2)
    first_step = recorder.at("trial-000001", 4)
    assert first_step["base_lrs"] == [CHILD_LR, CHILD_LR]
    assert first_step["lr"] == pytest.approx([CHILD_LR * 4 / 8] * 2)  # warmup: 4 of 8 steps
    assert recorder.at("trial-000001", 5)["lr"] == pytest.approx([CHILD_LR * 5 / 8] * 2)


def test_weight_decay_and_betas_go_where_the_trainer_puts_them(tmp_path: Path) -> None:
    parent = {"learning_rate": PARENT_LR, "weight_decay": 0.0, "adam_beta1": 0.9,
              "logging_steps": 1}
    child = {"learning_rate": CHILD_LR, "weight_decay": 0.1, "adam_beta1": 0.8,
             "logging_steps": 3}
    recorder, _, _ = parent_then_child(tmp_path, "constant", child, parent=parent)
    assert recorder.at("trial-000000", 0)["weight_decay"] == [0.0, 0.0]
    first_step = recorder.at("trial-000001", 4)
    assert first_step["weight_decay"] == [0.1, 0.0]  # biases and LayerNorms: no decay
    assert [b[0] for b in first_step["betas"]] == [0.8, 0.8]
    # trainer_state.json brought back the parent's interval; the trial's own is in force.
    assert first_step["logging_steps"] == 3


def test_plain_resume_trains_with_the_parents_lr(tmp_path: Path) -> None:
    """The control: HF's own resume, with the child's lr in its args, brings back the
    parent's from the optimizer and scheduler state (what pbtune corrects above)."""
    recorder = Recorder()
    trainer = make_trainer(tmp_path / "out", recorder)
    first = make_trial(tmp_path, 0, {"learning_rate": PARENT_LR}, 0, 4)
    pbtune.transformers.train(first, trainer)
    naive = make_trainer(tmp_path / "naive", recorder, learning_rate=CHILD_LR, max_steps=8)
    naive.train(resume_from_checkpoint=str(first.checkpoint_dir / "checkpoint-4"))
    first_step = recorder.at("naive", 4)
    assert first_step["lr"] == [PARENT_LR, PARENT_LR]
    assert first_step["base_lrs"] == [PARENT_LR, PARENT_LR]


def test_a_factory_builds_each_trials_trainer(tmp_path: Path) -> None:
    recorder = Recorder()
    built: list[int] = []

    def build(trial: pbtune.Trial) -> Trainer:
        built.append(trial.id)
        return Trainer(model=make_model(), args=make_args(tmp_path / "out"),
                       train_dataset=dataset(64, 0), eval_dataset=dataset(32, 1),
                       callbacks=[recorder])

    first = make_trial(tmp_path, 0, {"learning_rate": PARENT_LR}, 0, 4)
    metrics = pbtune.transformers.train(first, build)
    assert set(metrics) >= {"eval_loss", "epoch"}
    assert all(isinstance(value, float) for value in metrics.values())
    second = make_trial(tmp_path, 1, {"learning_rate": CHILD_LR}, 4, 8, first.checkpoint_dir)
    pbtune.transformers.train(second, build)
    assert built == [0, 1]
    assert recorder.at("trial-000001", 4)["lr"] == [CHILD_LR, CHILD_LR]


def test_a_scheduler_on_the_unwrapped_optimizer_is_guarded_too(tmp_path: Path) -> None:
    """Trainer(optimizers=...) (and transformers 4's own Trainer) make the scheduler on the
    optimizer that Accelerate then wraps: the scheduler holds the inner one."""
    recorder = Recorder()

    def build(trial: pbtune.Trial) -> Trainer:
        model = make_model()
        optimizer = torch.optim.AdamW(model.parameters(), lr=trial.params["learning_rate"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return Trainer(model=model, args=make_args(tmp_path / "out"),
                       train_dataset=dataset(64, 0), eval_dataset=dataset(32, 1),
                       callbacks=[recorder], optimizers=(optimizer, scheduler))

    first = make_trial(tmp_path, 0, {"learning_rate": PARENT_LR}, 0, 4)
    pbtune.transformers.train(first, build)
    second = make_trial(tmp_path, 1, {"learning_rate": CHILD_LR}, 4, 8, first.checkpoint_dir)
    pbtune.transformers.train(second, build)
    first_step = recorder.at("trial-000001", 4)
    assert first_step["lr"] == [CHILD_LR] and first_step["base_lrs"] == [CHILD_LR]


def test_a_model_init_of_one_argument_gets_the_trials_params(tmp_path: Path) -> None:
    given: list[Any] = []

    def model_init(params: dict[str, Any]) -> BertForSequenceClassification:
        given.append(params)
        return make_model()

    trainer = Trainer(model_init=model_init, args=make_args(tmp_path / "out"),
                      train_dataset=dataset(64, 0), eval_dataset=dataset(32, 1))
    assert given == [None]  # the Trainer's own __init__ builds one model, with no trial
    params = {"learning_rate": PARENT_LR, "dropout": 0.1}  # dropout: no TrainingArguments field
    pbtune.transformers.train(make_trial(tmp_path, 0, params, 0, 4), trainer)
    assert given == [None, params]
    assert trainer.model_init is model_init  # given back


def test_a_trainer_object_trains_one_trial_at_a_time(tmp_path: Path) -> None:
    """A second trial on a Trainer object in use (a second worker thread of an in-memory
    study) is refused, not mixed into the first: the trial's args, model_init and
    callbacks are set on that one object."""
    trainer = make_trainer(tmp_path / "out", Recorder())
    first = make_trial(tmp_path, 0, {"learning_rate": PARENT_LR}, 0, 4)
    other = make_trial(tmp_path, 1, {"learning_rate": CHILD_LR}, 0, 4)
    caught: list[pbtune.ConfigError] = []

    class SecondTrial(TrainerCallback):
        """While the first trial trains, trains another with the same Trainer, given as
        itself and as what a factory returns."""

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if caught:
                return
            for given in (trainer, lambda trial: trainer):
                try:
                    pbtune.transformers.train(other, given)
                except pbtune.ConfigError as error:
                    caught.append(error)

    trainer.add_callback(SecondTrial())
    pbtune.transformers.train(first, trainer)
    assert len(caught) == 2, caught
    for error in caught:
        assert "trains trial 0 now, so trial 1 cannot use it" in str(error)
        assert "pass a function make_trainer(trial) -> Trainer" in str(error)
    assert "the trainer factory" in str(caught[1])
    assert sorted(p.name for p in first.checkpoint_dir.iterdir()) == ["checkpoint-4"]
    assert not any(other.checkpoint_dir.iterdir())
    pbtune.transformers.train(other, trainer)  # free again once the first trial ended
    assert (other.checkpoint_dir / "checkpoint-4").is_dir()


def test_mistakes_say_what_to_do(tmp_path: Path) -> None:
    recorder = Recorder()
    trial = make_trial(tmp_path, 0, {"learning_rate": PARENT_LR}, 0, 4)
    no_init = Trainer(model=make_model(), args=make_args(tmp_path / "out"),
                      train_dataset=dataset(8, 0), eval_dataset=dataset(8, 1))
    with pytest.raises(pbtune.ConfigError, match="model_init"):
        pbtune.transformers.train(trial, no_init)
    trainer = make_trainer(tmp_path / "out", recorder)
    bad = make_trial(tmp_path, 1, {"max_steps": 4}, 0, 4)
    with pytest.raises(pbtune.ConfigError, match="remove it from the space"):
        pbtune.transformers.train(bad, trainer)
    # A run shorter than the trial: the advice (max_steps=) is what makes it work.
    late = make_trial(tmp_path, 2, {"learning_rate": PARENT_LR}, 0, MAX_STEPS + 4)
    with pytest.raises(pbtune.ConfigError, match="max_steps"):
        pbtune.transformers.train(late, trainer)
    again = make_trial(tmp_path, 3, {"learning_rate": PARENT_LR}, 0, MAX_STEPS + 4)
    pbtune.transformers.train(again, trainer, max_steps=MAX_STEPS + 4)
    assert (again.checkpoint_dir / f"checkpoint-{MAX_STEPS + 4}").is_dir()
    # ... and so is the other advice, with a factory: TrainingArguments(max_steps=...).
    longer = make_trial(tmp_path, 5, {"learning_rate": PARENT_LR}, 0, MAX_STEPS + 4)
    with pytest.raises(pbtune.ConfigError, match=r"given max_steps=16; pass the study's"):
        pbtune.transformers.train(longer, trainer, max_steps=MAX_STEPS)
    pbtune.transformers.train(longer, lambda trial: make_trainer(
        tmp_path / "out", recorder, max_steps=MAX_STEPS + 4))
    assert (longer.checkpoint_dir / f"checkpoint-{MAX_STEPS + 4}").is_dir()
    orphan = make_trial(tmp_path, 4, {"learning_rate": PARENT_LR}, 4, 8, parent=tmp_path)
    with pytest.raises(pbtune.CheckpointError, match="checkpoint-4"):
        pbtune.transformers.train(orphan, trainer)
    # The Trainer is left as it was given: its own args and callbacks.
    assert trainer.args.output_dir == str(tmp_path / "out")
    assert trainer.args.learning_rate == PARENT_LR


def test_hyperparameter_search_trains_every_trial_with_its_own_lr(tmp_path: Path) -> None:
    recorder = Recorder()
    trainer = make_trainer(tmp_path / "out", recorder)
    best = pbtune.transformers.hyperparameter_search(
        trainer, space={"learning_rate": pbtune.Float(1e-4, 1e-1, log=True)},
        population_size=3, steps_per_trial=4, max_steps=MAX_STEPS, seed=1,
        exploit=pbtune.Truncation(fraction=0.34))
    assert isinstance(best, BestRun)
    study = best.run_summary
    assert isinstance(study, pbtune.Study)
    trials = study.trials()
    assert best.run_id == str(study.best_trial.id)
    assert best.hyperparameters == study.best_trial.params
    assert best.objective == study.best_trial.metrics["eval_loss"]
    assert len(trials) == 3 * MAX_STEPS // 4
    by_id = {t.id: t for t in trials}
    exploits = [t for t in trials if t.decision == "exploit"]
    assert exploits, "no member copied another: the test would not see the restore"
    assert any(t.params["learning_rate"] != by_id[t.parent_id].params["learning_rate"]
               for t in exploits if t.parent_id is not None)
    for t in trials:
        lr = t.params["learning_rate"]
        first_step = recorder.at(f"trial-{t.id:06d}", t.start_step)
        assert first_step["lr"] == pytest.approx([lr, lr], rel=1e-12), t
        assert first_step["base_lrs"] == pytest.approx([lr, lr], rel=1e-12), t
        assert study.reports(t.id)[0] == (t.start_step, {"applied_learning_rate": lr,
                                                         "scheduled_lr": lr})
    assert Path(study.best_trial.checkpoint).parent.parent == tmp_path / "out"
    assert pbtune.transformers.checkpoint_folder(
        study.best_trial.checkpoint, study.best_trial.end_step).is_dir()


def test_hyperparameter_search_needs_model_init_and_one_worker(tmp_path: Path) -> None:
    recorder = Recorder()
    space = {"learning_rate": pbtune.Float(1e-4, 1e-1, log=True)}
    no_init = Trainer(model=make_model(), args=make_args(tmp_path / "out"),
                      train_dataset=dataset(8, 0), eval_dataset=dataset(8, 1))
    with pytest.raises(pbtune.ConfigError, match="model_init"):
        pbtune.transformers.hyperparameter_search(no_init, space=space)
    trainer = make_trainer(tmp_path / "out", recorder)
    with pytest.raises(pbtune.ConfigError, match="make_trainer"):
        pbtune.transformers.hyperparameter_search(trainer, space=space, workers=2)
    factory: Callable[[pbtune.Trial], Trainer] = lambda trial: trainer  # noqa: E731
    # No Trainer to read max_steps from before the study is made: only max_steps= works.
    with pytest.raises(pbtune.ConfigError, match="pass max_steps=") as error:
        pbtune.transformers.hyperparameter_search(factory, space=space)
    assert "TrainingArguments(max_steps" not in str(error.value)
    endless = make_trainer(tmp_path / "out", recorder, max_steps=-1)
    with pytest.raises(pbtune.ConfigError, match=r"TrainingArguments\(max_steps=\.\.\.\)"):
        pbtune.transformers.hyperparameter_search(endless, space=space)


@pytest.mark.parametrize("workers", [1, 2])  # the Trainer object; the factory in processes
def test_the_example_finetunes_and_reloads_the_best_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))  # worker processes import it by name
    example = importlib.import_module("transformers_finetune")
    summary = example.main(["--quiet", "--output-dir", str(tmp_path / "out"), "--max-steps",
                            "40", "--storage", f"sqlite:///{tmp_path / 'study.db'}",
                            "--workers", str(workers)])
    assert summary["trials"] == 4 * 40 // 10
    assert summary["exploits"] > 0
    steps = [(s["start_step"], s["end_step"]) for s in summary["schedule"]]
    assert steps == [(0, 10), (10, 20), (20, 30), (30, 40)]
    assert summary["best_accuracy"] > 0.9
    # from_pretrained on the best trial's folder gives back the model it evaluated.
    assert summary["reloaded_loss"] == pytest.approx(summary["best_loss"], rel=1e-5)
    assert summary["reloaded_accuracy"] == summary["best_accuracy"]
