"""Evolution strategies: exploit (who to copy), explore (new params), `decide`, and the
stop rules that end a study early."""

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
    "Continue",
    "Decision",
    "Exploit",
    "ExploitStrategy",
    "Explore",
    "ExploreStrategy",
    "History",
    "Mode",
    "MultiRate",
    "NoImprovement",
    "Observation",
    "Pending",
    "Perturb",
    "Resample",
    "Stop",
    "StopContext",
    "StopRule",
    "Target",
    "TotalSteps",
    "Tournament",
    "Truncation",
    "Verdict",
    "check_rules",
    "decide",
    "describe",
    "exploit_from_dict",
    "explore_from_dict",
    "replay_rules",
    "score",
    "stop_from_dict",
    "stop_rules",
]
