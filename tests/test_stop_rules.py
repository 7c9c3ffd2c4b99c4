"""Stop rules on plain data: each rule's verdict and state, the rules of a study together,
their stored and study-file forms, and bad input refused before anything is recorded."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pbtune
from pbtune import ConfigError, NoImprovement, StopRule, Target, TotalSteps, TrialState
from pbtune.cli._config import load_config
from pbtune.controller import StudyConfig, directions, stop_context
from pbtune.strategies import (
    StopContext,
    Verdict,
    check_rules,
    replay_rules,
    stop_from_dict,
)
from pbtune.trial import FrozenTrial

SPACE = {"lr": pbtune.Float(0.01, 1.0)}
ACCURACY = StopContext({"accuracy": "max"}, max_steps=100, population_size=4,
                       steps_per_trial=10)
LOSS = StopContext({"loss": "min"}, max_steps=100, population_size=4, steps_per_trial=10)


def result(number: int, generation: int = 0, *, fitness: float | None = None,
           start: int = 0, end: int = 10, **metrics: float) -> FrozenTrial:
    return FrozenTrial(
        id=number, member=number % 4, generation=generation, parent_id=None,
        params={"lr": 0.1}, start_step=start, end_step=end, state=TrialState.COMPLETE,
        metrics=dict(metrics), fitness=fitness if fitness is not None else (
            next(iter(metrics.values())) if metrics else None))


def verdicts(rule: StopRule, trials: Iterable[FrozenTrial], study: StopContext, *,
             through_json: bool = False) -> list[str | None]:
    """The rule's reason after each trial, its state carried from one to the next (as the
    database carries it, with ``through_json``)."""
    state: dict[str, Any] = {}
    said = []
    for trial in trials:
        reason, state = rule.check(trial, state, study)
        if through_json:
            state = json.loads(json.dumps(state))
        said.append(reason)
    return said


class EveryN(StopRule):
    """A user's rule: stop at the n-th result (for the study-file tests)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def check(self, finished: FrozenTrial, state: dict[str, Any], study: StopContext
              ) -> tuple[str | None, dict[str, Any]]:
        seen = int(state.get("seen", 0)) + 1
        return (f"{seen} results" if seen >= self.n else None), {"seen": seen}

    def to_dict(self) -> dict[str, Any]:
        return {"type": f"{__name__}:EveryN", "n": self.n}


# -- Target --------------------------------------------------------------------------------


def test_target_fires_on_the_first_trial_that_reaches_it_when_more_is_better() -> None:
    rule = Target(accuracy=0.9)
    said = verdicts(rule, [result(0, accuracy=0.5), result(1, accuracy=0.89999),
                           result(2, accuracy=0.9), result(3, accuracy=0.95)], ACCURACY)
    assert said[:2] == [None, None]
    assert said[2] == "trial 2 reached accuracy 0.9"  # >= : the threshold itself counts
    assert said[3] == "trial 3 reached accuracy 0.95"


def test_target_of_an_objective_to_minimize_fires_at_or_below_it() -> None:
    said = verdicts(Target(loss=0.1), [result(0, loss=0.5), result(1, loss=0.1),
                                       result(2, loss=0.2)], LOSS)
    assert said == [None, "trial 1 reached loss 0.1", None]


def test_target_with_several_thresholds_needs_one_trial_that_reaches_them_all() -> None:
    study = StopContext({"accuracy": "max", "latency_ms": "min"}, 100, 4, 10)
    rule = Target(accuracy=0.9, latency_ms=20)
    said = verdicts(rule, [result(0, accuracy=0.95, latency_ms=30),
                           result(1, accuracy=0.85, latency_ms=10),
                           result(2, accuracy=0.91, latency_ms=19.5)], study)
    assert said == [None, None, "trial 2 reached accuracy 0.91 and latency_ms 19.5"]


def test_target_in_a_study_with_a_fitness_function_reads_the_fitness() -> None:
    def fitness(metrics: dict[str, float]) -> float:
        return metrics["a"] - metrics["b"]

    config = StudyConfig(space=SPACE, metric=None, fitness=fitness, mode="max",
                         population_size=4, steps_per_trial=10, max_steps=100,
                         stop=Target(fitness=1.0))
    assert directions(config) == {"fitness": "max"}
    study = stop_context(config)
    said = verdicts(config.stop[0], [result(0, fitness=0.5, a=3.0, b=2.5),
                                     result(1, fitness=1.5, a=3.0, b=1.5)], study)
    assert said == [None, "trial 1 reached fitness 1.5"]


def test_a_trial_without_the_metric_never_reaches_a_target() -> None:
    assert verdicts(Target(accuracy=0.5), [result(0, other=1.0)], ACCURACY) == [None]


# -- NoImprovement --------------------------------------------------------------------------


def test_no_improvement_fires_once_the_best_is_generations_old() -> None:
    rule = NoImprovement(generations=3)
    values = [(0, 0.5), (1, 0.6), (2, 0.6), (3, 0.55), (4, 0.59)]
    said = verdicts(rule, [result(i, g, accuracy=v) for i, (g, v) in enumerate(values)],
                    ACCURACY)
    assert said[:4] == [None, None, None, None]  # best 0.6 set at generation 1; a tie is
    assert said[4] is not None and "generation 4" in said[4]  # no improvement


