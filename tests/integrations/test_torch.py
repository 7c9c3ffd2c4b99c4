"""`pbtune.torch`: a trial's state saved and restored in one call each, and the trial's own
params, not the donor's, in the optimizer that trains."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pbtune
from integrations.extras import require

torch = require("torch", "torch")

import pbtune.torch  # noqa: E402  (after the skip above)
from pbtune.torch import GroupKey, ParamMismatchError, apply_params, check_params  # noqa: E402

nn = torch.nn
Restore = Callable[[pbtune.Trial, Any, Any, Any], None]


def make_trial(tmp_path: Path, id: int, params: dict[str, Any], start: int, end: int,
               parent: Path | None, member: int = 0) -> pbtune.Trial:
    folder = tmp_path / f"trial-{id}"
    folder.mkdir()
    return pbtune.Trial(id=id, member=member, generation=id, params=params, start_step=start,
                        end_step=end, parent_checkpoint=parent, checkpoint_dir=folder,
                        study_name="t")


def guarded(trial: pbtune.Trial, model: Any, optimizer: Any, scheduler: Any) -> None:
    pbtune.torch.load(trial, model=model, optimizer=optimizer, scheduler=scheduler)


def naive(trial: pbtune.Trial, model: Any, optimizer: Any, scheduler: Any) -> None:
    """What a hand-written restore does: load the donor's state and stop there."""
    if trial.parent_checkpoint is not None:
        state = torch.load(trial.parent_checkpoint / pbtune.torch.FILE, weights_only=False)
        model.load_state_dict(state["state"]["model"])
        optimizer.load_state_dict(state["state"]["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["state"]["scheduler"])


def run(trial: pbtune.Trial, restore: Restore, scheduled: bool = False) -> dict[str, float]:
    """Train a linear model; return what the optimizer held at the first step."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=trial.params["lr"],
                                  weight_decay=trial.params["weight_decay"])
    scheduler = (torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
                 if scheduled else None)
    restore(trial, model, optimizer, scheduler)
    seen: dict[str, float] = {}
    x = torch.randn(16, 3)
    for step in range(trial.start_step, trial.end_step):
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        if step == trial.start_step:
            group = optimizer.param_groups[0]
            seen = {"lr": group["lr"], "weight_decay": group["weight_decay"]}
            if scheduler is not None:
                seen["base_lr"] = scheduler.base_lrs[0]
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    pbtune.torch.save(trial, model=model, optimizer=optimizer, scheduler=scheduler)
    return seen


def parent_and_child(tmp_path: Path, restore: Restore,
                     scheduled: bool = False) -> tuple[dict[str, float], dict[str, float]]:
    """A parent (member 0, lr 0.1) trains 5 steps; a child of member 1 that exploited it
    with lr 0.003 and another weight decay trains on from its checkpoint."""
    parent = make_trial(tmp_path, 1, {"lr": 0.1, "weight_decay": 0.01}, 0, 5, None)
    parent_seen = run(parent, guarded, scheduled)
    child = make_trial(tmp_path, 2, {"lr": 0.003, "weight_decay": 0.2}, 5, 10,
                       parent.checkpoint_dir, member=1)
    return parent_seen, run(child, restore, scheduled)


def test_a_child_trains_with_its_own_lr_from_its_first_step(tmp_path: Path) -> None:
    parent_seen, seen = parent_and_child(tmp_path, guarded)
    assert parent_seen == {"lr": 0.1, "weight_decay": 0.01}
    assert seen == {"lr": 0.003, "weight_decay": 0.2}


def test_a_naive_restore_trains_with_the_donors_lr(tmp_path: Path) -> None:
    """The control: without the guard, the donor's optimizer state brings its lr back, so
    the test above can fail."""
    _, seen = parent_and_child(tmp_path, naive)
    assert seen == {"lr": 0.1, "weight_decay": 0.01}


def test_a_scheduled_child_goes_on_with_its_own_base_lr(tmp_path: Path) -> None:
    """StepLR halves the lr every 2 steps: at step 5 the child's lr is its base x 0.25,
    exactly what a schedule started with the child's lr would give at step 5."""
    _, seen = parent_and_child(tmp_path, guarded, scheduled=True)
    assert seen["base_lr"] == 0.003
    assert math.isclose(seen["lr"], 0.003 * 0.5 ** (5 // 2))
    (tmp_path / "naive").mkdir()
    _, naive_seen = parent_and_child(tmp_path / "naive", naive, scheduled=True)
    assert naive_seen["base_lr"] == 0.1


SCHEDULES: dict[str, Callable[[Any], Any]] = {
    "step": lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.3),
    "exponential": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
    "lambda": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 1.0 / (1 + e)),
    "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20),
    "linear": lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.1, 1.0, total_iters=8),
    "multistep": lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5], gamma=0.5),
    "sequential": lambda o: torch.optim.lr_scheduler.SequentialLR(
        o, [torch.optim.lr_scheduler.LinearLR(o, 0.2, 1.0, total_iters=3),
            torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.8)], milestones=[3]),
}


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_a_restored_schedule_with_a_new_base_matches_a_fresh_one(kind: str) -> None:
    """After a restore at step 7 and a new base lr, every later lr is what a schedule
    started with that base gives at the same steps."""

    def stepped(lr: float, steps: int) -> tuple[Any, Any]:
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
        scheduler = SCHEDULES[kind](optimizer)
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
        return optimizer, scheduler

    donor_optimizer, donor_scheduler = stepped(0.5, 7)
    optimizer, scheduler = stepped(0.02, 0)  # the child's, before the restore
    optimizer.load_state_dict(donor_optimizer.state_dict())
    scheduler.load_state_dict(donor_scheduler.state_dict())
    apply_params({"lr": 0.02}, optimizer, scheduler=scheduler)
    fresh_optimizer, fresh_scheduler = stepped(0.02, 7)
    for _ in range(6):
        assert math.isclose(optimizer.param_groups[0]["lr"],
                            fresh_optimizer.param_groups[0]["lr"], rel_tol=1e-9)
        optimizer.step()
        scheduler.step()
        fresh_optimizer.step()
        fresh_scheduler.step()


