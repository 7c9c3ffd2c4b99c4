"""PB2 on plain data: a history, a parent and a seeded generator (no storage)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbtune import PB2, Choice, ConfigError, Float, FrozenTrial, Int, Perturb, SearchSpace
from pbtune.strategies import History, Observation, Pending, explore_from_dict
from pbtune.strategies._pb2 import _Encoding
from pbtune.trial import TrialState

SPACE = SearchSpace({
    "lr": Float(1e-4, 1e-1, log=True),
    "momentum": Float(0.0, 0.99),
    "batch": Int(8, 512, log=True),
    "layers": Int(1, 6),
    "width": Choice([32, 64, 128, 256], ordered=True),
    "optimizer": Choice(["sgd", "adam", "rmsprop"]),
    "seed": Int(0, 100, mutable=False),
})


def parent(params: Mapping[str, Any], *, fitness: float = 0.5, end_step: int = 100,
           member: int = 0) -> FrozenTrial:
    return FrozenTrial(
        id=10_000, member=member, generation=5, parent_id=None,
        params=dict(params), start_step=end_step - 10, end_step=end_step,
        state=TrialState.COMPLETE, metrics={"score": fitness}, fitness=fitness,
    )


def history(space: SearchSpace, gain: Callable[[Mapping[str, Any]], float], n: int,
            seed: int = 0, members: int = 8, noise: float = 0.0) -> History:
    """``n`` results of 10 steps each, the params drawn from ``space``, each improving the
    fitness by ``gain(params)`` per step (plus noise)."""
    rng = np.random.default_rng(seed)
    observations = []
    fitness = [0.0] * members
    for i in range(n):
        member = i % members
        params = space.sample(rng)
        start = fitness[member]
        fitness[member] = start + 10 * (gain(params) + noise * rng.normal())
        step = 10 * (i // members)
        observations.append(Observation(
            trial_id=i, member=member, parent_id=i - members if i >= members else None,
            params=params, start_step=step, end_step=step + 10,
            start_fitness=start if i >= members else None, end_fitness=fitness[member]))
    return History(tuple(observations))


def propose(strategy: PB2, space: SearchSpace, hist: History, seed: int = 0,
            mode: str = "max", base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The params PB2 proposes for a member that copies the newest result's trial."""
    params = base if base is not None else space.sample(np.random.default_rng(1234))
    newest = hist.observations[-1] if hist.observations else None
    start = parent(params) if newest is None else parent(
        params, fitness=newest.end_fitness, end_step=newest.end_step)
    return strategy.explore_from(start, space, np.random.default_rng(seed),
                                 history=hist, mode=mode)  # type: ignore[arg-type]


def peak_at_1e_2(params: Mapping[str, Any]) -> float:
    return math.exp(-((math.log10(params["lr"]) + 2.0) ** 2) / 0.18)


# -- what every proposal must be ----------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 80), seed=st.integers(0, 2**16), noise=st.floats(0.0, 1.0),
       mode=st.sampled_from(["max", "min"]))
def test_proposals_stay_inside_the_space(n: int, seed: int, noise: float, mode: str) -> None:
    hist = history(SPACE, peak_at_1e_2, n, seed=seed, noise=noise)
    base = SPACE.sample(np.random.default_rng(seed))
    new = propose(PB2(min_observations=1), SPACE, hist, seed=seed, mode=mode, base=base)
    assert SPACE.validate(new) == new
    assert isinstance(new["batch"], int) and isinstance(new["layers"], int)
    assert new["width"] in (32, 64, 128, 256)
    assert new["seed"] == base["seed"]  # mutable=False: the parent's value


def test_a_history_of_one_point_falls_back_to_the_fallback() -> None:
    hist = history(SPACE, peak_at_1e_2, 9)  # one result after the first generation
    base = SPACE.sample(np.random.default_rng(5))
    for seed in range(5):
        expected = Perturb().explore(base, SPACE, np.random.default_rng(seed))
        assert propose(PB2(), SPACE, hist, seed=seed, base=base) == expected
    assert SPACE.validate(propose(PB2(min_observations=1), SPACE, hist, base=base))