def test_no_improvement_min_delta_ignores_small_gains_and_direction_min() -> None:
    rule = NoImprovement(generations=2, min_delta=0.05)
    values = [(0, 1.0), (1, 0.97), (2, 0.96), (3, 0.5)]  # 0.03 and 0.04: too small
    said = verdicts(rule, [result(i, g, loss=v) for i, (g, v) in enumerate(values)], LOSS)
    assert said[:2] == [None, None]
    assert said[2] is not None and "by more than 0.05" in said[2]
    assert said[3] is None  # a real gain: the best is new again


def test_no_improvement_is_the_same_through_a_json_round_trip_of_its_state() -> None:
    rng = np.random.default_rng(7)
    trials = [result(i, i // 4, accuracy=float(v))
              for i, v in enumerate(np.cumsum(rng.normal(0.0, 1.0, 400)))]
    for rule in (NoImprovement(3), NoImprovement(2, min_delta=0.5)):
        kept = verdicts(rule, trials, ACCURACY)
        assert kept == verdicts(rule, trials, ACCURACY, through_json=True)
        assert any(kept) and not all(kept)  # the sequence tests both answers


def test_no_improvement_keeps_constant_state() -> None:
    state: dict[str, Any] = {}
    for i in range(200):
        _, state = NoImprovement(5).check(result(i, i, accuracy=float(i % 7)), state,
                                          ACCURACY)
        assert set(state) <= {"best", "generation", "trial"}


# -- TotalSteps -----------------------------------------------------------------------------


def test_total_steps_sums_the_steps_of_complete_trials() -> None:
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 50, size=100)
    trials = [result(i, start=100, end=100 + int(n), accuracy=0.0)
              for i, n in enumerate(lengths)]
    said = verdicts(TotalSteps(1000), trials, ACCURACY, through_json=True)
    first = int(np.argmax(np.cumsum(lengths) >= 1000))
    assert said.index(next(r for r in said if r)) == first
    assert said[first] == f"{int(np.cumsum(lengths)[first])} steps trained in all " \
        f"(trial {first} was the last)"


# -- a study's rules together ---------------------------------------------------------------


def test_rules_keep_their_state_by_position_and_the_first_that_fires_says_why() -> None:
    rules = [Target(accuracy=0.99), TotalSteps(25), NoImprovement(10)]
    verdict = check_rules(rules, result(0, accuracy=0.5), {}, ACCURACY)
    assert verdict == Verdict(None, None, {"1": {"steps": 10},
                                           "2": {"best": 0.5, "generation": 0, "trial": 0}})
    for number in (1, 2):
        verdict = check_rules(rules, result(number, accuracy=0.5), verdict.state, ACCURACY)
    assert verdict.fired == 1
    assert verdict.reason == "30 steps trained in all (trial 2 was the last) (TotalSteps(25))"
    both = check_rules(rules, result(3, accuracy=0.995), verdict.state, ACCURACY)
    assert both.fired == 0 and both.reason is not None and both.reason.endswith(
        "(Target(accuracy=0.99))")


def test_replaying_the_past_stops_where_the_rules_would_have() -> None:
    past = [result(i, accuracy=a) for i, a in enumerate([0.1, 0.7, 0.4, 0.9])]
    assert replay_rules([Target(accuracy=0.6)], past, ACCURACY).reason == (
        "trial 1 reached accuracy 0.7 (Target(accuracy=0.6))")
    assert replay_rules([Target(accuracy=0.95)], past, ACCURACY).reason is None
    assert replay_rules([TotalSteps(100)], past, ACCURACY).state == {"0": {"steps": 40}}


def test_a_rule_that_returns_something_else_is_a_clear_error() -> None:
    class Broken(StopRule):
        def check(self, finished: FrozenTrial, state: dict[str, Any], study: StopContext
                  ) -> tuple[str | None, dict[str, Any]]:
            return "stop", None  # type: ignore[return-value]

        def to_dict(self) -> dict[str, Any]:
            return {"type": "x:Broken"}

    with pytest.raises(TypeError, match=r"Broken.check must return"):
        check_rules([Broken()], result(0, accuracy=1.0), {}, ACCURACY)


# -- stored and study-file forms ------------------------------------------------------------


def config(**overrides: Any) -> StudyConfig:
    settings: dict[str, Any] = dict(space=SPACE, metric="accuracy", mode="max",
                                    population_size=4, steps_per_trial=10, max_steps=100)
    settings.update(overrides)
    return StudyConfig(**settings)


def test_rules_are_stored_with_the_study_and_read_back() -> None:
    rules = (Target(accuracy=0.99), NoImprovement(5, min_delta=0.01), TotalSteps(200_000),
             EveryN(3))
    stored = config(stop=rules).to_dict()
    assert stored["stop"][:3] == [
        {"type": "target", "accuracy": 0.99},
        {"type": "no_improvement", "generations": 5, "objective": None, "min_delta": 0.01},
        {"type": "total_steps", "steps": 200_000}]
    back = StudyConfig.from_dict(json.loads(json.dumps(stored)))
    assert back.stop[:3] == rules[:3]
    assert isinstance(back.stop[3], EveryN) and back.stop[3].n == 3
    assert "stop" not in config().to_dict()  # a study without rules stores none
    assert config(stop=Target(accuracy=0.5)).stop == (Target(accuracy=0.5),)  # one rule


