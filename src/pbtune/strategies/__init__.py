"""Evolution strategies: exploit (who to copy), explore (new params), and `decide`."""

from pbtune.strategies._decide import decide, exploit_from_dict, explore_from_dict
from pbtune.strategies._decision import Continue, Decision, Exploit, Explore, Stop
from pbtune.strategies._exploit import ExploitStrategy, Mode, Tournament, Truncation, score
from pbtune.strategies._explore import ExploreStrategy, Perturb, Resample

__all__ = [
    "Continue",
    "Decision",
    "Exploit",
    "ExploitStrategy",
    "Explore",
    "ExploreStrategy",
    "Mode",
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
