"""Search spaces: validation at definition, sampling and explore inside bounds, JSON forms."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import pbtune
from pbtune import Choice, Float, Int, Perturb, Resample, SearchSpace, SearchSpaceError

# -- validation at definition -------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Float(1.0, 1.0), r"low < high.*low=1\.0, high=1\.0"),
        (lambda: Float(2.0, 1.0), r"low < high"),
        (lambda: Float(0.0, 1.0, log=True), r"log=True\) needs low > 0.*positive lower bound"),
        (lambda: Float(-1.0, 1.0, log=True), r"needs low > 0"),
        (lambda: Float(float("nan"), 1.0), r"low must be a finite number, got nan"),
        (lambda: Float(0.0, float("inf")), r"high must be a finite number, got inf"),
        (lambda: Float(float("-inf"), 0.0), r"low must be a finite number"),
        (lambda: Float("0", 1.0), r"low must be a finite number, got '0'"),
        (lambda: Float(None, 1.0), r"low must be a finite number, got None"),
        (lambda: Float(True, 2.0), r"low must be a finite number, got True"),
        (lambda: Float(0.0, [1.0]), r"high must be a finite number"),
        (lambda: Float(0.5, 1.0, log="yes"), r"Float log must be True or False, got 'yes'"),
        (lambda: Float(0.0, 1.0, mutable="no"), r"mutable must be True or False"),
        (lambda: Int(3, 3), r"Int needs low < high, got low=3, high=3"),
        (lambda: Int(5, 1), r"Int needs low < high"),
        (lambda: Int(0, 10, log=True), r"Int\(log=True\) needs low >= 1"),
        (lambda: Int(0.5, 3), r"Int low must be an integer, got 0\.5"),
        (lambda: Int("1", 3), r"Int low must be an integer"),
        (lambda: Int(False, 3), r"Int low must be an integer, got False"),
        (lambda: Int(0, float("inf")), r"Int high must be an integer, got inf"),
        (lambda: Int(float("nan"), 3), r"Int low must be an integer, got nan"),
        (lambda: Int(1, 3, log=1), r"Int log must be True or False, got 1"),
        (lambda: Choice([]), r"at least one value, got an empty list"),
        (lambda: Choice(()), r"at least one value"),
        (lambda: Choice("abc"), r"needs a list of values, got 'abc'"),
        (lambda: Choice({1, 2}), r"needs a list of values"),
        (lambda: Choice(5), r"needs a list of values"),
        (lambda: Choice([1, 2, 1]), r"must be distinct, got \[1, 2, 1\]"),
        (lambda: Choice([1, 1.0]), r"must be distinct"),
        (lambda: Choice(["a", "a"]), r"must be distinct"),
        (lambda: Choice([[1], 2]), r"JSON scalars .* got \[1\] of type list"),
        (lambda: Choice([{"a": 1}]), r"JSON scalars .*of type dict"),
        (lambda: Choice([np.int64(3)]), r"JSON scalars .*of type int64"),
        (lambda: Choice([1.0, float("nan")]), r"must be finite, got nan"),
        (lambda: Choice([float("inf")]), r"must be finite"),
        (lambda: Choice([1, 2], ordered="yes"), r"Choice ordered must be True or False"),
        (lambda: Choice([1, 2], mutable=None), r"Choice mutable must be True or False"),
    ],
)
def test_invalid_params_raise_search_space_error(make: Any, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        make()


def test_search_space_error_is_a_value_error_and_a_pbtune_error() -> None:
    with pytest.raises(ValueError):
        Float(1.0, 0.0)
    with pytest.raises(pbtune.PbtuneError):
        Float(1.0, 0.0)


def test_bounds_are_normalized() -> None:
    assert Float(np.float32(0.5), 2).low == 0.5
    assert type(Float(0, 2).low) is float
    assert Int(np.int64(1), 4.0) == Int(1, 4)
    assert type(Int(1, 4.0).high) is int
    assert Choice([1, 2]).choices == (1, 2)
    assert Float(0.5, 1.0, log=np.bool_(True)).log is True  # numpy flags become bools


def test_bool_and_int_choices_are_distinct() -> None:
    choice = Choice([True, 1, False, 0, None, "1"])
    assert len(choice.choices) == 6
    assert choice.index(True) == 0
    assert choice.index(1) == 1
    assert choice.index(False) == 2
    assert choice.index(0) == 3
    assert choice.index(None) == 4
    assert choice.index("1") == 5
    assert choice.contains(1.0)  # JSON may carry 1 as 1.0; it is the same number
    assert not Choice([1, 2]).contains(True)
    with pytest.raises(SearchSpaceError, match=r"3 is not one of \[1, 2\]"):
        Choice([1, 2]).index(3)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, r"non-empty dict"),
        (None, r"non-empty dict"),
        ([("lr", Float(0.0, 1.0))], r"non-empty dict"),
        ({"": Float(0.0, 1.0)}, r"names must be non-empty strings, got ''"),
        ({1: Float(0.0, 1.0)}, r"names must be non-empty strings, got 1"),
        ({None: Float(0.0, 1.0)}, r"names must be non-empty strings"),
        ({"lr": (0.0, 1.0)}, r"'lr' must be pbtune.Float, pbtune.Int or pbtune.Choice"),
        ({"lr": 0.1}, r"'lr' must be pbtune.Float"),
        ({"lr": {"type": "float", "low": 0, "high": 1}}, r"'lr' must be pbtune.Float"),
    ],
)
def test_invalid_spaces_raise(params: Any, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        SearchSpace(params)


def test_space_is_an_immutable_mapping() -> None:
    space = SearchSpace({"lr": Float(1e-3, 1.0, log=True), "layers": Int(1, 4)})
    assert list(space) == ["lr", "layers"]
    assert len(space) == 2
    assert space["layers"] == Int(1, 4)
    assert SearchSpace(space) == space
    assert hash(SearchSpace(space)) == hash(space)
    with pytest.raises(TypeError):
        space["lr"] = Float(0.0, 1.0)  # type: ignore[index]


def test_validate() -> None:
    space = SearchSpace({"lr": Float(0.0, 1.0), "n": Int(1, 4), "act": Choice(["relu", "tanh"])})
    good = {"act": "tanh", "n": 2, "lr": 0.5}
    assert space.validate(good) == {"lr": 0.5, "n": 2, "act": "tanh"}
    with pytest.raises(SearchSpaceError, match=r"missing \['act'\], unknown \['x'\]"):
        space.validate({"lr": 0.5, "n": 2, "x": 1})
    with pytest.raises(SearchSpaceError, match=r"'lr'=1\.5 is outside"):
        space.validate({**good, "lr": 1.5})
    with pytest.raises(SearchSpaceError, match=r"'lr' is nan, not a finite number"):
        space.validate({**good, "lr": float("nan")})
    with pytest.raises(SearchSpaceError, match=r"'n' is inf"):
        space.validate({**good, "n": float("inf")})
    with pytest.raises(SearchSpaceError, match=r"'n'=2\.5 is outside"):
        space.validate({**good, "n": 2.5})
    with pytest.raises(SearchSpaceError, match=r"'n'=True is outside"):
        space.validate({**good, "n": True})
    with pytest.raises(SearchSpaceError, match=r"'act'='gelu' is outside"):
        space.validate({**good, "act": "gelu"})


def test_contains_never_raises_on_odd_values() -> None:
    for param in (Float(0.0, 1.0), Int(0, 5), Choice([1, "a"])):
        for value in (float("nan"), float("inf"), -float("inf"), None, "x", True, [1]):
            assert param.contains(value) in (True, False)
    assert not Int(0, 5).contains(float("inf"))
    assert not Int(0, 5).contains(float("nan"))
    assert not Float(0.0, 1.0).contains(float("nan"))


# -- hypothesis strategies ----------------------------------------------------------------

_finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
_positive = st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def floats_params(draw: st.DrawFn) -> Float:
    log = draw(st.booleans())
    a, b = draw(st.tuples(_positive, _positive) if log else st.tuples(_finite, _finite))
    if a == b:
        b = a * 2 if log else a + 1.0
    low, high = min(a, b), max(a, b)
    if low == high:  # a + 1.0 lost to rounding
        high = low + abs(low) * 1e-6 + 1.0
    return Float(low, high, log=log, mutable=draw(st.booleans()))


@st.composite
def int_params(draw: st.DrawFn) -> Int:
    log = draw(st.booleans())
    low = draw(st.integers(1 if log else -(10**9), 10**9))
    high = draw(st.integers(low + 1, low + draw(st.sampled_from([1, 2, 10, 10**6]))))
    return Int(low, high, log=log, mutable=draw(st.booleans()))


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**62), 2**62),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)


def _distinct(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        try:
            Choice([*seen, value])
        except SearchSpaceError:
            continue
        seen.append(value)
    return seen


@st.composite
def choice_params(draw: st.DrawFn) -> Choice:
    values = _distinct(draw(st.lists(_scalars, min_size=1, max_size=8)))
    return Choice(values, ordered=draw(st.booleans()), mutable=draw(st.booleans()))


params_st = st.one_of(floats_params(), int_params(), choice_params())
spaces = st.dictionaries(
    st.text(min_size=1, max_size=12), params_st, min_size=1, max_size=5
).map(SearchSpace)
seeds = st.integers(0, 2**32 - 1)
factors_st = st.lists(
    st.floats(min_value=1e-3, max_value=1e3, allow_nan=False), min_size=1, max_size=4
)
probabilities = st.floats(min_value=0.0, max_value=1.0)


def _assert_inside(space: SearchSpace, values: dict[str, Any]) -> None:
    assert space.validate(values) == values
    for name, param in space.items():
        value = values[name]
        if isinstance(param, Float):
            assert type(value) is float
            assert param.low <= value <= param.high
        elif isinstance(param, Int):
            assert type(value) is int
            assert param.low <= value <= param.high
        else:
            assert any(value is c or (type(value) is type(c) and value == c)
                       for c in param.choices)


# -- sampling and explore stay inside -------------------------------------------------------


@given(space=spaces, seed=seeds)
def test_sample_stays_inside_bounds_with_exact_types(space: SearchSpace, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(5):
        _assert_inside(space, space.sample(rng))


@given(space=spaces, seed=seeds, factors=factors_st, p=probabilities)
def test_perturb_stays_inside_bounds(
    space: SearchSpace, seed: int, factors: list[float], p: float
) -> None:
    rng = np.random.default_rng(seed)
    explore = Perturb(factors=factors, resample_probability=p)
    values = space.sample(rng)
    first = dict(values)
    for _ in range(8):  # a lineage explores again and again
        values = explore.explore(values, space, rng)
        _assert_inside(space, values)
        for name, param in space.items():
            if not param.mutable:
                assert values[name] is first[name] or values[name] == first[name]


@given(space=spaces, seed=seeds)
def test_resample_stays_inside_and_keeps_immutable(space: SearchSpace, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = space.sample(rng)
    new = Resample().explore(values, space, rng)
    _assert_inside(space, new)
    for name, param in space.items():
        if not param.mutable:
            assert new[name] == values[name]


@given(param=floats_params(), seed=seeds, factor=st.sampled_from([0.5, 0.8, 1.25, 2.0]))
def test_float_perturb_moves_by_the_factor_unless_clipped(
    param: Float, seed: int, factor: float
) -> None:
    value = param.sample(np.random.default_rng(seed))
    moved = param.perturb(value, factor)
    assert param.low <= moved <= param.high
    if value != 0.0:
        assert moved == param.clip(value * factor)


def test_float_perturb_moves_away_from_zero() -> None:
    param = Float(-1.0, 1.0)
    assert param.perturb(0.0, 1.25) == pytest.approx(0.05)
    assert param.perturb(0.0, 0.8) == pytest.approx(-0.04)


@given(param=int_params(), seed=seeds, factor=st.sampled_from([0.8, 1.25, 1.01, 0.99]))
def test_int_perturb_always_moves_unless_at_a_bound(param: Int, seed: int, factor: float) -> None:
    value = param.sample(np.random.default_rng(seed))
    moved = param.perturb(value, factor)
    assert type(moved) is int
    assert param.low <= moved <= param.high
    if param.low < value < param.high:
        # a factor close to 1 still moves an int by at least one step
        assert moved != value
        # the way the multiplication goes: away from zero for factor > 1
        assert (moved > value) == ((factor > 1.0) == (value >= 0))


@pytest.mark.parametrize(
    ("param", "value", "factor", "expected"),
    [
        (Int(1, 100), 10, 1.01, 11),  # 10.1 rounds back to 10: step once instead
        (Int(1, 100), 10, 0.99, 9),
        (Int(1, 100), 10, 1.25, 12),  # round(12.5) == 12
        (Int(1, 100), 10, 0.8, 8),
        (Int(-100, -1), -2, 0.8, -1),  # towards zero, as -2 * 0.8 goes
        (Int(-100, -1), -2, 1.25, -3),  # away from zero
        (Int(-100, -1), -1, 0.5, -1),  # clipped at the bound
        (Int(-5, 5), 0, 1.01, 1),
        (Int(-5, 5), 0, 0.99, -1),
        (Int(-50, 50), 0, 2.0, 10),  # from zero: (factor - 1) * 10% of the range
        (Int(1, 10), 10, 1.25, 10),
        (Int(1, 10), 1, 0.8, 1),
        (Int(1, 10), 5, 1.0, 5),
    ],
)
def test_int_perturb_examples(param: Int, value: int, factor: float, expected: int) -> None:
    assert param.perturb(value, factor) == expected


@given(
    values=st.lists(st.integers(-50, 50), min_size=2, max_size=8, unique=True),
    seed=seeds,
    start=st.integers(0, 7),
)
def test_ordered_choice_steps_to_a_neighbour(values: list[int], seed: int, start: int) -> None:
    space = SearchSpace({"c": Choice(values, ordered=True)})
    index = start % len(values)
    rng = np.random.default_rng(seed)
    explored = Perturb(resample_probability=0.0).explore({"c": values[index]}, space, rng)
    assert abs(values.index(explored["c"]) - index) == 1


def test_ordered_choice_ends_step_inwards_and_single_value_stays() -> None:
    rng = np.random.default_rng(0)
    choice = Choice(["s", "m", "l"], ordered=True)
    assert {choice.neighbour("s", rng) for _ in range(20)} == {"m"}
    assert {choice.neighbour("l", rng) for _ in range(20)} == {"m"}
    assert {choice.neighbour("m", rng) for _ in range(40)} == {"s", "l"}
    assert Choice(["only"], ordered=True).neighbour("only", rng) == "only"


def test_unordered_choice_resamples_from_all_values() -> None:
    values = ["a", "b", "c", "d", "e"]
    space = SearchSpace({"c": Choice(values)})
    rng = np.random.default_rng(0)
    explore = Perturb(resample_probability=0.0)
    seen = {explore.explore({"c": "a"}, space, rng)["c"] for _ in range(200)}
    assert seen == set(values)  # not only the neighbour "b"


def test_explore_is_deterministic_given_the_seed() -> None:
    space = SearchSpace({"lr": Float(1e-4, 1.0, log=True), "n": Int(1, 100),
                         "c": Choice([1, 2, 3], ordered=True)})
    params = space.sample(np.random.default_rng(7))

    def run(seed: int) -> list[dict[str, Any]]:
        rng = np.random.default_rng(seed)
        return [Perturb().explore(params, space, rng) for _ in range(10)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_int_log_sampling_covers_both_ends() -> None:
    param = Int(1, 4, log=True)
    rng = np.random.default_rng(0)
    seen = {param.sample(rng) for _ in range(400)}
    assert seen == {1, 2, 3, 4}


# -- JSON round trips -------------------------------------------------------------------


@given(space=spaces, seed=seeds)
def test_sampled_values_round_trip_through_json_exactly(space: SearchSpace, seed: int) -> None:
    values = Perturb().explore(space.sample(np.random.default_rng(seed)), space,
                               np.random.default_rng(seed + 1))
    loaded = json.loads(json.dumps(values))
    assert loaded == values
    for name in values:
        assert type(loaded[name]) is type(values[name])
    assert space.validate(loaded) == values


def test_bool_and_int_choice_values_keep_their_types_through_json() -> None:
    choice = Choice([True, 1, 0, False, None, "1", 1.5])
    space = SearchSpace({"c": choice})
    rng = np.random.default_rng(0)
    for _ in range(50):
        value = space.sample(rng)["c"]
        loaded = json.loads(json.dumps({"c": value}))["c"]
        assert type(loaded) is type(value)
        assert choice.index(loaded) == choice.index(value)


@given(space=spaces)
def test_space_round_trips_through_to_dict_and_json(space: SearchSpace) -> None:
    assert SearchSpace.from_dict(space.to_dict()) == space
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    rebuilt = SearchSpace.from_dict(space.to_dict())
    for name, param in space.items():
        assert rebuilt[name] == param
        assert type(rebuilt[name]) is type(param)


def test_space_round_trips_through_yaml() -> None:
    space = SearchSpace({
        "lr": Float(1e-5, 0.1, log=True),
        "batch": Int(16, 256, log=True, mutable=False),
        "act": Choice(["relu", "gelu", None, True], ordered=False),
        "width": Choice([64, 128, 256], ordered=True),
    })
    assert SearchSpace.from_dict(yaml.safe_load(yaml.safe_dump(space.to_dict()))) == space


def test_from_dict_accepts_hand_written_yaml() -> None:
    text = """
    lr: {type: float, low: 0.0001, high: 0.1, log: true}
    layers: {type: int, low: 1, high: 4}
    act: {type: choice, choices: [relu, tanh]}
    """
    space = SearchSpace.from_dict(yaml.safe_load(text))
    assert space["lr"] == Float(1e-4, 0.1, log=True)
    assert space["layers"] == Int(1, 4)
    assert space["act"] == Choice(["relu", "tanh"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, r"non-empty mapping"),
        ([], r"non-empty mapping"),
        ({}, r"non-empty mapping"),
        ("lr: float", r"non-empty mapping"),
        ({"lr": 0.1}, r"parameter 'lr': expected a mapping"),
        ({"lr": [0.0, 1.0]}, r"parameter 'lr': expected a mapping"),
        ({"lr": {"low": 0, "high": 1}}, r"parameter 'lr': type must be one of "
                                         r"\['choice', 'float', 'int'\], got None"),
        ({"lr": {"type": "gaussian"}}, r"parameter 'lr': type must be one of"),
        ({"lr": {"type": "float", "low": 0}}, r"parameter 'lr': .*high"),
        ({"lr": {"type": "float", "low": 0, "high": 1, "step": 0.1}},
         r"parameter 'lr': .*step"),
        ({"lr": {"type": "float", "low": "a", "high": 1}},
         r"parameter 'lr': Float low must be a finite number"),
        ({"lr": {"type": "float", "low": 1, "high": 0}}, r"parameter 'lr': Float needs low < high"),
        ({"lr": {"type": "float", "low": 0, "high": 1, "log": True}},
         r"parameter 'lr': Float\(log=True\) needs low > 0"),
        ({"n": {"type": "int", "low": 1.5, "high": 4}}, r"parameter 'n': Int low must be an int"),
        ({"c": {"type": "choice", "choices": []}}, r"parameter 'c': Choice needs at least one"),
        ({"c": {"type": "choice", "choices": "ab"}}, r"parameter 'c': Choice needs a list"),
        ({"c": {"type": "choice"}}, r"parameter 'c': .*choices"),
        ({"c": {"type": "choice", "choices": [[1]]}}, r"parameter 'c': Choice values must be"),
        ({"": {"type": "int", "low": 1, "high": 4}}, r"names must be non-empty strings"),
    ],
)
def test_from_dict_errors_name_the_parameter(data: Any, message: str) -> None:
    with pytest.raises(SearchSpaceError, match=message):
        SearchSpace.from_dict(data)


def test_float_sample_is_not_biased_to_one_end() -> None:
    rng = np.random.default_rng(1)
    lin = [Float(0.0, 1.0).sample(rng) for _ in range(2000)]
    log = [Float(1e-4, 1.0, log=True).sample(rng) for _ in range(2000)]
    assert 0.45 < float(np.mean(lin)) < 0.55
    # log-uniform: half the mass lies below the geometric mean 1e-2
    assert 0.45 < float(np.mean([v < 1e-2 for v in log])) < 0.55
    assert all(math.isfinite(v) for v in lin + log)


def test_ranges_that_cannot_be_sampled_are_refused_at_definition() -> None:
    with pytest.raises(pbtune.SearchSpaceError, match="too wide"):
        pbtune.Float(-1e308, 1e308)
    with pytest.raises(pbtune.SearchSpaceError, match="64 bits"):
        pbtune.Int(1, 2**70)
    wide = pbtune.Float(1e-300, 1e300, log=True)
    assert wide.contains(wide.sample(np.random.default_rng(0)))
