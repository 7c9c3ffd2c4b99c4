"""Evolution strategies: exploit (who to copy), explore (new params), `decide`, and the
stop rules that end a study early."""

from pbtune.strategies._decide import (
    Next,
    decide,
    decide_next,
    early_stop_from_dict,
    exploit_from_dict,
    explore_from_dict,
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
from pbtune.strategies._stop import (
    FITNESS,
    NoImprovement,
    StopContext,
    StopRule,
    Target,
    TotalSteps,
    Verdict,
    check_rules,
    describe,
    replay_rules,
    stop_from_dict,
    stop_rules,
)

__all__ = [
    "FITNESS",
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
    "Next",
    "NoImprovement",
    "Observation",
    "Pending",
    "Perturb",
    "Resample",
    "Restart",
    "Stop",
    "StopContext",
    "StopRule",
    "Target",
    "TotalSteps",
    "Tournament",
    "Truncation",
    "Verdict",
    "check_rules",
    "criteria_from",
    "crowding_distance",
    "decide",
    "decide_next",
    "describe",
    "dominates",
    "early_stop_from_dict",
    "exploit_from_dict",
    "explore_from_dict",
    "hypervolume",
    "non_dominated_fronts",
    "replay_rules",
    "score",
    "stop_from_dict",
    "stop_rules",
]
