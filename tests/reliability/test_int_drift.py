"""Integer and ordered params do not drift toward a bound under explore.

A study explores a member's params again and again: `Perturb` multiplies an `Int` by a
factor (or resamples it from its prior), and a value that rounds back to itself, or a prior
that gives the bound a wide slice, would pile members up at the lower bound. The checks are
statistical over fixed seeds, so they are deterministic: 1,000 members each explored 50
times from 32, against draws from the prior.
"""

from __future__ import annotations

import math

import numpy as np

from pbtune import Choice, Int, Perturb, SearchSpace

SEEDS = 1000
STEPS = 50


def explored(space: SearchSpace, start: dict[str, object], explore: Perturb) -> list[object]:
    finals = []
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        params = dict(start)
        for _ in range(STEPS):
            params = explore.explore(params, space, rng)
        finals.append(params["n"])
    return finals


def test_a_log_int_prior_is_log_uniform_between_its_bounds() -> None:
    param = Int(1, 512, log=True)
    rng = np.random.default_rng(0)
    draws = np.array([param.sample(rng) for _ in range(50_000)])
    # log-uniform on [1, 512], rounded: 1 takes [1, 1.5), about 6.5%
    assert abs(np.mean(draws == 1) - math.log(1.5) / math.log(512)) < 0.01
    assert abs(np.mean(np.log(draws)) - math.log(512) / 2) < 0.05


def test_perturbed_log_ints_do_not_pile_up_at_the_lower_bound() -> None:
    space = SearchSpace({"n": Int(1, 512, log=True)})
    finals = np.array(explored(space, {"n": 32}, Perturb()))
    at_bound = np.mean(finals == 1)
    assert at_bound < 0.09, f"{at_bound:.3f} of members ended at the lower bound"
    # No drift on the log scale: where the members end is where the prior puts them.
    assert abs(np.mean(np.log(finals)) - math.log(512) / 2) < 0.2


def test_a_perturbation_alone_moves_an_int_at_least_one_step_and_does_not_drift() -> None:
    param = Int(1, 512, log=True)
    for n in range(1, 40):
        assert param.perturb(n, 1.25) > n
        assert param.perturb(n, 0.8) == max(n - 1, 1) or param.perturb(n, 0.8) < n - 1
    space = SearchSpace({"n": param})
    finals = np.array(explored(space, {"n": 32}, Perturb(resample_probability=0.0)))
    assert abs(np.mean(np.log(finals)) - math.log(32)) < 0.25


def test_ordered_choices_step_to_neighbours_without_drift() -> None:
    choices = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    space = SearchSpace({"n": Choice(choices, ordered=True)})
    finals = explored(space, {"n": 32}, Perturb(resample_probability=0.0))
    counts = np.bincount([choices.index(value) for value in finals], minlength=len(choices))
    assert counts[0] / SEEDS < 0.2  # a walk of 50 steps from the middle, reflected at the ends
    assert abs(np.mean([choices.index(value) for value in finals]) - 5) < 0.5
