"""A simulation's checkpoints: the surrogate states, in memory, under the locations the
study records, so garbage collection and exploits act on them as on files."""

from __future__ import annotations

from collections.abc import Set
from pathlib import Path
from typing import Any

from pbtune.checkpoints import CheckpointStore, Location

PREFIX = "memory://"


class MemoryStore(CheckpointStore):
    """Surrogate states by location; a trial commits by `put`, a collected one is removed."""

    def __init__(self) -> None:
        self.location = PREFIX
        self.states: dict[str, Any] = {}
        self.removed = 0

    def final(self, number: int) -> Location:
        return f"{PREFIX}{number}"

    def put(self, number: int, state: Any) -> Location:
        location = self.final(number)
        self.states[str(location)] = state
        return location

    def get(self, location: Location) -> tuple[bool, Any]:
        """(whether it is there, the state)."""
        key = str(location)
        return key in self.states, self.states.get(key)

    def remove(self, reference: Location) -> None:
        if self.states.pop(str(reference), None) is not None:
            self.removed += 1

    def sweep(self, keep: Set[Location]) -> int:
        kept = {str(k) for k in keep}
        gone = [k for k in self.states if k not in kept]
        for key in gone:
            del self.states[key]
        return len(gone)

    def stage(self, number: int, claim: str) -> Path:
        raise NotImplementedError("a simulated trial stages nothing: it commits by put()")

    def commit(self, staging: Path, number: int) -> Location:
        raise NotImplementedError("a simulated trial commits by put()")

    def open(self, reference: Location, trial_id: int) -> Path:
        raise NotImplementedError("a simulated trial reads its parent's state by get()")
