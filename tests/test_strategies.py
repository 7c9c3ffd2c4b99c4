"""Exploit and explore strategies and `decide`, on plain `FrozenTrial` data (no storage)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbtune import (
    Choice,
    ConfigError,
    Float,
    FrozenTrial,
    Int,
    MultiRate,
    Perturb,
    Resample,
    SearchSpace,
    Tournament,
    TrialState,
    Truncation,
)
from pbtune.strategies import (
    Continue,
    Exploit,
    ExploitStrategy,
    Explore,
    ExploreStrategy,
    Stop,
    decide,
    exploit_from_dict,
    explore_from_dict,
)

SPACE = SearchSpace({"lr": Float(1e-4, 1.0, log=True), "units": Int(8, 512),
                     "act": Choice(["relu", "tanh", "gelu"])})


def trial(
    member: int,
    fitness: float,
    *,
    generation: int = 0,
    number: int | None = None,
    end_step: int = 10,
    params: dict[str, Any] | None = None,
) -> FrozenTrial:
    """A COMPLETE trial; its id (number) defaults to something unique per member/generation."""
    number = member + 100 * generation if number is None else number
    return FrozenTrial(
        id=number,
        member=member,
        generation=generation,
        parent_id=None,
        params=params if params is not None else {"lr": 0.01, "units": 64, "act": "relu"},
        start_step=end_step - 10,
        end_step=end_step,
        state=TrialState.COMPLETE,
        metrics={"acc": fitness},
        fitness=fitness,
    )


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def picks(
    strategy: ExploitStrategy,
    finished: FrozenTrial,
    population: Sequence[FrozenTrial],
    mode: str = "max",
    seeds: int = 200,
) -> set[int]:
    """The members chosen as parent over many seeds."""
    return {
        strategy.select(finished, population, mode, rng(s)).member  # type: ignore[arg-type]
        for s in range(seeds)
    }


# -- Tournament -------------------------------------------------------------------------------


def test_tournament_loser_copies_the_winner() -> None:
    me, other = trial(0, 0.1), trial(1, 0.9)
    assert Tournament().select(me, [me, other], "max", rng()) is other


def test_tournament_winner_keeps_its_own_checkpoint() -> None:
    me, other = trial(0, 0.9), trial(1, 0.1)
    assert Tournament().select(me, [me, other], "max", rng()) is me


def test_tournament_tie_keeps_the_initiator() -> None:
    me, other = trial(0, 0.5), trial(1, 0.5)
    for seed in range(20):
        assert Tournament().select(me, [me, other], "max", rng(seed)) is me
        assert Tournament().select(me, [me, other], "min", rng(seed)) is me


def test_tournament_mode_min_prefers_lower_fitness() -> None:
    me, other = trial(0, 0.9), trial(1, 0.1)
    assert Tournament().select(me, [me, other], "min", rng()) is other
    assert Tournament().select(other, [me, other], "min", rng()) is other


@pytest.mark.parametrize("population_of", [lambda me: [me], lambda me: []])
def test_tournament_alone_continues(population_of: Any) -> None:
    me = trial(0, -1e9)
    assert Tournament().select(me, population_of(me), "max", rng()) is me


def test_tournament_never_meets_its_own_member() -> None:
    me = trial(0, 0.1, generation=3)
    older_self = trial(0, 0.99, generation=2)  # an older snapshot row of the same member
    assert Tournament().select(me, [older_self], "max", rng()) is me


def test_tournament_ignores_members_missing_from_the_snapshot() -> None:
    # Member 1's trials all failed: it has no row in the population snapshot.
    me = trial(0, 0.0)
    population = [me, trial(2, 0.5), trial(3, 0.7)]
    assert picks(Tournament(), me, population) == {2, 3}


def test_tournament_opponent_is_drawn_uniformly() -> None:
    me = trial(0, 0.0)
    population = [me] + [trial(m, 1.0) for m in range(1, 6)]
    counts = np.zeros(6)
    for seed in range(1000):
        counts[Tournament().select(me, population, "max", rng(seed)).member] += 1
    assert counts[0] == 0
    assert all(140 < c < 260 for c in counts[1:])


def test_tournament_window_excludes_old_generations() -> None:
    me = trial(0, 0.0, generation=5)
    too_old = trial(1, 1.0, generation=2)
    edge = trial(2, 1.0, generation=3)
    newer = trial(3, 1.0, generation=7)
    assert picks(Tournament(window=2), me, [me, too_old, edge, newer]) == {2, 3}
    assert picks(Tournament(window=3), me, [me, too_old, edge, newer]) == {1, 2, 3}
    assert picks(Tournament(window=0), me, [me, too_old, edge, newer]) == {3}
    # only old opponents: the initiator continues
    assert Tournament(window=1).select(me, [me, too_old], "max", rng()) is me


def test_tournament_is_deterministic_given_the_seed() -> None:
    me = trial(0, 0.0)
    population = [me] + [trial(m, float(m)) for m in range(1, 9)]
    first = [Tournament().select(me, population, "max", rng(s)).id for s in range(30)]
    again = [Tournament().select(me, population, "max", rng(s)).id for s in range(30)]
    assert first == again
    assert len(set(first)) > 1


# -- Truncation -------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.25, 0.3, 0.5])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 8, 9, 16])
def test_truncation_quantile_size(n: int, fraction: float) -> None:
    size = min(math.ceil(n * fraction), n // 2)
    population = [trial(m, float(m)) for m in range(n)]  # member m has fitness m
    strategy = Truncation(fraction=fraction)
    copiers = set()
    parents: set[int] = set()
    for me in population:
        chosen = picks(strategy, me, population, seeds=60)
        if chosen != {me.member}:
            copiers.add(me.member)
            parents |= chosen
    assert copiers == set(range(size))  # the bottom `size` copy
    assert parents == set(range(n - size, n))  # from every one of the top `size`


def test_truncation_mode_min() -> None:
    population = [trial(m, float(m)) for m in range(4)]  # lower is better: member 0 best
    strategy = Truncation(fraction=0.25)
    assert picks(strategy, population[3], population, mode="min") == {0}
    assert picks(strategy, population[0], population, mode="min") == {0}
    assert picks(strategy, population[2], population, mode="min") == {2}


def test_truncation_all_tied_continue() -> None:
    population = [trial(m, 0.5) for m in range(8)]
    for me in population:
        assert picks(Truncation(fraction=0.5), me, population, seeds=20) == {me.member}


def test_truncation_tie_with_the_top_continues() -> None:
    # Scores 2, 1, 1, 0 with quantiles of 2: member 2 ranks in the bottom (its trial number
    # is higher than member 1's) but is as fit as the weakest of the top, so it continues.
    population = [trial(0, 2.0), trial(1, 1.0), trial(2, 1.0), trial(3, 0.0)]
    strategy = Truncation(fraction=0.5)
    assert picks(strategy, population[2], population) == {2}
    assert picks(strategy, population[1], population) == {1}
    assert picks(strategy, population[3], population) == {0, 1}


def test_truncation_ties_are_ranked_by_trial_number() -> None:
    # Two members tie for last; only the one with the higher trial number is in the
    # bottom quantile and copies.
    population = [trial(0, 3.0), trial(1, 2.0), trial(2, 0.0, number=20),
                  trial(3, 0.0, number=10)]
    strategy = Truncation(fraction=0.25)
    assert picks(strategy, population[2], population) == {0}
    assert picks(strategy, population[3], population) == {3}


@pytest.mark.parametrize("population_of", [lambda me: [me], lambda me: []])
def test_truncation_population_of_one_continues(population_of: Any) -> None:
    me = trial(0, -5.0)
    assert Truncation(fraction=0.5).select(me, population_of(me), "max", rng()) is me


def test_truncation_counts_only_members_in_the_snapshot() -> None:
    # Members 1..6 failed and are absent: two remain, so the worse copies the better.
    me, best = trial(0, 0.0), trial(7, 1.0)
    assert picks(Truncation(fraction=0.25), me, [me, best]) == {7}


def test_truncation_uses_the_finished_trial_not_its_stale_snapshot_row() -> None:
    stale = trial(0, 100.0, generation=0)
    me = trial(0, 0.0, generation=1)
    population = [stale, trial(1, 1.0), trial(2, 2.0), trial(3, 3.0)]
    assert picks(Truncation(fraction=0.25), me, population) == {3}


def test_truncation_is_deterministic_given_the_seed() -> None:
    population = [trial(m, float(m)) for m in range(8)]
    strategy = Truncation(fraction=0.5)
    first = [strategy.select(population[0], population, "max", rng(s)).id for s in range(30)]
    assert first == [strategy.select(population[0], population, "max", rng(s)).id
                     for s in range(30)]
    assert len(set(first)) > 1


# -- MultiRate ----------------------------------------------------------------------------------
def test_multirate_selects_only_every_interval_segments() -> None:
    strategy = MultiRate(intervals=(1, 3))
    strong = trial(3, 9.0, generation=20)  # member 3: the slow sub-population too
    for generation in range(9):
        weak = trial(1, 0.0, generation=generation)  # member 1: every third segment
        chosen = strategy.select(weak, [weak, strong], "max", rng())
        assert (chosen is strong) == ((generation + 1) % 3 == 0), generation
        weak0 = trial(0, 0.0, generation=generation)  # member 0: every segment
        assert strategy.select(weak0, [weak0, strong], "max", rng()) is strong


def test_multirate_never_copies_a_faster_sub_population() -> None:
    strategy = MultiRate(intervals=(1, 2), window=100)
    slow = trial(1, 0.0, generation=1)  # selects now: (1 + 1) % 2 == 0
    faster = [trial(m, 9.0, generation=1) for m in (0, 2, 4)]
    same_or_slower = trial(3, 5.0, generation=1)
    assert picks(strategy, slow, [slow, *faster]) == {1}
    assert picks(strategy, slow, [slow, *faster, same_or_slower]) == {3}
    fast = trial(0, 0.0, generation=1)
    others = [trial(1, 9.0, generation=1), trial(2, 9.0, generation=1)]
    assert picks(strategy, fast, [fast, *others]) == {1, 2}


def test_multirate_is_deterministic_given_the_seed() -> None:
    population = [trial(m, float(m), generation=3) for m in range(8)]
    strategy = MultiRate()
    first = [strategy.select(population[0], population, "max", rng(s)).member for s in range(20)]
    again = [strategy.select(population[0], population, "max", rng(s)).member for s in range(20)]
    assert first == again and len(set(first)) > 1


# -- decide --------------------------------------------------------------------------------

_DECIDE = {"space": SPACE, "exploit": Tournament(), "explore": Perturb(), "mode": "max",
           "max_steps": 100}


def test_decide_stops_at_max_steps_even_when_it_lost() -> None:
    me, best = trial(0, 0.0, end_step=100), trial(1, 1.0, end_step=100)
    decision = decide(me, [me, best], rng=rng(), **_DECIDE)  # type: ignore[arg-type]
    assert isinstance(decision, Stop)
    assert "max_steps" in decision.reason
    assert isinstance(decide(trial(0, 0.0, end_step=150), [], rng=rng(), **_DECIDE),  # type: ignore[arg-type]
                      Stop)


def test_decide_continues_when_it_wins() -> None:
    me, other = trial(0, 1.0, end_step=50), trial(1, 0.0, end_step=50)
    assert decide(me, [me, other], rng=rng(), **_DECIDE) == Continue()  # type: ignore[arg-type]


def test_decide_exploits_with_params_explored_from_the_parent() -> None:
    parent_params = {"lr": 0.01, "units": 100, "act": "tanh"}
    me = trial(0, 0.0, end_step=50, params={"lr": 0.5, "units": 8, "act": "relu"})
    other = trial(1, 1.0, end_step=50, params=parent_params)
    settings_ = {**_DECIDE, "explore": Perturb(factors=(2.0,), resample_probability=0.0)}
    decision = decide(me, [me, other], rng=rng(3), **settings_)  # type: ignore[arg-type]
    assert isinstance(decision, Exploit)
    assert decision.parent_id == other.id
    assert decision.params["lr"] == pytest.approx(0.02)
    assert decision.params["units"] == 200
    assert decision.params["act"] in {"relu", "tanh", "gelu"}
    assert other.params == parent_params  # the parent's record is not touched


@pytest.mark.parametrize("exploit", [Tournament(), Truncation(0.5)])
def test_decide_never_copies_a_member_that_reached_max_steps(exploit: ExploitStrategy) -> None:
    # Copying a finished member would give the copy a trial of zero steps.
    me, finished = trial(0, 0.0, end_step=50), trial(1, 1.0, end_step=100)
    settings_ = {**_DECIDE, "exploit": exploit}
    for seed in range(20):
        decision = decide(me, [me, finished], rng=rng(seed), **settings_)  # type: ignore[arg-type]
        assert decision == Continue()
    behind = trial(2, 1.0, end_step=40)
    decisions = {type(decide(me, [me, finished, behind], rng=rng(seed),  # type: ignore[arg-type]
                             **settings_)) for seed in range(20)}
    assert Exploit in decisions


@pytest.mark.parametrize("exploit", [Tournament(), Truncation(0.5)])
def test_decide_never_copies_a_member_whose_checkpoint_is_gone(exploit: ExploitStrategy
                                                                ) -> None:
    # A checkpoint deleted from outside pbtune: there is nothing to warm-start from.
    me = trial(0, 0.0, end_step=50)
    gone = replace(trial(1, 1.0, end_step=50), checkpoint_gone="/ckpt/trial-000001")
    settings_ = {**_DECIDE, "exploit": exploit}
    for seed in range(20):
        decision = decide(me, [me, gone], rng=rng(seed), **settings_)  # type: ignore[arg-type]
        assert decision == Continue()
    there = trial(2, 0.5, end_step=50)
    decisions = [decide(me, [me, gone, there], rng=rng(seed),  # type: ignore[arg-type]
                        **settings_) for seed in range(20)]
    assert {d.parent_id for d in decisions if isinstance(d, Exploit)} == {there.id}


@given(
    fitnesses=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=10),
    seed=st.integers(0, 2**32 - 1),
    truncation=st.booleans(),
    mode=st.sampled_from(["max", "min"]),
)
def test_decide_explored_params_stay_inside_bounds(
    fitnesses: list[float], seed: int, truncation: bool, mode: str
) -> None:
    sample_rng = rng(seed)
    population = [trial(m, f, end_step=20, params=SPACE.sample(sample_rng))
                  for m, f in enumerate(fitnesses)]
    exploit = Truncation(0.5) if truncation else Tournament()
    kwargs = {**_DECIDE, "exploit": exploit, "mode": mode}
    for finished in population:
        decision = decide(finished, population, rng=rng(seed), **kwargs)  # type: ignore[arg-type]
        again = decide(finished, population, rng=rng(seed), **kwargs)  # type: ignore[arg-type]
        assert decision == again
        flat = len(population) >= 2 and len(set(fitnesses)) == 1
        if isinstance(decision, Explore):  # in place: only on a plateau
            assert SPACE.validate(decision.params) == decision.params
            assert flat
        elif isinstance(decision, Exploit):
            assert SPACE.validate(decision.params) == decision.params
            parent = next(t for t in population if t.id == decision.parent_id)
            assert parent.member != finished.member
            sign = 1 if mode == "max" else -1
            assert sign * parent.fitness > sign * finished.fitness  # type: ignore[operator]
        else:
            assert isinstance(decision, Continue) and not flat


def test_decide_keeps_immutable_params() -> None:
    space = SearchSpace({"lr": Float(1e-4, 1.0, log=True),
                         "batch": Int(16, 256, mutable=False)})
    me = trial(0, 0.0, params={"lr": 0.1, "batch": 32})
    other = trial(1, 1.0, params={"lr": 0.01, "batch": 128})
    for seed in range(30):
        for explore in (Perturb(resample_probability=1.0), Resample()):
            decision = decide(me, [me, other], space=space, exploit=Tournament(),
                              explore=explore, mode="max", max_steps=100, rng=rng(seed))
            assert isinstance(decision, Exploit)
            assert decision.params["batch"] == 128  # the parent's, never changed


# -- serialized forms ----------------------------------------------------------------------


@dataclass(frozen=True)
class BestAlways(ExploitStrategy):
    """A user's own exploit strategy: always copy the fittest member."""

    margin: float = 0.0

    def select(self, finished: FrozenTrial, population: Sequence[FrozenTrial], mode: Any,
               rng: np.random.Generator) -> FrozenTrial:
        return max([*population, finished], key=lambda t: t.fitness or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"type": f"{__name__}:BestAlways", "margin": self.margin}