def test_identical_points_do_not_crash() -> None:
    params = SPACE.sample(np.random.default_rng(0))
    same = History(tuple(
        Observation(trial_id=i, member=i % 4, parent_id=i, params=params, start_step=10,
                    end_step=20, start_fitness=0.5, end_fitness=0.5)
        for i in range(30)))
    for seed in range(5):
        new = propose(PB2(), SPACE, same, seed=seed, base=params)
        assert SPACE.validate(new) == new


def test_without_a_history_pb2_explores_like_its_fallback() -> None:
    base = SPACE.sample(np.random.default_rng(0))
    fallback = Perturb(factors=(0.5, 2.0))
    assert PB2(fallback=fallback).explore(base, SPACE, np.random.default_rng(3)) == (
        fallback.explore(base, SPACE, np.random.default_rng(3)))


def test_the_same_inputs_give_the_same_params() -> None:
    hist = history(SPACE, peak_at_1e_2, 60, noise=0.1)
    assert propose(PB2(), SPACE, hist, seed=7) == propose(PB2(), SPACE, hist, seed=7)


def test_mode_min_is_mode_max_turned_around() -> None:
    hist = history(SPACE, peak_at_1e_2, 60, noise=0.1)
    flipped = History(tuple(
        Observation(o.trial_id, o.member, o.parent_id, o.params, o.start_step, o.end_step,
                    None if o.start_fitness is None else -o.start_fitness, -o.end_fitness)
        for o in hist.observations))
    base = SPACE.sample(np.random.default_rng(2))
    up = PB2().explore_from(parent(base, fitness=0.5), SPACE, np.random.default_rng(0),
                            history=hist, mode="max")
    down = PB2().explore_from(parent(base, fitness=-0.5), SPACE, np.random.default_rng(0),
                              history=flipped, mode="min")
    assert up == down


# -- what it learns -------------------------------------------------------------------------------
def test_it_finds_the_learning_rate_that_improves_fastest() -> None:
    space = SearchSpace({"lr": Float(1e-5, 1.0, log=True), "dropout": Float(0.0, 0.5)})
    hist = history(space, peak_at_1e_2, 64, noise=0.02)
    picks = [propose(PB2(), space, hist, seed=s)["lr"] for s in range(20)]
    # Random picks on five decades would land within a factor 3 of the peak 1 time in 5.
    near = [abs(math.log10(lr) + 2.0) < math.log10(3.0) for lr in picks]
    assert sum(near) >= 15, picks


def test_old_results_fade() -> None:
    """The best lr moved from 1e-4 to 1e-2 while training went on: the proposals follow
    the recent results, not the majority of the window."""
    space = SearchSpace({"lr": Float(1e-5, 1.0, log=True)})
    early = history(space, lambda p: math.exp(-((math.log10(p["lr"]) + 4.0) ** 2) / 0.18), 48)
    late = history(space, peak_at_1e_2, 16, seed=1)
    shifted = tuple(
        Observation(o.trial_id + 100, o.member, o.parent_id, o.params, o.start_step + 600,
                    o.end_step + 600, o.start_fitness, o.end_fitness)
        for o in late.observations)
    hist = History(early.observations + shifted)
    picks = [propose(PB2(), space, hist, seed=s, base={"lr": 1e-3}) for s in range(10)]
    assert all(abs(math.log10(p["lr"]) + 2.0) < 1.0 for p in picks), picks


def test_categories_are_chosen_by_their_rewards_and_still_explored() -> None:
    space = SearchSpace({"lr": Float(1e-3, 1e-1, log=True),
                         "optimizer": Choice(["sgd", "adam", "rmsprop"])})
    hist = history(space, lambda p: 1.0 if p["optimizer"] == "adam" else 0.1, 30, noise=0.05)
    picks = [propose(PB2(), space, hist, seed=s)["optimizer"] for s in range(300)]
    counts = {name: picks.count(name) for name in ("sgd", "adam", "rmsprop")}
    assert counts["adam"] > 150, counts  # chosen most of the time
    assert counts["sgd"] > 0 and counts["rmsprop"] > 0, counts  # the others still tried