def test_a_restored_optimizer_with_a_fresh_scheduler_trains_the_trials_lr(
    tmp_path: Path,
) -> None:
    """The donor saved an optimizer at a decayed lr and no scheduler; the child restores
    the optimizer only, with a fresh StepLR of its own: its schedule starts at its lr."""
    parent = make_trial(tmp_path, 1, {"lr": 1.0}, 0, 3, None)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(3):
        optimizer.step()
        scheduler.step()  # the donor's lr is 0.125 from a base of 1.0
    pbtune.torch.save(parent, model=model, optimizer=optimizer)
    child = make_trial(tmp_path, 2, {"lr": 0.01}, 3, 6, parent.checkpoint_dir, member=1)
    fresh = torch.optim.SGD(model.parameters(), lr=0.01)
    fresh_scheduler = torch.optim.lr_scheduler.StepLR(fresh, step_size=1, gamma=0.5)
    pbtune.torch.load(child, model=model, optimizer=fresh, scheduler=fresh_scheduler,
                      strict=False)
    assert fresh.param_groups[0]["lr"] == 0.01
    fresh.step()
    fresh_scheduler.step()
    assert fresh.param_groups[0]["lr"] == 0.005


def test_a_scheduler_built_after_load_starts_from_the_trials_lr(tmp_path: Path) -> None:
    """A restored optimizer brings the donor's ``initial_lr``, which a scheduler built
    afterwards would take as its base."""
    parent = make_trial(tmp_path, 1, {"lr": 1.0}, 0, 1, None)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 ** epoch)
    pbtune.torch.save(parent, model=model, optimizer=optimizer)
    child = make_trial(tmp_path, 2, {"lr": 0.01}, 1, 2, parent.checkpoint_dir, member=1)
    fresh = torch.optim.SGD(model.parameters(), lr=0.01)
    pbtune.torch.load(child, model=model, optimizer=fresh)
    later = torch.optim.lr_scheduler.LambdaLR(fresh, lambda epoch: 0.5 ** epoch)
    assert later.base_lrs == [0.01]
    fresh.step()
    later.step()
    assert fresh.param_groups[0]["lr"] == 0.005


def test_a_scheduler_of_a_wrapped_optimizer_is_paired_by_its_groups() -> None:
    """Accelerate and Lightning hand out a wrapper of the optimizer the scheduler holds;
    both share one ``param_groups`` list, which is how they are paired."""

    class Wrapper(torch.optim.Optimizer):
        def __init__(self, inner: Any) -> None:  # no super().__init__: it only forwards
            self.inner = inner

        @property
        def param_groups(self) -> Any:  # type: ignore[override]
            return self.inner.param_groups

    inner = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = torch.optim.lr_scheduler.StepLR(inner, step_size=1, gamma=0.5)
    inner.step()
    scheduler.step()  # lr 0.25 from a base of 0.5
    apply_params({"lr": 0.1}, Wrapper(inner), scheduler=scheduler)
    assert scheduler.base_lrs == [0.1]
    assert math.isclose(inner.param_groups[0]["lr"], 0.05)


def test_plateau_scheduler_takes_the_lr_directly() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    assert apply_params({"lr": 0.01}, optimizer, scheduler=scheduler) == {"lr": 0.01}
    assert optimizer.param_groups[0]["lr"] == 0.01


