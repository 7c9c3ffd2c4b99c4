"""Several objectives, constraints and the early stop, on plain data (no storage), and the
settings that ask for them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pbtune
from pbtune import PB2, ConfigError, Float, FrozenTrial, SearchSpace, TrialFailedError, TrialState
from pbtune.controller import StudyConfig
from pbtune.controller._metrics import check_metrics
from pbtune.strategies import (
    Bound,
    Continue,
    Criteria,
    Exploit,
    Explore,
    Lagging,
    Restart,
    Tournament,
    Truncation,
    crowding_distance,
    decide,
    decide_next,
    dominates,
    early_stop_from_dict,
    hypervolume,
    non_dominated_fronts,
)

SPACE = SearchSpace({"x": Float(0.0, 1.0)})
TWO = Criteria((("acc", "max"), ("cost", "min")))


def trial(number: int, member: int | None = None, *, fitness: float | None = None,
          end_step: int = 10, generation: int = 1, **metrics: float) -> FrozenTrial:
    """A COMPLETE trial with ``metrics``; member and id default to ``number``."""
    return FrozenTrial(id=number, member=number if member is None else member,
                       generation=generation, parent_id=None, params={"x": 0.5},
                       start_step=end_step - 10, end_step=end_step, state=TrialState.COMPLETE,
                       metrics=dict(metrics), fitness=fitness)


def decide_with(finished: FrozenTrial, population: list[FrozenTrial], criteria: Criteria,
                exploit: Any = None, seed: int = 0, **options: Any) -> Any:
    return decide(finished, population, space=SPACE, exploit=exploit or Tournament(),
                  explore=pbtune.Perturb(), mode="max", max_steps=100,
                  rng=np.random.default_rng(seed), criteria=criteria, **options)


# -- the pure functions --------------------------------------------------------------------
def test_dominance_needs_as_good_everywhere_and_better_somewhere() -> None:
    assert dominates((2, 2), (1, 2)) and not dominates((1, 2), (2, 2))
    assert not dominates((2, 1), (1, 2)) and not dominates((1, 2), (2, 1))
    assert not dominates((1, 1), (1, 1))  # equal points do not dominate each other


def test_fronts_peel_the_population_and_equal_points_share_one() -> None:
    points = np.array([[3, 1], [2, 2], [1, 3], [1, 1], [2, 2], [0, 0], [1, 2]], dtype=float)
    assert non_dominated_fronts(points) == [[0, 1, 2, 4], [6], [3], [5]]
    assert non_dominated_fronts(np.zeros((0, 2))) == []


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)),
                min_size=1, max_size=25))
def test_fronts_agree_with_dominance(rows: list[tuple[int, int, int]]) -> None:
    points = np.array(rows, dtype=float)
    fronts = non_dominated_fronts(points)
    assert sorted(i for front in fronts for i in front) == list(range(len(rows)))
    level = {i: k for k, front in enumerate(fronts) for i in front}
    for i, a in enumerate(rows):
        dominated_by = [j for j, b in enumerate(rows) if dominates(b, a)]
        # front 0 is dominated by no one; a later front by someone of the one before
        assert (level[i] == 0) == (not dominated_by)
        assert all(level[j] < level[i] for j in dominated_by)
        if level[i] > 0:
            assert any(level[j] == level[i] - 1 for j in dominated_by)


def test_crowding_puts_the_ends_first_and_gives_equal_points_nothing() -> None:
    front = np.array([[0.0, 1.0], [0.1, 0.9], [0.2, 0.8], [1.0, 0.0]])
    distance = crowding_distance(front)
    assert math.isinf(distance[0]) and math.isinf(distance[3])
    assert distance[2] > distance[1] > 0  # point 2 has more room (up to 1.0) than point 1
    assert list(crowding_distance(np.ones((3, 2)))) == [0.0, 0.0, 0.0]


def test_hypervolume_is_exact_in_two_and_three_objectives() -> None:
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (0, 0)) == pytest.approx(6.0)
    assert hypervolume([(1, 1, 1)], (0, 0, 0)) == pytest.approx(1.0)
    # two unit-overlapping boxes: 2*1*1 + 1*2*1 - overlap 1*1*1
    assert hypervolume([(2, 1, 1), (1, 2, 1)], (0, 0, 0)) == pytest.approx(3.0)
    assert hypervolume([(-1, 5)], (0, 0)) == 0.0  # not above the reference: nothing
    assert hypervolume([], (0, 0)) == 0.0


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=12))
def test_hypervolume_of_two_objectives_matches_a_grid_count(points: list[tuple[float, float]]
                                                            ) -> None:
    grid = (np.arange(200) + 0.5) / 200
    xs, ys = np.meshgrid(grid, grid)
    covered = np.zeros_like(xs, dtype=bool)
    for x, y in points:
        covered |= (xs <= x) & (ys <= y)
    assert hypervolume(points, (0, 0)) == pytest.approx(covered.mean(), abs=0.02)


# -- Deb's rule and the ranking --------------------------------------------------------------
def test_a_feasible_trial_beats_any_infeasible_one_and_less_violation_wins() -> None:
    criteria = Criteria((("acc", "max"), ("cost", "min")), (Bound("mem", high=100.0),))
    good_but_big = trial(0, acc=0.99, cost=0.0, mem=150.0)     # violation 0.5
    poor_but_fits = trial(1, acc=0.10, cost=9.0, mem=90.0)
    slightly_big = trial(2, acc=0.50, cost=5.0, mem=110.0)     # violation 0.1
    ranked = criteria.ranked([good_but_big, poor_but_fits, slightly_big])
    assert [t.id for t in ranked] == [1, 2, 0]
    assert criteria.front([good_but_big, poor_but_fits, slightly_big]) == [poor_but_fits]


def test_when_no_trial_is_feasible_the_front_is_the_least_violating() -> None:
    criteria = Criteria((("acc", "max"),), (Bound("mem", low=10.0, high=20.0),))
    trials = [trial(0, fitness=0.9, mem=30.0), trial(1, fitness=0.1, mem=5.0),
              trial(2, fitness=0.5, mem=25.0)]  # violations 0.5, 0.5, 0.25
    assert criteria.front(trials) == [trials[2]]
    assert [t.id for t in criteria.ranked(trials)] == [2, 0, 1]


def test_one_objective_without_constraints_compares_fitness_as_before() -> None:
    criteria = Criteria((("loss", "min"),))
    assert criteria.plain
    trials = [trial(0, fitness=3.0), trial(1, fitness=1.0), trial(2, fitness=2.0)]
    assert [t.id for t in criteria.ranked(trials)] == [1, 2, 0]
    assert criteria.front(trials) == [trials[1]]


def test_a_population_of_one_is_its_own_front() -> None:
    only = trial(0, acc=0.5, cost=1.0)
    assert TWO.front([only]) == [only]
    assert TWO.scores([only]) == {0: 0.0}
    assert TWO.front([]) == []


# -- decisions -----------------------------------------------------------------------------
def test_the_dominating_trial_wins_a_tournament() -> None:
    weak, strong = trial(0, acc=0.5, cost=2.0), trial(1, acc=0.6, cost=1.0)
    chosen = decide_with(weak, [weak, strong], TWO)
    assert isinstance(chosen, Exploit) and chosen.parent_id == 1
    assert decide_with(strong, [weak, strong], TWO) == Continue()


def test_a_tie_on_the_front_goes_to_the_trial_with_more_room() -> None:
    # Four trials on one front: 0 and 3 at its ends; 1 is crowded against 0, 2 is not.
    front = [trial(0, acc=0.0, cost=0.0), trial(1, acc=0.1, cost=0.1),
             trial(2, acc=0.5, cost=0.5), trial(3, acc=1.0, cost=1.0)]
    for seed in range(20):  # whoever it meets, a crowded trial never wins, an end never loses
        chosen = decide_with(front[1], front, TWO, seed=seed)
        assert isinstance(chosen, Exploit) and chosen.parent_id in (0, 2, 3)
        assert decide_with(front[0], front, TWO, seed=seed) == Continue()
        assert decide_with(front[3], front, TWO, seed=seed) == Continue()


def test_selection_spreads_along_the_front_instead_of_collapsing() -> None:
    """A front crowded at one end: each decision copies only towards more room, so the
    copies go to the sparse part and the ends are never lost."""
    points = [(0.0, 0.0), (0.02, 0.02), (0.04, 0.04), (0.06, 0.06), (0.5, 0.5), (1.0, 1.0)]
    front = [trial(i, acc=a, cost=c) for i, (a, c) in enumerate(points)]
    distance = crowding_distance(np.array([TWO.values(t) for t in front]))
    copies: list[tuple[int, int]] = []
    for seed in range(50):
        for finished in front:
            chosen = decide_with(finished, front, TWO, seed=seed)
            if isinstance(chosen, Exploit):
                assert distance[chosen.parent_id] > distance[finished.id]
                copies.append((finished.id, chosen.parent_id))
    assert {0, 5} <= {parent for _, parent in copies}  # the ends are copied, never lost
    assert {1, 2} <= {member for member, _ in copies}  # the crowded ones move away
    # nobody outside the cluster copies into it
    assert not [c for c in copies if c[0] in (0, 4, 5) and c[1] in (1, 2, 3)]


def test_truncation_ranks_by_fronts_then_crowding() -> None:
    population = [trial(0, acc=1.0, cost=0.0), trial(1, acc=0.9, cost=0.1),
                  trial(2, acc=0.1, cost=0.9), trial(3, acc=0.0, cost=1.0)]  # 0 dominates all
    chosen = decide_with(population[3], population, TWO, exploit=Truncation(0.25))
    assert isinstance(chosen, Exploit) and chosen.parent_id == 0
    assert decide_with(population[0], population, TWO, exploit=Truncation(0.25)) == Continue()


def test_a_feasible_opponent_wins_against_a_better_infeasible_initiator() -> None:
    criteria = Criteria((("acc", "max"),), (Bound("mem", high=1.0),))
    cheater, honest = trial(0, fitness=0.99, mem=2.0), trial(1, fitness=0.5, mem=0.5)
    chosen = decide_with(cheater, [cheater, honest], criteria)
    assert isinstance(chosen, Exploit) and chosen.parent_id == 1


def test_a_population_of_equal_points_explores_in_place() -> None:
    same = [trial(i, acc=0.5, cost=0.5) for i in range(3)]
    assert isinstance(decide_with(same[0], same, TWO), Explore)


def test_decisions_are_a_function_of_their_arguments() -> None:
    rng = np.random.default_rng(3)
    population = [trial(i, acc=float(a), cost=float(c))
                  for i, (a, c) in enumerate(rng.random((8, 2)))]
    first = [decide_with(t, population, TWO, seed=7) for t in population]
    again = [decide_with(t, population, TWO, seed=7) for t in population]
    assert first == again


# -- the early stop ------------------------------------------------------------------------
def _lagging_population() -> list[FrozenTrial]:
    return [trial(i, fitness=float(i)) for i in range(8)]  # member 0 is the worst


def test_lagging_counts_results_in_a_row_at_the_bottom() -> None:
    rule = Lagging(generations=3)
    population = _lagging_population()
    scores = {t.id: t.fitness for t in population}
    assert rule.count(population[0], population, scores, 0) == 1
    assert rule.count(population[0], population, scores, 2) == 3 and rule.stops(3)
    assert rule.count(population[5], population, scores, 2) == 0  # not at the bottom: reset
    only = [population[0]]
    assert rule.count(only[0], only, {0: 0.0}, 5) == 0  # a population of one never lags


def test_ties_do_not_count_against_a_member() -> None:
    rule = Lagging(generations=1, fraction=0.25)
    same = [trial(i, fitness=1.0) for i in range(8)]
    assert rule.count(same[0], same, {t.id: 1.0 for t in same}, 0) == 0


def test_a_lagging_member_restarts_from_a_top_member() -> None:
    population = _lagging_population()
    rule = Lagging(generations=3)
    for seed in range(10):
        below = decide_next(population[0], population, space=SPACE, exploit=Tournament(),
                            explore=pbtune.Perturb(), mode="max", max_steps=100,
                            rng=np.random.default_rng(seed), early_stop=rule, lagging=2)
        assert isinstance(below.decision, Restart) and below.lagging == 0
        assert below.decision.parent_id in (6, 7)  # the top quarter
        not_yet = decide_next(population[0], population, space=SPACE, exploit=Tournament(),
                              explore=pbtune.Perturb(), mode="max", max_steps=100,
                              rng=np.random.default_rng(seed), early_stop=rule, lagging=1)
        assert not isinstance(not_yet.decision, Restart) and not_yet.lagging == 2
        above = decide_next(population[7], population, space=SPACE, exploit=Tournament(),
                            explore=pbtune.Perturb(), mode="max", max_steps=100,
                            rng=np.random.default_rng(seed), early_stop=rule, lagging=2)
        assert above.lagging == 0  # not at the bottom: the count starts again


def test_lagging_judges_several_objectives_by_their_standing() -> None:
    population = [trial(0, acc=0.0, cost=1.0)] + [
        trial(i, acc=0.5 + i / 20, cost=0.5 - i / 20) for i in range(1, 8)]
    chosen = decide_with(population[0], population, TWO, early_stop=Lagging(generations=1))
    assert isinstance(chosen, Restart) and chosen.parent_id != 0


# -- settings ------------------------------------------------------------------------------
def config(**changes: Any) -> StudyConfig:
    settings: dict[str, Any] = dict(space=SPACE, metric=None, mode="max", population_size=4,
                                    steps_per_trial=10, max_steps=100,
                                    objectives={"acc": "max", "cost": "min"})
    settings.update(changes)
    return StudyConfig(**settings)


@pytest.mark.parametrize("changes, message", [
    ({"metric": "acc"}, "got metric and objectives"),
    ({"objectives": None}, "give exactly one of metric="),
    ({"objectives": {"acc": "up"}}, "objective 'acc' must be 'max' or 'min'"),
    ({"objectives": ["acc", "cost"]}, "objectives must be a non-empty dict"),
    ({"constraints": {"mem": {"max": "big"}}}, "constraint 'mem': max must be a finite number"),
    ({"constraints": {"mem": 2048}}, "must be a dict with 'max' and/or 'min'"),
    ({"constraints": {"mem": {"below": 3}}}, "must be a dict with 'max' and/or 'min'"),
    ({"constraints": {"mem": {"min": 5, "max": 1}}}, "min (5) is above max (1)"),
    ({"explore": PB2()}, "PB2 models one number"),
    ({"early_stop": "lagging"}, "early_stop must be a rule such as pbtune.Lagging"),
])
def test_bad_settings_are_refused_with_what_to_write(changes: dict[str, Any], message: str
                                                     ) -> None:
    with pytest.raises(ConfigError, match=".*" + "".join(
            "\\" + c if c in "()[]{}.*+?|^$" else c for c in message)):
        config(**changes)


def test_bad_settings_record_nothing() -> None:
    storage = pbtune.Storage()
    with pytest.raises(ConfigError):
        pbtune.create_study("s", storage=storage, space=SPACE, metric="acc",
                            objectives={"acc": "max", "cost": "min"})
    assert storage.list_studies() == []


def test_one_objective_is_the_metric_and_settings_round_trip() -> None:
    single = config(objectives={"loss": "min"})
    assert (single.metric, single.mode, single.objectives) == ("loss", "min", None)
    full = config(constraints={"mem": {"max": 2048}}, early_stop=Lagging(4, 0.5))
    again = StudyConfig.from_dict(full.to_dict())
    assert again == full and again.early_stop == Lagging(4, 0.5)
    assert again.criteria.constraints == (Bound("mem", None, 2048.0),)
    plain = StudyConfig(space=SPACE, metric="acc", mode="max", population_size=4,
                        steps_per_trial=10, max_steps=100).to_dict()
    assert not {"objectives", "constraints", "early_stop"} & set(plain)


def test_early_stop_from_its_stored_form() -> None:
    assert early_stop_from_dict({"type": "lagging", "generations": 2}) == Lagging(2)
    assert early_stop_from_dict(None) is None
    with pytest.raises(ConfigError, match="unknown settings"):
        early_stop_from_dict({"type": "lagging", "patience": 2})
    with pytest.raises(ConfigError, match="early_stop type must be one of lagging"):
        early_stop_from_dict({"type": "median"})
    with pytest.raises(ConfigError, match="generations"):
        Lagging(generations=0)


def test_a_result_without_an_objective_or_constrained_metric_fails_clearly() -> None:
    study = config(constraints={"mem": {"max": 10}})
    assert check_metrics({"acc": 1.0, "cost": 2.0, "mem": 3.0}, study) == (
        {"acc": 1.0, "cost": 2.0, "mem": 3.0}, None)
    with pytest.raises(TrialFailedError, match="lack the study's objective 'cost'"):
        check_metrics({"acc": 1.0, "mem": 3.0}, study)
    with pytest.raises(TrialFailedError,
                       match=r"lack the study's constrained metric 'mem' \(constraints: "
                             r"mem <= 10\)"):
        check_metrics({"acc": 1.0, "cost": 2.0}, study)


def test_two_trials_that_tie_on_the_front_are_no_plateau() -> None:
    """Neither dominates and both are ends of the front: a tie keeps the initiator, and
    the member does not explore in place as it would on a plateau."""
    pair = [trial(0, acc=0.2, cost=1.0), trial(1, acc=0.1, cost=0.5)]
    assert decide_with(pair[0], pair, TWO) == Continue()
    assert decide_with(pair[1], pair, TWO) == Continue()