def test_running_trials_push_the_proposal_away_from_their_point() -> None:
    """With no signal (every result the same), the bound is the uncertainty alone: the
    proposal goes where nothing was tried, and not where a running trial already is."""
    space = SearchSpace({"a": Float(0.0, 1.0), "b": Float(0.0, 1.0)})
    flat = history(space, lambda p: 0.0, 24)
    corners = [{"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 1.0},
               {"a": 1.0, "b": 0.0}]
    alone = propose(PB2(), space, flat, base={"a": 0.5, "b": 0.5})
    running = History(flat.observations, tuple(
        Pending(trial_id=900 + i, member=i + 1, params=p, start_step=100, end_step=110,
                start_fitness=0.0) for i, p in enumerate([*corners, alone])))
    crowded = propose(PB2(), space, running, base={"a": 0.5, "b": 0.5})
    distance = math.dist((crowded["a"], crowded["b"]), (alone["a"], alone["b"]))
    assert distance > 0.15, (alone, crowded)


# -- encoding -----------------------------------------------------------------------------------
@pytest.mark.parametrize("param", [Int(0, 10), Int(-5, 5), Int(1, 1000, log=True), Int(3, 4)])
def test_every_int_decodes_to_itself(param: Int) -> None:
    """Rounding, never truncation: an int does not drift toward a bound (Ray Tune's
    int() truncation sent most seeded runs to 0)."""
    encoding = _Encoding(SearchSpace({"n": param}))
    values = list(range(param.low, param.high + 1))
    points = encoding.encode([{"n": v} for v in values])[:, 0]
    assert [encoding.decode("n", u) for u in points] == values
    # Halfway between two values rounds to one of them, never beyond.
    for u in np.linspace(0.0, 1.0, 101):
        assert param.contains(encoding.decode("n", u))


def test_every_ordered_choice_decodes_to_itself() -> None:
    param = Choice([1, "two", 3.0, None], ordered=True)
    encoding = _Encoding(SearchSpace({"c": param}))
    points = encoding.encode([{"c": v} for v in param.choices])[:, 0]
    assert [encoding.decode("c", u) for u in points] == list(param.choices)


# -- settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", [
    PB2(), PB2(history_size=16, kappa=0.5, min_observations=2),
    PB2(fallback=Perturb(factors=(0.5, 2.0), resample_probability=0.0)),
])
def test_round_trips(strategy: PB2) -> None:
    assert explore_from_dict(json.loads(json.dumps(strategy.to_dict()))) == strategy


def test_short_name() -> None:
    assert explore_from_dict("pb2") == PB2()
    assert explore_from_dict({"type": "pb2", "fallback": "resample"}).to_dict()[
        "fallback"] == {"type": "resample"}


@pytest.mark.parametrize(("make", "message"), [
    (lambda: PB2(history_size=1), r"history_size=\.\.\.\) must be an int in \[2, 512\], got 1"),
    (lambda: PB2(history_size=10_000), r"must be an int in \[2, 512\], got 10000"),
    (lambda: PB2(history_size=2.5), r"must be an int in \[2, 512\]"),
    (lambda: PB2(kappa=-1), r"kappa=\.\.\.\) must be None or a finite number >= 0, got -1"),
    (lambda: PB2(kappa=float("inf")), r"finite number"),
    (lambda: PB2(min_observations=0), r"min_observations=\.\.\.\) must be an int >= 1"),
    (lambda: PB2(fallback="perturb"), r"fallback=\.\.\.\) must be an explore strategy"),
    (lambda: explore_from_dict({"type": "pb2", "window": 3}),
     r"pb2: unknown settings \['window'\]"),
])
def test_bad_settings_raise_config_error(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_decide_reads_the_history_only_to_explore() -> None:
    from pbtune import Tournament
    from pbtune.strategies import Continue, Exploit, decide

    space = SearchSpace({"lr": Float(1e-4, 1e-1, log=True)})
    calls: list[int] = []

    def read() -> History:
        calls.append(1)
        return history(space, peak_at_1e_2, 40)

    winner, loser = parent({"lr": 1e-3}, fitness=2.0), parent({"lr": 1e-2}, fitness=1.0,
                                                              member=1)
    loser = FrozenTrial(**{**loser.__dict__, "id": 20_000})
    settings = {"space": space, "exploit": Tournament(), "explore": PB2(), "mode": "max",
                "max_steps": 1000, "rng": np.random.default_rng(0), "history": read}
    assert decide(winner, [winner, loser], **settings) == Continue()  # type: ignore[arg-type]
    assert calls == []
    assert isinstance(decide(loser, [winner, loser], **settings), Exploit)  # type: ignore[arg-type]
    assert calls == [1]