def test_betas_by_element_and_groups_by_a_rule() -> None:
    weights, biases = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [weights], "weight_decay": 0.1},
                                   {"params": [biases], "weight_decay": 0.0}], lr=0.1)
    decay = GroupKey("weight_decay", where=lambda g: g["weight_decay"] > 0)
    in_effect = apply_params({"lr": 0.2, "beta1": 0.8, "weight_decay": 0.3}, optimizer,
                             mapping={"weight_decay": decay})
    assert in_effect == {"lr": 0.2, "beta1": 0.8, "weight_decay": 0.3}
    groups = optimizer.param_groups
    assert [g["weight_decay"] for g in groups] == [0.3, 0.0]
    assert [g["betas"] for g in groups] == [(0.8, 0.999), (0.8, 0.999)]
    apply_params({"betas": [0.7, 0.9]}, optimizer)
    assert groups[1]["betas"] == (0.7, 0.9)


def test_a_users_name_maps_to_a_group_key() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    apply_params({"learning_rate": 0.3, "wd": 0.01, "batch": 32}, optimizer,
                 mapping={"wd": "weight_decay"})
    assert optimizer.param_groups[0]["lr"] == 0.3
    assert optimizer.param_groups[0]["weight_decay"] == 0.01


def test_a_tensor_lr_stays_a_tensor() -> None:
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=torch.tensor(0.1))
    apply_params({"lr": 0.05}, optimizer)
    lr = optimizer.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and math.isclose(lr.item(), 0.05, rel_tol=1e-6)


def test_a_mismatch_is_an_error_that_says_what_to_do() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ParamMismatchError, match=r"lr=0.1.*0.02.*apply_params"):
        check_params({"lr": 0.02}, optimizer)


def test_a_param_the_optimizer_cannot_take_names_the_fix() -> None:
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(pbtune.ConfigError, match=r"'momentum'.*mapping=\{'momentum': None\}"):
        apply_params({"lr": 0.1, "momentum": 0.9}, optimizer)
    # Following the advice: momentum is left to the user's code.
    assert apply_params({"lr": 0.1, "momentum": 0.9}, optimizer,
                        mapping={"momentum": None}) == {"lr": 0.1}


def test_load_reports_what_trains(tmp_path: Path) -> None:
    reports: list[tuple[int, dict[str, float]]] = []
    trial = pbtune.Trial(id=1, member=0, generation=0, params={"lr": 0.01, "momentum": 0.5},
                         start_step=0, end_step=3, parent_checkpoint=None,
                         checkpoint_dir=tmp_path, study_name="t",
                         report_sink=lambda step, values: reports.append((step, values)))
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # not the trial's: overridden
    assert pbtune.torch.load(trial, model=model, optimizer=optimizer) == {}
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert reports == [(0, {"applied_lr": 0.01, "applied_momentum": 0.5})]


def test_load_reports_the_base_and_the_scheduled_lr(tmp_path: Path) -> None:
    """With a scheduler, ``applied_lr`` is the trial's base lr and ``scheduled_lr`` what the
    first step of the child trains with: the base scaled to where the schedule is."""
    parent = make_trial(tmp_path, 1, {"lr": 0.1, "weight_decay": 0.01}, 0, 5, None)
    run(parent, guarded, scheduled=True)  # StepLR(step_size=2, gamma=0.5)
    reports: list[tuple[int, dict[str, float]]] = []
    child = pbtune.Trial(id=2, member=1, generation=1, params={"lr": 0.004}, start_step=5,
                         end_step=6, parent_checkpoint=parent.checkpoint_dir,
                         checkpoint_dir=tmp_path, study_name="t",
                         report_sink=lambda step, values: reports.append((step, values)))
    model = nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.004)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    pbtune.torch.load(child, model=model, optimizer=optimizer, scheduler=scheduler)
    assert reports == [(5, {"applied_lr": 0.004, "scheduled_lr": pytest.approx(0.001)})]


def test_state_rng_and_extra_round_trip(tmp_path: Path) -> None:
    """A member that goes on from its own checkpoint draws as one uninterrupted run would,
    and gets back its model, its extra state and its gradient scaler."""
    first = make_trial(tmp_path, 1, {"lr": 0.1}, 0, 4, None)
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    pbtune.torch.save(first, model=model, optimizer=optimizer, scaler=scaler, best=0.5,
                      history=[1, 2])
    expected = (torch.rand(3), np.random.rand(), random.random())

    second = make_trial(tmp_path, 2, {"lr": 0.1}, 4, 8, first.checkpoint_dir)
    restored = nn.Linear(2, 2)
    restored_optimizer = torch.optim.SGD(restored.parameters(), lr=0.1)
    restored_scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    extra = pbtune.torch.load(second, model=restored, optimizer=restored_optimizer,
                              scaler=restored_scaler)
    assert extra == {"best": 0.5, "history": [1, 2]}
    assert torch.equal(restored.weight, model.weight)
    assert restored_scaler.get_scale() == 512.0
    drawn = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(drawn[0], expected[0]) and drawn[1:] == expected[1:]


