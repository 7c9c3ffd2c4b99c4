"""Evolution strategies: exploit (who to copy), explore (new params), and `decide`."""

from pbtune.strategies._decide import decide, exploit_from_dict, explore_from_dict
from pbtune.strategies._decision import Continue, Decision, Exploit, Explore, Stop
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
from pbtune.strategies._pb2 import PB2

__all__ = [
    "NO_HISTORY",
    "PB2",
    "Continue",
    "Decision",
    "Exploit",
    "ExploitStrategy",
    "Explore",
    "ExploreStrategy",
    "History",
    "Mode",
    "MultiRate",
    "Observation",
    "Pending",
    "Perturb",
    "Resample",
    "Stop",
    "Tournament",
    "Truncation",
    "decide",
    "exploit_from_dict",
    "explore_from_dict",
    "score",
]