@dataclass(frozen=True)
class KeepAll(ExploreStrategy):
    def explore(self, params: Mapping[str, Any], space: SearchSpace,
                rng: np.random.Generator) -> dict[str, Any]:
        return dict(params)

    def to_dict(self) -> dict[str, Any]:
        return {"type": f"{__name__}:KeepAll"}


@pytest.mark.parametrize(
    "strategy", [Tournament(), Tournament(window=0), Tournament(window=7), Truncation(),
                 Truncation(fraction=0.5), Truncation(fraction=0.1), BestAlways(margin=0.5),
                 MultiRate(), MultiRate(intervals=[1, 5], window=0)],
)
def test_exploit_round_trips(strategy: ExploitStrategy) -> None:
    assert exploit_from_dict(strategy.to_dict()) == strategy
    assert exploit_from_dict(json.loads(json.dumps(strategy.to_dict()))) == strategy


@pytest.mark.parametrize(
    "strategy", [Perturb(), Perturb(factors=(0.5, 1.0, 2.0), resample_probability=0.0),
                 Perturb(factors=[1.5], resample_probability=1), Resample(), KeepAll()],
)
def test_explore_round_trips(strategy: ExploreStrategy) -> None:
    assert explore_from_dict(strategy.to_dict()) == strategy
    assert explore_from_dict(json.loads(json.dumps(strategy.to_dict()))) == strategy