def test_several_models_and_optimizers_by_name(tmp_path: Path) -> None:
    first = make_trial(tmp_path, 1, {"lr": 0.1}, 0, 2, None)
    nets = {"g": nn.Linear(2, 2), "d": nn.Linear(2, 1)}
    optimizers = [torch.optim.Adam(net.parameters(), lr=0.1) for net in nets.values()]
    pbtune.torch.save(first, model=nets, optimizer=optimizers)
    second = make_trial(tmp_path, 2, {"lr": 0.05}, 2, 4, first.checkpoint_dir)
    fresh = {"g": nn.Linear(2, 2), "d": nn.Linear(2, 1)}
    fresh_optimizers = [torch.optim.Adam(net.parameters(), lr=1.0) for net in fresh.values()]
    pbtune.torch.load(second, model=fresh, optimizer=fresh_optimizers)
    assert torch.equal(fresh["d"].weight, nets["d"].weight)
    assert [o.param_groups[0]["lr"] for o in fresh_optimizers] == [0.05, 0.05]


def test_checkpoint_mistakes_are_clear(tmp_path: Path) -> None:
    first = make_trial(tmp_path, 1, {"lr": 0.1}, 0, 2, None)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pbtune.torch.save(first, model=model, optimizer=optimizer)

    missing = make_trial(tmp_path, 2, {"lr": 0.1}, 2, 4, first.checkpoint_dir)
    with pytest.raises(pbtune.CheckpointError, match=r"model, optimizer.*given model.*same"):
        pbtune.torch.load(missing, model=model)
    pbtune.torch.load(missing, model=model, optimizer=optimizer)  # the advice works
    pbtune.torch.load(missing, model=model, strict=False)  # or, on purpose, a fresh optimizer

    later = make_trial(tmp_path, 3, {"lr": 0.1}, 3, 5, first.checkpoint_dir)
    with pytest.raises(pbtune.CheckpointError, match=r"saved at step 2.*starts at step 3"):
        pbtune.torch.load(later, model=model, optimizer=optimizer)

    (tmp_path / "elsewhere").mkdir()
    foreign = make_trial(tmp_path, 4, {"lr": 0.1}, 2, 4, tmp_path / "elsewhere")
    with pytest.raises(pbtune.CheckpointError, match=r"did not save with pbtune\.torch\.save"):
        pbtune.torch.load(foreign, model=model, optimizer=optimizer)

    with pytest.raises(pbtune.ConfigError, match="no state_dict"):
        pbtune.torch.save(first, model=model, optimizer=optimizer, scheduler=object())


def test_a_study_trains_every_trial_with_its_own_lr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CNN example end to end (SQLite, 2 worker processes): every trial, exploits
    included, trained with its own lr, read inside training; and its schedule replays."""
    require("sklearn", "examples")  # the digits data
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples"))
    import torch_cnn

    summary = torch_cnn.main(["--storage", f"sqlite:///{tmp_path / 's.db'}",
                              "--checkpoint-root", str(tmp_path / "ck"), "--max-steps", "240"])
    trials = [t for t in summary["trials"] if t.state == pbtune.TrialState.COMPLETE]
    assert {t.member for t in trials if t.end_step == 240} == {0, 1, 2, 3}
    by_id = {t.number: t for t in trials}
    parents = {t.number: by_id[t.parent_id] for t in trials if t.parent_id is not None}
    exploits = [t for t in trials if t.number in parents
                and parents[t.number].member != t.member
                and parents[t.number].params["lr"] != t.params["lr"]]
    assert exploits, "no member exploited another with a different lr"
    for trial in trials:  # ExponentialLR(gamma=0.999): the trial's lr, scaled to its step
        expected = trial.params["lr"] * torch_cnn.GAMMA ** trial.start_step
        assert math.isclose(trial.metrics["trained_lr"], expected, rel_tol=1e-6)
    assert summary["best_accuracy"] > 0.9

    # The model, optimizer, scheduler and RNG states all go through pbtune.torch, so the
    # schedule replayed from scratch trains the best trial's model again, to the bit.
    study = summary["study"]
    replayed = pbtune.replay(torch_cnn.train, study.schedule(),
                             checkpoint_root=tmp_path / "replay")
    assert replayed.metrics == study.best_trial.metrics
