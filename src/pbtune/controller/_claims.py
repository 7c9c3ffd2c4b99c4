"""What `Controller.ask` hands out: a claimed trial, or word to wait or stop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pbtune.trial import FrozenTrial

Role = Literal["both", "train", "evaluate"]
"""What a worker claims: "both" (evaluations first, then training), "train" or "evaluate"
(dedicated evaluators). Without an evaluate function, every worker trains."""


class Wait:
    """ask: nothing is queued now, but trials are running; ask again shortly."""


class Done:
    """ask: the study has nothing left to run."""


WAIT, DONE = Wait(), Done()


_UNREAD: Any = object()


@dataclass(frozen=True)
class Claimed:
    """A trial held by one worker, under a claim token that fences its writes.

    ``parent`` is the parent trial as read in the claiming transaction (None for a first
    trial); left out, it is read when needed.
    """

    trial: FrozenTrial
    claim: str
    parent: FrozenTrial | None = field(default=_UNREAD, repr=False, compare=False)
