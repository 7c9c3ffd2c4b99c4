"""What `Controller.ask` hands out: a claimed trial, or word to wait or stop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pbtune.trial import FrozenTrial

Role = Literal["both", "train", "evaluate"]
"""What a worker claims: "both" (evaluations first, then training), "train" or "evaluate"
(dedicated evaluators). Without an evaluate function, every worker trains."""


class Wait:
    """ask: nothing is queued now, but trials are running; ask again shortly."""


class Done:
    """ask: the study has nothing left to run."""


WAIT, DONE = Wait(), Done()


@dataclass(frozen=True)
class Claimed:
    """A trial held by one worker, under a claim token that fences its writes.

    ``parent`` is the parent trial as read in the claiming transaction (None for a first
    trial, or when not read: it is then read when needed).
    """

    trial: FrozenTrial
    claim: str
    parent: FrozenTrial | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Result:
    """A result `Controller.check` accepted: its metrics, and its fitness (None for a study
    of several objectives). ``trained``: a training result that waits for its evaluation
    (no fitness yet). Only ``check`` makes one, so a tell given one records it without
    checking again."""

    metrics: dict[str, float]
    fitness: float | None
    trained: bool = False