def test_short_names() -> None:
    assert exploit_from_dict("tournament") == Tournament()
    assert exploit_from_dict("truncation") == Truncation()
    assert exploit_from_dict("multirate") == MultiRate()
    assert explore_from_dict("perturb") == Perturb()
    assert explore_from_dict("resample") == Resample()
    assert Perturb(factors=[0.8, 1.25]).factors == (0.8, 1.25)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Tournament(window=-1), r"window=\.\.\.\) must be an int >= 0, got -1"),
        (lambda: Tournament(window=1.5), r"must be an int >= 0, got 1\.5"),
        (lambda: Tournament(window=True), r"must be an int >= 0, got True"),
        (lambda: Tournament(window="2"), r"must be an int >= 0, got '2'"),
        (lambda: Truncation(fraction=0), r"fraction=\.\.\.\) must be in \(0, 0\.5\], got 0"),
        (lambda: Truncation(fraction=0.6), r"must be in \(0, 0\.5\], got 0\.6"),
        (lambda: Truncation(fraction=-0.1), r"must be in \(0, 0\.5\]"),
        (lambda: Truncation(fraction=float("nan")), r"must be in \(0, 0\.5\], got nan"),
        (lambda: Truncation(fraction="0.25"), r"must be in \(0, 0\.5\], got '0\.25'"),
        (lambda: Perturb(factors=[]), r"factors=\.\.\.\) must be a non-empty list of positive"),
        (lambda: Perturb(factors=[0.8, 0.0]), r"non-empty list of positive numbers"),
        (lambda: Perturb(factors=[-1.0]), r"positive numbers"),
        (lambda: Perturb(factors=["a"]), r"positive numbers"),
        (lambda: Perturb(factors="ab"), r"positive numbers"),
        (lambda: Perturb(factors=[True]), r"positive numbers"),
        (lambda: Perturb(factors=1.2), r"positive numbers, got 1\.2"),
        (lambda: Perturb(factors=[float("nan")]), r"positive numbers"),
        (lambda: Perturb(resample_probability=1.5), r"resample_probability=\.\.\.\) must be in"),
        (lambda: Perturb(resample_probability=-0.1), r"must be in \[0, 1\]"),
        (lambda: Perturb(resample_probability=True), r"must be in \[0, 1\], got True"),
        (lambda: Perturb(resample_probability=float("nan")), r"must be in \[0, 1\]"),
        (lambda: exploit_from_dict({"type": "tournament", "fraction": 0.3}),
         r"tournament: unknown settings \['fraction'\]; allowed: \['window'\]"),
        (lambda: exploit_from_dict({"type": "truncation", "fraction": 0.9}), r"\(0, 0\.5\]"),
        (lambda: exploit_from_dict({"type": "tournament", "window": -3}), r"int >= 0"),
        (lambda: exploit_from_dict({"type": "nope"}),
         r"exploit type must be one of tournament, truncation, multirate, or 'module:Class'"),
        (lambda: MultiRate(intervals=[]), r"intervals=\.\.\.\) must be a non-empty list of ints"),
        (lambda: MultiRate(intervals=[1, 0]), r"non-empty list of ints >= 1"),
        (lambda: MultiRate(intervals=[1.5]), r"non-empty list of ints >= 1"),
        (lambda: MultiRate(intervals="12"), r"non-empty list of ints >= 1"),
        (lambda: MultiRate(window=-1), r"MultiRate\(window=\.\.\.\) must be an int >= 0"),
        (lambda: exploit_from_dict({"window": 2}), r"exploit type must be one of.*got None"),
        (lambda: exploit_from_dict("perturb"), r"exploit type must be one of"),
        (lambda: exploit_from_dict(None), r"exploit type must be one of.*got None"),
        (lambda: exploit_from_dict(3), r"exploit type must be one of.*got 3"),
        (lambda: exploit_from_dict(["tournament"]), r"exploit type must be one of"),
        (lambda: exploit_from_dict("os:path"), r"'os:path' is not a subclass of ExploitStrategy"),
        (lambda: exploit_from_dict(f"{__name__}:KeepAll"),
         r"is not a subclass of ExploitStrategy"),
        (lambda: exploit_from_dict("no_such_module_for_pbtune:Foo"),
         r"cannot import exploit strategy 'no_such_module_for_pbtune:Foo'"),
        (lambda: exploit_from_dict("pbtune:NoSuchThing"), r"cannot import exploit strategy"),
        (lambda: exploit_from_dict({"type": f"{__name__}:BestAlways", "bogus": 1}),
         r"exploit strategy '.*:BestAlways': .*unexpected keyword argument 'bogus'"),
        (lambda: explore_from_dict({"type": "resample", "factors": [2]}),
         r"resample: unknown settings \['factors'\]; allowed: \[\]"),
        (lambda: explore_from_dict({"type": "perturb", "factor": [2]}),
         r"perturb: unknown settings \['factor'\]"),
        (lambda: explore_from_dict("tournament"), r"explore type must be one of perturb, resample"),
        (lambda: explore_from_dict(None), r"explore type must be one of.*got None"),
        (lambda: explore_from_dict(f"{__name__}:BestAlways"),
         r"is not a subclass of ExploreStrategy"),
    ],
)
def test_bad_strategy_configs_raise_config_error(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


@pytest.mark.parametrize("exploit", [Tournament(), Truncation(0.25), Truncation(0.5)])
def test_on_a_plateau_every_member_explores_in_place(exploit: Any) -> None:
    # Every member at accuracy 0 (say, every lr far too high): nobody is fitter, so nobody
    # copies; each member explores its own params from its own checkpoint.
    population = [trial(m, 0.0, end_step=20, params=SPACE.sample(rng(m))) for m in range(4)]
    for finished in population:
        for seed in range(10):
            decision = decide(finished, population, rng=rng(seed),  # type: ignore[arg-type]
                              **{**_DECIDE, "exploit": exploit})
            assert isinstance(decision, Explore)
            assert SPACE.validate(decision.params) == decision.params


def test_one_fitter_member_ends_the_plateau_rule() -> None:
    # Three tied at 0 and one ahead: the tied initiator that meets another tied member
    # continues (the tie rule), and meeting the fitter one copies it.
    population = [trial(m, 0.0, end_step=20) for m in range(3)] + [trial(3, 1.0, end_step=20)]
    me = population[0]
    decisions = [decide(me, population, rng=rng(seed),  # type: ignore[arg-type]
                        **{**_DECIDE, "exploit": Tournament()}) for seed in range(40)]
    assert Continue() in decisions
    copies = {d.parent_id for d in decisions if isinstance(d, Exploit)}
    assert copies == {population[3].id}


def test_a_strategy_can_refuse_to_explore_on_a_plateau() -> None:
    class Never(ExploitStrategy):  # a random-search baseline: params never change
        explore_on_plateau = False

        def select(self, finished: Any, population: Any, mode: Any, rng: Any) -> Any:
            return finished

        def to_dict(self) -> dict[str, Any]:
            return {"type": "never"}

    population = [trial(m, 0.0, end_step=20) for m in range(4)]
    for finished in population:
        decision = decide(finished, population, rng=rng(),  # type: ignore[arg-type]
                          **{**_DECIDE, "exploit": Never()})
        assert decision == Continue()
