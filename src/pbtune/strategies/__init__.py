"""Evolution strategies: exploit (who to copy), explore (new params), and `decide`."""

from pbtune.strategies._decide import (
    decide,
    early_stop_from_dict,
    exploit_from_dict,
    explore_from_dict,
    lagging_count,
)
from pbtune.strategies._decision import Continue, Decision, Exploit, Explore, Restart, Stop
from pbtune.strategies._early import EarlyStop, Lagging
from pbtune.strategies._exploit import (
    ExploitStrategy,
    Mode,
    MultiRate,
    Tournament,
    Truncation,
    score,
)
from pbtune.strategies._explore import ExploreStrategy, Perturb, Resample
from pbtune.strategies._history import NO_HISTORY, History, Observation, Pending
from pbtune.strategies._pareto import (
    Bound,
    Criteria,
    criteria_from,
    crowding_distance,
    dominates,
    hypervolume,
    non_dominated_fronts,
)
from pbtune.strategies._pb2 import PB2

__all__ = [
    "NO_HISTORY",
    "PB2",
    "Bound",
    "Continue",
    "Criteria",
    "Decision",
    "EarlyStop",
    "Exploit",
    "ExploitStrategy",
    "Explore",
    "ExploreStrategy",
    "History",
    "Lagging",
    "Mode",
    "MultiRate",
    "Observation",
    "Pending",
    "Perturb",
    "Resample",
    "Restart",
    "Stop",
    "Tournament",
    "Truncation",
    "criteria_from",
    "crowding_distance",
    "decide",
    "dominates",
    "early_stop_from_dict",
    "exploit_from_dict",
    "explore_from_dict",
    "hypervolume",
    "lagging_count",
    "non_dominated_fronts",
    "score",
]