def test_a_study_file_takes_a_list_of_rules_or_one_and_rules_of_your_own(
    tmp_path: Path,
) -> None:
    path = tmp_path / "study.yaml"
    head = ("name: s\nmetric: accuracy\nspace: {lr: {type: float, low: 0.01, high: 1.0}}\n")
    path.write_text(head + "stop:\n  - {type: target, accuracy: 0.99}\n"
                    "  - {type: no_improvement, generations: 5}\n"
                    "  - {type: total_steps, steps: 200000}\n"
                    f"  - {{type: '{__name__}:EveryN', n: 7}}\n")
    rules = load_config(path).options["stop"]
    assert rules[:3] == [Target(accuracy=0.99), NoImprovement(5), TotalSteps(200_000)]
    assert isinstance(rules[3], EveryN) and rules[3].n == 7
    path.write_text(head + "stop: {type: target, accuracy: 0.9}\n")
    assert load_config(path).options["stop"] == [Target(accuracy=0.9)]
    study = pbtune.create_study("from-file", storage=None, checkpoint_root=tmp_path,
                                **load_config(path).options)
    assert study.config.stop == (Target(accuracy=0.9),)


@pytest.mark.parametrize(("text", "message"), [
    ("stop: [{type: patience, generations: 5}]", "stop rule type must be one of target"),
    ("stop: [{type: no_improvement, generations: 0}]", r"generations=...\) must be an int >= 1"),
    ("stop: [{type: no_improvement, patience: 5}]", "unknown settings"),
    ("stop: [{type: total_steps}]", "'stop'.*steps"),
    ("stop: 5", "stop must be a list of rules"),
    ("stop: [target]", "a stop rule must be a mapping"),
    ("stop: [{type: 'pbtune:Tournament'}]", "is not a subclass of pbtune.StopRule"),
])
def test_a_study_file_with_a_bad_rule_names_the_file_and_the_problem(
    tmp_path: Path, text: str, message: str,
) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("metric: accuracy\nspace: {lr: {type: float, low: 0.1, high: 1}}\n"
                    + text + "\n")
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)


# -- bad input: refused before anything is recorded ------------------------------------------


@pytest.mark.parametrize(("stop", "message"), [
    (Target(loss=0.1), r"'loss' is not an objective of this study; its objectives: "
                       r"accuracy \(max\)"),
    ([Target(accuracy=0.9), "total_steps"], "stop must be a stop rule or a list of them"),
    ("target", "stop must be a stop rule or a list of them"),
    ({"type": "target", "accuracy": 0.9}, "stop must be a stop rule or a list of them"),
    ([NoImprovement(3, objective="loss")], "'loss' is not an objective"),
])
def test_bad_rules_are_refused_before_anything_is_recorded(
    tmp_path: Path, stop: Any, message: str,
) -> None:
    database = tmp_path / "studies.db"
    with pytest.raises(ConfigError, match=message):
        pbtune.create_study("bad", storage=f"sqlite:///{database}", space=SPACE,
                            metric="accuracy", checkpoint_root=tmp_path / "ckpt", stop=stop)
    assert not database.exists() and not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize(("make", "message"), [
    (lambda: NoImprovement(0), r"generations=...\) must be an int >= 1, got 0"),
    (lambda: NoImprovement(2, min_delta=-1), "min_delta"),
    (lambda: TotalSteps(0), r"TotalSteps\(steps=...\) must be an int >= 1"),
    (lambda: Target(), "Target needs a threshold"),
    (lambda: Target(accuracy="high"), "must be a finite number"),
    (lambda: Target(accuracy=float("nan")), "must be a finite number"),
])
def test_bad_settings_of_a_rule_say_what_to_pass(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_the_advice_of_a_refusal_works_when_followed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"e\.g\. stop=pbtune\.Target\(accuracy=0\.99\)"):
        config(stop="accuracy >= 0.99")
    assert config(stop=pbtune.Target(accuracy=0.99)).stop == (Target(accuracy=0.99),)
    with pytest.raises(ConfigError, match="its objectives: fitness") as error:
        config(metric=None, fitness=lambda m: m["a"], stop=Target(accuracy=0.9))
    assert "names it 'fitness'" in str(error.value)
    assert config(metric=None, fitness=lambda m: m["a"], stop=Target(fitness=0.9)).stop


def test_a_rule_of_your_own_must_store_as_json_with_a_type() -> None:
    @dataclass
    class NoType(EveryN):
        n: int = 1

        def to_dict(self) -> dict[str, Any]:
            return {"n": self.n}

    with pytest.raises(ConfigError, match="must return a dict with a 'type'"):
        config(stop=NoType())
    assert stop_from_dict(None) == () and stop_from_dict([]) == ()
