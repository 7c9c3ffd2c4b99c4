"""Simulate a study on a virtual clock: virtual workers run the real controller against
the real storage, and a surrogate task stands in for training.

Example::

    from pbtune.simulation import simulate

    result = simulate("toy", workers=4, population_size=8, kill_fraction=0.25)
    print(result)               # virtual wall time, utilization, decisions/s, ...
    assert result.lost == 0

A surrogate task is a function ``(params, state, start_step, end_step, rng) ->
Outcome(state, metrics, seconds)``: from the trial's params and its parent's state (None
for a first trial) to the new state, the metrics, and the virtual seconds the training
took. Exploits copy a parent's state, as they copy its checkpoint in a real run, so a
simulation decides as the real study would: `as_train` turns the same function into a
real training function, and one worker's run of both makes the same decisions.
"""

from pbtune.simulation._faults import Faults
from pbtune.simulation._records import Audit, audit
from pbtune.simulation._simulate import SimulationResult, simulate
from pbtune.simulation._tasks import NQM, TOY, Outcome, Surrogate, as_train, nqm, toy
from pbtune.storages import VirtualClock

__all__ = [
    "NQM",
    "TOY",
    "Audit",
    "Faults",
    "Outcome",
    "SimulationResult",
    "Surrogate",
    "VirtualClock",
    "as_train",
    "audit",
    "nqm",
    "simulate",
    "toy",
]
